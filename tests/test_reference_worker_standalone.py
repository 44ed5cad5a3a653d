"""The reference worker stands alone: the judged imports nothing of the judge, and its folder is a template.

A bridge author copies reference_worker/ under a name of their own as the start of a new worker (README, "Start
a Python worker from the reference worker"); these tests prove that such a copy, with grpcio and protobuf and
nothing else, starts and answers the way the kit launches a worker.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contract_tests.contract.profiles import SNAKEPIT_0_13
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec

ROOT = Path(__file__).resolve().parent.parent
WORKER_DIR = ROOT / "reference_worker"
# What a copied worker may use: its own folder, the standard library and these distributions.
RUNTIME_DISTRIBUTIONS = ("grpcio", "protobuf", "typing-extensions")
# No site (no editable install of the kit, no .pth), no current folder on sys.path: only PYTHONPATH is searched.
BARE_INTERPRETER = (sys.executable, "-S", "-P")
STANDALONE = dataclasses.replace(SNAKEPIT_0_13, heartbeat=False, initializes_worker_session=False,
                                 opens_telemetry_stream=False)


def _kit_imports(folder: Path) -> list[str]:
    """`file:line module` of every import of contract_tests in the .py files under folder."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found += [f"{path.relative_to(folder)}:{node.lineno} {m}" for m in modules
                      if m == "contract_tests" or m.startswith("contract_tests.")]
    return found


def test_reference_worker_imports_nothing_of_the_kit() -> None:
    """Ensure no module of reference_worker/ (its generated stubs included) imports contract_tests."""
    assert (WORKER_DIR / "proto" / "snakepit_bridge_pb2.py").is_file()
    assert _kit_imports(WORKER_DIR) == []


@pytest.mark.parametrize("statement", ["import contract_tests.protocol.proto", "from contract_tests import codec",
                                       "if True:\n    from contract_tests.protocol.proto import snakepit_bridge_pb2"])
def test_the_import_scan_finds_a_planted_kit_import(tmp_path: Path, statement: str) -> None:
    """Ensure the scan above can fail: one import of the kit, anywhere in a copy, is reported."""
    copy = _copy_worker(tmp_path)
    (copy / "servicer.py").write_text((copy / "servicer.py").read_text() + "\n" + statement + "\n")
    assert [hit.split(" ")[0].split(":")[0] for hit in _kit_imports(copy)] == ["servicer.py"]


def _copy_worker(into: Path, name: str = "reference_worker") -> Path:
    return Path(shutil.copytree(WORKER_DIR, into / name, ignore=shutil.ignore_patterns("__pycache__")))


def _runtime_only(into: Path) -> Path:
    """A folder holding the files of grpcio, protobuf and typing-extensions only (symlinked), for PYTHONPATH."""
    site = into / "site"
    for name in RUNTIME_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or ():
            top = file.parts[0]
            if top == ".." or top.endswith(".dist-info") or "__pycache__" in file.parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(str(distribution.locate_file(file)))
    return site


def _probe(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    """Run code under the same interpreter flags, environment and folder as the worker."""
    return subprocess.run([*BARE_INTERPRETER, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_copy_of_the_folder_alone_runs_with_grpcio_and_protobuf(tmp_path: Path) -> None:
    """Ensure a copy of reference_worker/ under a new name starts, gets ready, answers Ping and ExecuteTool over
    real gRPC on 127.0.0.1, launched as the kit launches any worker, where contract_tests cannot be imported."""
    copy = _copy_worker(tmp_path / "template", "my_worker")
    path = os.pathsep.join([str(copy.parent), str(_runtime_only(tmp_path))])
    spec = WorkerSpec(command=[*BARE_INTERPRETER, "-m", "my_worker"], profile=STANDALONE,
                      elixir_address="127.0.0.1:1", extra_env={"PYTHONPATH": path})
    with WorkerProcess(spec) as worker:
        assert worker.client is not None  # the launcher connected and Pinged, as Snakepit does
        assert worker.client.ping("standalone").message
        reply = worker.client.execute("contract.echo", {"copied": "folder"})
        assert reply.ok and reply.value == {"copied": "folder"}
        env = worker.env
    # The same environment, flags and folder prove what the worker could import: the kit is out of reach
    # (here, in the folder the kit runs from, where a plain interpreter does import it) ...
    plain = subprocess.run([sys.executable, "-c", "import contract_tests"], cwd=ROOT, capture_output=True,
                           timeout=60, check=False)
    assert plain.returncode == 0, plain.stderr
    blocked = _probe(env, "import contract_tests")
    assert blocked.returncode == 1 and "No module named 'contract_tests'" in blocked.stderr, blocked.stderr
    # ... the worker package is the copy, the original is not reachable, nor any other third-party distribution.
    where = _probe(env, "import my_worker, grpc, google.protobuf; print(my_worker.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).parent == copy
    assert _probe(env, "import reference_worker").returncode == 1
    assert _probe(env, "import pytest").returncode == 1
