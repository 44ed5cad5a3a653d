"""`run --worker-coverage`: a Python worker runs under coverage.py; which of its lines did the suite exercise?

A behaviour of the worker that no clause exercises is a missing clause (or dead code). The CLI names a data
folder in WORKER_COVERAGE_ENV; every launch (xdist processes inherit it) wraps the worker's command in
`python -m coverage run` with an rc file there, so the worker is the same process (PROC-008) with the same
argv after the wrapper. A worker saves its data when it exits (SIGTERM handled, stdin EOF, os._exit too); what
a SIGKILLed worker ran is lost, as it should be for a worker Snakepit had to kill. After the run the data are
combined into `worker-coverage/` in the report folder: `coverage.json`, `html/index.html`, one summary line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

WORKER_COVERAGE_ENV = "SNAKEPIT_CONTRACT_WORKER_COVERAGE"
_RCFILE = "coveragerc"


class WorkerCoverageError(Exception):
    """The worker cannot be measured (not Python, coverage missing) or its data cannot be reported."""


def _source(command: Sequence[str]) -> str:
    """What to measure: the package of `python -m pkg`, or the folder of `python script.py`."""
    rest = list(command[1:])
    if len(rest) > 1 and rest[0] == "-m":
        return rest[1].split(".", 1)[0]
    if rest and os.path.isfile(rest[0]):
        return os.path.dirname(os.path.abspath(rest[0]))
    raise WorkerCoverageError(f"--worker-coverage needs `python -m PACKAGE` or `python SCRIPT`, not {list(command)}")


def prepare(command: Sequence[str], folder: Path) -> None:
    """Check the worker can be measured and write the rc file every launch will use."""
    if not Path(command[0]).name.startswith("python"):
        raise WorkerCoverageError(f"--worker-coverage measures Python workers only; {command[0]!r} is not python")
    found = subprocess.run([command[0], "-c", "import coverage"], capture_output=True, check=False)
    if found.returncode != 0:
        raise WorkerCoverageError(f"--worker-coverage needs coverage.py in the worker's Python ({command[0]}): "
                                  "pip install coverage")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _RCFILE).write_text(
        # patch = _exit: a worker leaving by os._exit (a stop, an orphaned worker) still saves its data.
        f"[run]\nparallel = True\ndata_file = {folder / '.coverage'}\npatch = _exit\n"
        f"source =\n    {_source(command)}\n"
        # Generated protobuf and gRPC stubs are not the worker's behaviour: no clause could exercise them all.
        "omit =\n    *_pb2.py\n    *_pb2_grpc.py\n",
        encoding="utf-8")


def wrap(command: Sequence[str]) -> list[str]:
    """The worker's command under coverage when WORKER_COVERAGE_ENV names a data folder, else unchanged."""
    folder = os.environ.get(WORKER_COVERAGE_ENV)
    if not folder:
        return list(command)
    return [command[0], "-m", "coverage", "run", f"--rcfile={Path(folder) / _RCFILE}", *command[1:]]


def report(python: str, folder: Path, out_dir: Path) -> str:
    """Combine the launches' data, write coverage.json and html/ into out_dir; the one-line summary."""
    rc = f"--rcfile={folder / _RCFILE}"

    def coverage(*args: str) -> None:
        done = subprocess.run([python, "-m", "coverage", *args, rc], capture_output=True, text=True, check=False)
        if done.returncode not in (0, 2):  # 2: under a fail-under; not used here
            raise WorkerCoverageError(f"coverage {args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    if not list(folder.glob(".coverage.*")):
        raise WorkerCoverageError("no coverage data: no worker exited normally during the run")
    out_dir.mkdir(parents=True, exist_ok=True)
    coverage("combine", "--quiet")
    coverage("json", "-o", str(out_dir / "coverage.json"))
    coverage("html", "-d", str(out_dir / "html"))
    totals = json.loads((out_dir / "coverage.json").read_text(encoding="utf-8"))["totals"]
    return (f"Worker coverage: {totals['percent_covered']:.1f}% of {totals['num_statements']} lines exercised by the "
            f"suite ({totals['missing_lines']} not); {out_dir / 'html' / 'index.html'}")
