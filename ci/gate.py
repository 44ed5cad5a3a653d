"""The CI gate: install the kit if needed, judge one worker, print a short summary, exit with the CLI's status.

`ci/gate.sh` runs this with any Python >= 3.11; it needs only the standard library, so a worker
repository that has never seen this project can call it. The exit status is `snakepit-contract
run`'s (docs/report.md): 0 conformant, 1 not conformant, 2 no verdict (the harness failed, or the
kit could not be installed), 3 usage error. docs/gate.md shows the lines to paste into a CI file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

EXIT_HARNESS, EXIT_USAGE = 2, 3
KIT_NAME = "snakepit-contract"
DEFAULT_BASELINE = Path("snakepit-baseline.toml")
# Where the kit is installed when it is not on PATH; one per user, kept between local runs.
DEFAULT_VENV = Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / f"snakepit-contract-gate-{os.getuid()}"
# The job summary takes at most 1 MiB per step; a longer report is cut with a pointer to the artifact.
STEP_SUMMARY_LIMIT = 1_000_000
VERDICT_WORDS = {0: "CONFORMANT", 1: "NOT CONFORMANT", 2: "NO VERDICT", 3: "USAGE ERROR"}


class GateProblem(Exception):
    """The gate itself cannot go on; carries the exit status to end with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gate.sh", description=__doc__.splitlines()[0],
        epilog="Options after -- go to `snakepit-contract run` unchanged, e.g. -- --only 'TOOL-*' --timeout-scale 2.")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--worker-cmd", help="The worker's command line, shell-quoted, as Snakepit would start it")
    target.add_argument("--worker-image", help="The worker's container image")
    parser.add_argument("--profile", default="snakepit-0.13", help="snakepit-0.13 (default), snakepit-0.6 or all")
    parser.add_argument("--snakepit-version",
                        help="Snakepit release(s) instead of --profile: X.Y.Z, or a range FIRST..LAST judged as a "
                             "compatibility matrix (one run per distinct rule set)")
    parser.add_argument("--plan", metavar="RANGE",
                        help="Only print, as a JSON list, the release to run for each distinct rule set of RANGE "
                             "(a CI job matrix); nothing is installed or run")
    parser.add_argument("--merge", type=Path, metavar="DIR",
                        help="Instead of running the suite, merge the per-release reports in DIR's subdirectories "
                             "(parallel CI jobs) into one matrix for --snakepit-version")
    parser.add_argument("--level", default="must", help="must (default), should or all")
    parser.add_argument("--baseline", type=Path,
                        help=f"Known failures (TOML); default: {DEFAULT_BASELINE} when that file exists")
    parser.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                        help="Where the report goes (default: ./conformance-report)")
    parser.add_argument("--kit", help="Install this kit into --venv and use it: a path to a checkout or a pip "
                                      "requirement such as 'snakepit-contract[containers] @ git+URL@REF' (default: "
                                      "snakepit-contract on PATH, else the checkout holding this script)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"Where the kit is installed (default: {DEFAULT_VENV})")
    parser.add_argument("--step-summary", type=Path, default=os.environ.get("GITHUB_STEP_SUMMARY") or None,
                        help="Append the Markdown report to this file (default: $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--run-args", default="",
                        help="Extra `snakepit-contract run` options as one shell-quoted string (for CI inputs)")
    parser.add_argument("run_options", nargs="*", metavar="RUN-OPTION",
                        help="Extra `snakepit-contract run` options, after --")
    return parser


def _own_checkout() -> Path | None:
    """The project checkout this script sits in, if it is one (the action's and the workflow's default kit)."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{KIT_NAME}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _commit(path: Path) -> str | None:
    """The checkout's commit, or None when it is not a clean git checkout."""
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain"], capture_output=True, text=True,
                           check=False)
    return done.stdout.strip() if done.returncode == 0 and not dirty.stdout.strip() else None


