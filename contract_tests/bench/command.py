"""The `snakepit-contract bench` subcommand: options, the run, bench.json and the table.

Exit status: 0 measured, 2 the harness failed (a target did not start or a call failed) or, with --e2e, the
run was NOT-RUN (no engine, sources or base image), 3 usage error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

import grpc

from contract_tests.bench import e2e, output
from contract_tests.bench.e2e import E2ESettings
from contract_tests.bench.measure import BenchSettings
from contract_tests.bench.runner import run_bench
from contract_tests.contract.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from contract_tests.e2e.sources import NEWEST, VERSIONS
from contract_tests.errors import EXIT_CONFORMANT, EXIT_HARNESS, UsageProblem, WorkerStartError
from contract_tests.judging.settings import DEFAULT_WORKER_CMD

_DEFAULTS = BenchSettings()
_COUNTS = {
    "calls": "Timed sequential ExecuteTool calls per repetition",
    "warmup": "Untimed calls before them",
    "repeat": "Repetitions (each on fresh processes)",
    "launches": "Spawn-to-ready launches per repetition (median taken)",
    "stream_chunks": "Chunks of each timed contract.stream call",
    "stream_runs": "Timed contract.stream calls per repetition (the median one counts)",
    "payload_calls": "Timed 1 MiB contract.echo calls",
    "payload_50mib_calls": "Timed 50 MiB contract.echo calls (0: no 50 MiB figure)",
    "pool_calls": "Timed calls through a pool (0: no pool figure)",
    "pool_size": "Workers in the pool",
    "pool_sessions": "Concurrent sessions calling the pool, one call at a time each",
}


def add_parser(sub: Any) -> None:
    """Register `bench` on the CLI's subparsers."""
    bench = sub.add_parser("bench", help="Measure a worker's cost next to a bare grpcio server (docs/bench.md)")
    target = bench.add_mutually_exclusive_group()
    target.add_argument("--worker-cmd", help="Worker command, shell-quoted (default: the reference worker)")
    target.add_argument("--worker-image", help="Worker container image: each worker a container of it "
                                               "(host network, the engine at DOCKER_HOST; docs/worker-image.md)")
    for name, text in _COUNTS.items():
        default = getattr(_DEFAULTS, name)
        bench.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=f"{text} (default {default})")
    bench.add_argument("--call-tool", help="Tool of the latency, calls/s, RSS and pool figures, for a worker "
                       "without contract.echo (default: contract.echo)")
    bench.add_argument("--call-params", default="{}", help="Its parameters, a JSON object (default {})")
    releases = bench.add_mutually_exclusive_group()
    releases.add_argument("--profile", help=f"How the targets are launched and called: {', '.join(PROFILES)} "
                                            f"(default {DEFAULT_PROFILE})")
    releases.add_argument("--snakepit-version", help="Launch and call the targets as this Snakepit release does "
                                                     "(X.Y.Z, 0.6.0 … 0.13.0; default: the newest)")
    bench.add_argument("--timeout-scale", type=float, default=1.0, help="Multiply readiness and call deadlines")
    bench.add_argument("--report-dir", type=Path, default=Path("bench-report"),
                       help="Where bench.json (or bench-e2e-VERSION.json) goes (default: ./bench-report)")
    live = bench.add_argument_group("through the real Snakepit (--e2e; docs/bench.md)")
    live.add_argument("--e2e", action="store_true",
                      help="Time Snakepit.execute from Elixir through real Snakepit (--snakepit-version, default the "
                           "newest it builds) for the reference worker, the bare baseline and Snakepit's bridge, in "
                           "one container run; uses --calls, --warmup, --repeat (rounds) and --timeout-scale")
    live.add_argument("--concurrency", type=int, default=E2ESettings().concurrency,
                      help=f"Concurrent callers of the concurrent figure (--e2e; default {E2ESettings().concurrency})")
    live.add_argument("--snakepit-sources", type=Path,
                      help="Directory of Snakepit's and its dependencies' sources (--e2e; layout in docs/e2e.md)")


def _progress(line: str) -> None:
    sys.stderr.write(f"bench: {line}\n")
    sys.stderr.flush()


def _use_image(image: str, problem: type[Exception]) -> None:
    """The engine at DOCKER_HOST holds the image; this run's label claimed and dead runs' containers removed."""
    try:
        from contract_tests.driver import container
    except ImportError as err:
        raise problem(f"--worker-image needs the containers extra (testcontainers): {err}") from None
    try:
        container.check_image(image)
    except container.ContainerEngineError as err:
        raise problem(str(err)) from None
    container.claim_run_label()
    container.sweep_orphans()


