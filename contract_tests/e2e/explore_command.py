"""`snakepit-contract explore`: generated pool programs on the emulator and real Snakepit (docs/explore.md).

Exit status, as `run --e2e`: 0 every program agrees, 1 at least one differs, 2 NOT-RUN or ERROR (no sources,
engine or image; a container run without run_end; hypothesis missing), 3 usage error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any, TextIO

from contract_tests.e2e.command import EXIT_AGREE, EXIT_DIVERGE, EXIT_NOT_RUN, EXIT_USAGE
from contract_tests.e2e.sources import NEWEST, VERSIONS
from contract_tests.elixir.scenarios import SCENARIO_DIR

DEFAULT_PROGRAMS = 100
FOUND_DIR = SCENARIO_DIR / "found"


def add_parser(sub: Any) -> None:
    """Register `explore` on the CLI's subparsers."""
    explore = sub.add_parser("explore", help="Generated pool programs on the emulator and real Snakepit; each "
                                             "difference shrunk to a scenario file (docs/explore.md)")
    explore.add_argument("--snakepit-version", default=NEWEST,
                         help=f"The real Snakepit to build: {', '.join(VERSIONS)} (default {NEWEST})")
    explore.add_argument("--programs", default=str(DEFAULT_PROGRAMS),
                         help=f"How many programs to generate (default {DEFAULT_PROGRAMS})")
    explore.add_argument("--seed", default="0", help="Generation seed: the same seed, the same programs (default 0)")
    explore.add_argument("--shrink-rounds", default="12", help="At most this many shrinking rounds (default 12)")
    explore.add_argument("--report-dir", type=Path, default=Path("explore-report"),
                         help="Where explore-<version>-seed<seed>.json goes (default: ./explore-report)")
    explore.add_argument("--found-dir", type=Path, default=FOUND_DIR,
                         help="Where the shrunk programs go as scenario files (default: fixtures/scenarios/found)")
    explore.add_argument("--snakepit-sources", type=Path,
                         help="Directory of Snakepit's and its dependencies' sources (layout in docs/e2e.md)")
    explore.add_argument("--timeout-scale", default="1", help="Multiply the emulator's deadlines (slow machines)")


def _count(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}")
    return value


def _progress(line: str) -> None:
    sys.stderr.write(f"explore: {line}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        count = _count(args.programs, "--programs", 1)
        seed = _count(args.seed, "--seed", 0)
        rounds = _count(args.shrink_rounds, "--shrink-rounds", 0)
        scale = float(args.timeout_scale)
        if not scale > 0:
            raise ValueError(f"--timeout-scale must be positive, not {args.timeout_scale!r}")
        if args.snakepit_version not in VERSIONS:
            raise ValueError(f"--snakepit-version must be one of {', '.join(VERSIONS)} (the releases it builds), "
                             f"not {args.snakepit_version!r}")
        if args.snakepit_sources is not None and not args.snakepit_sources.is_dir():
            raise ValueError(f"--snakepit-sources {args.snakepit_sources} is not a directory")
        for option, path in (("--report-dir", args.report_dir), ("--found-dir", args.found_dir)):
            if path.exists() and not path.is_dir():
                raise ValueError(f"{option} {path} exists and is not a directory")
    except ValueError as problem:
        sys.stderr.write(f"snakepit-contract explore: {problem}\n")
        return EXIT_USAGE
    try:
        import hypothesis  # noqa: F401  (the generator's engine: the `explore` extra)
    except ImportError:
        print("explore: NOT-RUN: the generator needs hypothesis (pip install 'snakepit-contract[explore]')", file=out)
        return EXIT_NOT_RUN
    from contract_tests.contract.profiles import get_profile
    from contract_tests.e2e import explore

    try:
        sides = explore.Sides(
            snakepit=explore.live_side(args.snakepit_version, args.snakepit_sources, _progress),
            emulator=functools.partial(explore.emulator_result, profile=get_profile(args.snakepit_version),
                                       timeout_scale=scale))
        result = explore.explore(args.snakepit_version, count, seed, sides, args.found_dir, _progress, rounds)
    except explore.ExploreError as failed:
        print(f"explore: Snakepit {args.snakepit_version}: {failed}", file=out)
        return EXIT_NOT_RUN
    explore.summary(result, out)
    print(f"explore: report in {explore.write_json(result, args.report_dir)}", file=out)
    return EXIT_DIVERGE if result.shrunk else EXIT_AGREE