def _install(kit: str, where: Path, extras: str) -> Path:
    """Install `kit` into the venv `where` unless that venv already holds exactly this kit; return its CLI."""
    local = Path(kit).expanduser()
    requirement = f"{local.resolve()}{extras}" if local.exists() else kit
    # A path is only as fixed as its commit: a dirty or non-git checkout is installed afresh every time.
    commit = _commit(local) if local.exists() else ""
    stamp = f"{requirement}@{commit}"
    cli = where / "bin" / KIT_NAME
    stamp_file = where / "snakepit-contract-gate.stamp"
    if commit is not None and cli.exists() and stamp_file.is_file() and stamp_file.read_text(encoding="utf-8") == stamp:
        print(f"gate: {KIT_NAME} from {requirement} is already installed in {where}", flush=True)
        return cli
    print(f"gate: installing {KIT_NAME} from {requirement} into {where}", flush=True)
    shutil.rmtree(where, ignore_errors=True)
    try:
        venv.create(where, with_pip=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise GateProblem(f"could not create a venv in {where} ({err}); on Debian or Ubuntu install python3-venv",
                          EXIT_HARNESS) from None
    done = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement], check=False)
    if done.returncode != 0 or not cli.exists():
        raise GateProblem(f"could not install {KIT_NAME} from {requirement} (pip exit {done.returncode})",
                          EXIT_HARNESS)
    stamp_file.write_text(stamp, encoding="utf-8")
    return cli


def _kit_cli(args: argparse.Namespace) -> Path:
    """The snakepit-contract to run: the one on PATH unless --kit says what to install."""
    on_path = shutil.which(KIT_NAME)
    if args.kit is None and on_path is not None:
        print(f"gate: using the installed {KIT_NAME} at {on_path}", flush=True)
        return Path(on_path)
    kit = args.kit or _own_checkout()
    if kit is None:
        raise GateProblem(f"{KIT_NAME} is not on PATH and this script is not inside its checkout: "
                          "pass --kit PATH-OR-REQUIREMENT", EXIT_USAGE)
    # Container workers need the kit's containers extra; a requirement given as --kit must name it itself.
    return _install(str(kit), args.venv, "[containers]" if args.worker_image else "")


def _baseline(args: argparse.Namespace) -> Path | None:
    if args.baseline is not None:
        return Path(args.baseline)
    return DEFAULT_BASELINE if DEFAULT_BASELINE.is_file() else None


def plan(selection: str) -> list[str]:
    """The release each parallel job runs for a range: one per distinct rule set (stdlib only, from this checkout)."""
    root = _own_checkout()
    if root is None:
        raise GateProblem("--plan needs this script inside its snakepit-contract checkout", EXIT_USAGE)
    sys.path.insert(0, str(root))
    from contract_tests.contract.profiles import distinct_rule_sets, select_releases

    try:
        return [group[-1].snakepit_version for group in distinct_rule_sets(select_releases(selection))]
    except ValueError as err:
        raise GateProblem(str(err), EXIT_USAGE) from None


def merge_argv(args: argparse.Namespace, cli: Path) -> list[str]:
    """The `snakepit-contract merge` command line: every subdirectory of --merge with a report is one run."""
    runs = sorted(str(d) for d in args.merge.iterdir() if (d / "conformance.json").is_file()) \
        if args.merge.is_dir() else []
    if not runs:
        raise GateProblem(f"--merge {args.merge}: no subdirectory holds a conformance.json", EXIT_USAGE)
    return [str(cli), "merge", "--snakepit-version", args.snakepit_version, "--report-dir", str(args.report_dir),
            *runs]


def run_argv(args: argparse.Namespace, cli: Path, baseline: Path | None) -> list[str]:
    """The `snakepit-contract run` command line the gate executes."""
    release = ["--snakepit-version", args.snakepit_version] if args.snakepit_version else ["--profile", args.profile]
    argv = [str(cli), "run", *release, "--level", args.level, "--report-dir", str(args.report_dir)]
    if args.worker_cmd is not None:
        argv += ["--worker-cmd", args.worker_cmd]
    else:
        argv += ["--worker-image", args.worker_image]
    if baseline is not None:
        argv += ["--baseline", str(baseline)]
    return argv + shlex.split(args.run_args) + list(args.run_options)


def _run(command: list[str]) -> int:
    """Run the suite; a CI cancel (SIGTERM) or Ctrl-C reaches it once, so it still stops every worker it started."""
    child = subprocess.Popen(command, process_group=0)
    forwarded = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal forwarded
        if not forwarded:
            forwarded = True
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report_stamp(report_dir: Path) -> tuple[int, int, int] | None:
    """Identifies the report file on disk, to tell this run's report from an old one (a usage error writes none)."""
    try:
        found = (report_dir / "conformance.json").stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def reproducible(repro: str, cli: Path) -> str:
    """The report's reproduce line, runnable as printed: it names `snakepit-contract`, which is not on PATH when
    the gate installed the kit into a venv of its own."""
    name = "snakepit-contract"
    on_path = shutil.which(name)
    if not repro.startswith(name + " ") or (on_path is not None and Path(on_path).resolve() == cli.resolve()):
        return repro
    return shlex.quote(str(cli)) + repro[len(name):]