def _e2e_settings(args: argparse.Namespace, problem: type[Exception]) -> tuple[str, E2ESettings]:
    """The release and settings of `bench --e2e`, or `problem` naming what does not fit."""
    if args.worker_cmd or args.worker_image:
        raise problem("bench --e2e measures the reference worker, which Snakepit spawns inside its container; "
                      "--worker-cmd and --worker-image are for the standalone bench")
    if args.profile:
        raise problem("bench --e2e takes --snakepit-version (the Snakepit release to build), not --profile")
    version = args.snakepit_version or NEWEST
    if version not in VERSIONS:
        raise problem(f"bench --e2e builds Snakepit {', '.join(VERSIONS)}, not {version!r}")
    if args.snakepit_sources is not None and not args.snakepit_sources.is_dir():
        raise problem(f"--snakepit-sources {args.snakepit_sources} is not a directory")
    if args.concurrency < 1:
        raise problem(f"--concurrency must be a positive number, not {args.concurrency}")
    if args.calls < args.concurrency:
        raise problem(f"--calls ({args.calls}) must be at least --concurrency ({args.concurrency}): each concurrent "
                      "caller makes --calls / --concurrency calls")
    return version, E2ESettings(calls=args.calls, warmup=args.warmup, rounds=args.repeat,
                                concurrency=args.concurrency, timeout_scale=args.timeout_scale)


def _run_e2e(args: argparse.Namespace, out: TextIO) -> int:
    """`bench --e2e`: NOT-RUN and ERROR are exit 2 with the reason, never a result."""
    version, settings = _e2e_settings(args, UsageProblem)
    _progress(f"through real Snakepit {version}: {', '.join(t.name for t in e2e.targets())}, pools of "
              f"{' and '.join(map(str, settings.pool_sizes))}, {settings.rounds} rounds (one container run)")
    result = e2e.run(version, settings, args.snakepit_sources)
    doc = result.as_json()
    path = e2e.write_json(doc, args.report_dir)
    if result.status != e2e.RAN:
        out.write(f"bench --e2e: Snakepit {version}: {result.status}: {result.reason}\n")
        if result.evidence:
            out.write(result.evidence + "\n")
        out.write(f"snakepit-contract bench: report in {path}\n")
        return EXIT_HARNESS
    out.write(e2e.table(doc) + "\n")
    out.write(f"snakepit-contract bench: results in {path}\n")
    return EXIT_CONFORMANT


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the bench; usage problems raise UsageProblem."""
    for name in _COUNTS:
        if getattr(args, name) < (0 if name in ("warmup", "pool_calls", "payload_50mib_calls") else 1):
            raise UsageProblem(f"--{name.replace('_', '-')} must be a positive number, not {getattr(args, name)}")
    if args.timeout_scale <= 0:
        raise UsageProblem(f"--timeout-scale must be positive, not {args.timeout_scale}")
    if args.e2e:
        return _run_e2e(args, out)
    if args.worker_image is not None:
        _use_image(args.worker_image, UsageProblem)
        worker_cmd: list[str] = []  # the image's ENTRYPOINT
    else:
        try:
            worker_cmd = shlex.split(args.worker_cmd) if args.worker_cmd else list(DEFAULT_WORKER_CMD)
        except ValueError as err:
            raise UsageProblem(f"--worker-cmd cannot be split: {err}") from err
        if not worker_cmd:
            raise UsageProblem("--worker-cmd is empty")
    try:
        call_params = json.loads(args.call_params)
    except ValueError as err:
        raise UsageProblem(f"--call-params is not JSON: {err}") from err
    if not isinstance(call_params, dict):
        raise UsageProblem("--call-params must be a JSON object")
    settings = BenchSettings(**{name: getattr(args, name) for name in _COUNTS}, timeout_scale=args.timeout_scale,
                             call_tool=args.call_tool, call_params=call_params)
    try:
        release = get_profile(args.snakepit_version or args.profile or DEFAULT_PROFILE)
    except ValueError as err:
        raise UsageProblem(str(err)) from None
    try:
        bench_run = run_bench(worker_cmd, settings, release,
                              progress=_progress, worker_image=args.worker_image)
    except (WorkerStartError, grpc.RpcError, RuntimeError, OSError) as err:
        sys.stderr.write(f"snakepit-contract bench: harness failure: {err}\n")
        return EXIT_HARNESS
    doc = output.build(bench_run)
    path = output.write(doc, args.report_dir)
    out.write(output.table(doc) + "\n")
    out.write(f"snakepit-contract bench: results in {path}\n")
    return EXIT_CONFORMANT
