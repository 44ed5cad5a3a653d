"""`snakepit-contract run --e2e`: the live E2E tier from the command line.

Exit status: 0 every scenario that ran agrees with the emulator, 1 at least one divergence, 2 the tier did
not run (NOT-RUN), did not finish (ERROR) or left a scenario unjudged; the summary says which and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from contract_tests.e2e.compare import DIVERGE, UNJUDGED
from contract_tests.e2e.live import WORKERS
from contract_tests.e2e.sources import NEWEST, VERSIONS
from contract_tests.e2e.tier import RAN, run_tier, summary, write_json

EXIT_AGREE, EXIT_DIVERGE, EXIT_NOT_RUN, EXIT_USAGE = 0, 1, 2, 3


def add_arguments(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("live E2E tier (docs/e2e.md)")
    group.add_argument("--e2e", action="store_true",
                       help="Run the scenarios through real Snakepit in a container and compare with the emulator")
    # --snakepit-version (the run command's release option) names the Snakepit to build; one of VERSIONS.
    group.add_argument("--snakepit-sources", type=Path,
                       help="Directory of Snakepit's and its dependencies' sources (--e2e; layout in docs/e2e.md)")
    group.add_argument("--e2e-worker", choices=sorted(WORKERS), default="reference",
                       help="Worker Snakepit spawns: the reference worker or Snakepit's own Python bridge (--e2e)")


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.snakepit_sources is not None and not args.snakepit_sources.is_dir():
        sys.stderr.write(f"snakepit-contract: --snakepit-sources {args.snakepit_sources} is not a directory\n")
        return EXIT_USAGE
    version = args.snakepit_version or NEWEST
    if version not in VERSIONS:
        sys.stderr.write(f"snakepit-contract: --e2e builds Snakepit {', '.join(VERSIONS)}, not {version!r}\n")
        return EXIT_USAGE
    result = run_tier(version, args.e2e_worker, args.snakepit_sources)
    summary(result, out)
    print(f"e2e: report in {write_json(result, args.report_dir)}", file=out)
    if result.status != RAN or any(c.status == UNJUDGED for c in result.comparisons):
        return EXIT_NOT_RUN
    return EXIT_DIVERGE if any(c.status == DIVERGE for c in result.comparisons) else EXIT_AGREE