def summary(status: int, report_dir: Path | None, baseline: Path | None, cli: Path) -> list[str]:
    """A few lines a reader of a CI log needs: the verdict, each judged failure, where the report is."""
    word = VERDICT_WORDS.get(status, f"exit {status}")
    if report_dir is None:
        return [f"snakepit-contract gate: {word} (exit {status}); no report was written, see the message above"]
    document: dict[str, Any] = json.loads((report_dir / "conformance.json").read_text(encoding="utf-8"))
    verdict = document["verdict"]
    lines = [f"snakepit-contract gate: {word} (exit {status})",
             f"  {verdict['summary']}",
             f"  worker:   {document['worker']['target']} ({document['worker']['kind']})",
             f"  profiles: {', '.join(document['profiles'])}; level: {document['level']}; "
             f"baseline: {baseline or 'none'}"]
    if "matrix" in document:
        lines.append(f"  matrix:   {document['matrix']['headline']}")
        lines += [f"    {r['release']:<8} {r['verdict']:<15} {r['passed']}/{r['judged']}"
                  for r in document["matrix"]["releases"]]
    bad = [c for c in document["clauses"] if c["judged"] and c["outcome"] not in ("PASS", "SKIP", "XFAIL")]
    lines += [f"  {c['outcome']:<8} {c['id']} [{c['profile']}]  reproduce: {reproducible(c['repro'], cli)}"
              for c in bad]
    lines += [f"  {problem}" for problem in verdict["problems"]]
    xfail = sum(c["outcome"] == "XFAIL" for c in document["clauses"])
    if xfail:
        lines.append(f"  {xfail} expected failure(s) from the baseline (XFAIL)")
    lines.append(f"  report:   {report_dir}/ (conformance.md, conformance.html, conformance.json, junit.xml, "
                 "badge.svg)")
    return lines


def write_step_summary(target: Path, status: int, report_dir: Path | None) -> None:
    """Append the Markdown report (or why there is none) to a CI job summary such as $GITHUB_STEP_SUMMARY."""
    if report_dir is not None and (report_dir / "conformance.md").is_file():
        text = (report_dir / "conformance.md").read_text(encoding="utf-8")
        if len(text.encode()) > STEP_SUMMARY_LIMIT:
            text = (text.encode()[:STEP_SUMMARY_LIMIT].decode(errors="ignore")
                    + "\n\n…cut here: the full report is in the report artifact.\n")
    else:
        text = (f"# snakepit-contract: {VERDICT_WORDS.get(status, 'exit')} (exit {status})\n\n"
                "No report was written; the job log says why.\n")
    with target.open("a", encoding="utf-8") as out:
        out.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the gate; return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else EXIT_USAGE
    try:
        if args.plan is not None:
            print(json.dumps(plan(args.plan)))
            return 0
        if args.merge is None and args.worker_cmd is None and args.worker_image is None:
            raise GateProblem("give the worker: --worker-cmd or --worker-image (or --merge DIR)", EXIT_USAGE)
        if args.merge is not None and not args.snakepit_version:
            raise GateProblem("--merge needs --snakepit-version, the releases of the matrix", EXIT_USAGE)
        cli = _kit_cli(args)
        baseline = _baseline(args)
        command = merge_argv(args, cli) if args.merge is not None else run_argv(args, cli, baseline)
    except GateProblem as problem:
        print(f"gate: {problem}", file=sys.stderr)
        return problem.status
    print("gate: " + shlex.join(command), flush=True)
    before = _report_stamp(args.report_dir)
    status = _run(command)
    after = _report_stamp(args.report_dir)
    report_dir = args.report_dir if after is not None and after != before else None
    print("\n".join(summary(status, report_dir, baseline, cli)), flush=True)
    if args.step_summary is not None:
        write_step_summary(args.step_summary, status, report_dir)
    return status


if __name__ == "__main__":
    sys.exit(main())
