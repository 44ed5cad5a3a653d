"""snakepit-contract: run the conformance suite against a worker, or list its clauses.

A thin layer over pytest: `run` builds one pytest invocation of the clause
modules with the suite's own ini file and maps pytest's exit codes onto ours
(0 conformant, 1 not conformant, 2 the harness failed, 3 usage error).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import pytest

from contract_tests import clauses
from contract_tests.clause import REGISTRY, Clause
from contract_tests.profiles import DEFAULT_PROFILE, PROFILES

EXIT_CONFORMANT, EXIT_NOT_CONFORMANT, EXIT_HARNESS, EXIT_USAGE = 0, 1, 2, 3
_PYTEST_TO_EXIT = {
    pytest.ExitCode.OK: EXIT_CONFORMANT,
    pytest.ExitCode.TESTS_FAILED: EXIT_NOT_CONFORMANT,
    pytest.ExitCode.INTERRUPTED: EXIT_HARNESS,
    pytest.ExitCode.INTERNAL_ERROR: EXIT_HARNESS,
    pytest.ExitCode.USAGE_ERROR: EXIT_USAGE,
    pytest.ExitCode.NO_TESTS_COLLECTED: EXIT_USAGE,
}
SUITE_INI = Path(__file__).with_name("suite.ini")


def load_clauses() -> dict[str, Clause]:
    """Import every clause module so the registry is complete; no worker is started."""
    for module in pkgutil.iter_modules(clauses.__path__):
        importlib.import_module(f"{clauses.__name__}.{module.name}")
    return dict(sorted(REGISTRY.items()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snakepit-contract", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the suite against a worker and write a report")
    run.add_argument("--worker-cmd", help="Worker command, shell-quoted (default: the reference worker)")
    run.add_argument("--profile", default=DEFAULT_PROFILE, help="snakepit-0.6, snakepit-0.13 or all")
    run.add_argument("--only", help="Comma-separated clause id globs to run")
    run.add_argument("--skip", help="Comma-separated clause id globs to skip")
    run.add_argument("--timeout-scale", help="Multiply contract deadlines (slow machines)")
    run.add_argument("-n", "--numprocesses", default="2", help="Parallel pytest-xdist workers (default 2)")
    run.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                     help="Where conformance.json and junit.xml go (default: ./conformance-report)")
    run.add_argument("pytest_args", nargs="*", help="Extra pytest arguments, after --")
    listing = sub.add_parser("list", help="List the clauses without starting a worker")
    listing.add_argument("--profile", default="all", help="Only clauses of this profile (default: all)")
    return parser


def _run(args: argparse.Namespace) -> int:
    argv = ["-c", str(SUITE_INI), "--rootdir", str(SUITE_INI.parent), "--pyargs", clauses.__name__,
            "--profile", args.profile, "-n", args.numprocesses,
            "--contract-json", str(args.report_dir / "conformance.json"),
            "--junitxml", str(args.report_dir / "junit.xml")]
    for option in ("worker_cmd", "only", "skip", "timeout_scale"):
        if getattr(args, option) is not None:
            argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
    code = pytest.main(argv + list(args.pytest_args))
    return _PYTEST_TO_EXIT.get(pytest.ExitCode(code), EXIT_HARNESS)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    if args.profile != "all" and args.profile not in PROFILES:
        print(f"snakepit-contract: unknown profile {args.profile!r}", file=sys.stderr)
        return EXIT_USAGE
    chosen = [c for c in load_clauses().values() if args.profile == "all" or args.profile in c.profiles]
    for found in chosen:
        profiles = "all" if len(found.profiles) == len(PROFILES) else ",".join(sorted(found.profiles))
        print(f"{found.id:<13} {found.level.value:<6} {profiles:<14} {found.requirement}", file=out)
    counts = Counter((c.area, c.level.value) for c in chosen)
    areas = sorted({c.area for c in chosen})
    summary = ", ".join(
        f"{area} " + "/".join(f"{counts[area, lvl]} {lvl}" for lvl in ("MUST", "SHOULD", "MAY") if counts[area, lvl])
        for area in areas
    )
    print(f"Total clauses: {len(chosen)} ({summary})", file=out)
    return EXIT_CONFORMANT


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_CONFORMANT if exit_.code == 0 else EXIT_USAGE
    if args.command == "list":
        return _list(args, out or sys.stdout)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
