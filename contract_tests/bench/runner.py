"""A bench run: the two bare baselines and the worker under test, repetitions interleaved.

Each repetition measures every target once, in turn (the order rotating from one repetition to the next), on
fresh processes, so slow drift of a noisy machine touches all of them alike; figures are then compared as ratios
of medians.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contract_tests.bench.measure import BenchSettings, Sample, Target, make_spec, measure
from contract_tests.contract.profiles import Profile
from contract_tests.elixir.host import HostEmulator

BASELINE_MODULE = "contract_tests.bench.baselines"
BASELINES = (
    Target("baseline-sync", (sys.executable, "-m", BASELINE_MODULE, "--variant", "sync")),
    Target("baseline-async", (sys.executable, "-m", BASELINE_MODULE, "--variant", "async")),
)
WORKER = "worker"


@dataclass
class BenchRun:
    """Every sample of every target, in measurement order."""

    profile: str
    settings: BenchSettings
    targets: list[Target]
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def run_bench(
    worker_cmd: Sequence[str],
    settings: BenchSettings,
    profile: Profile,
    progress: Callable[[str], None] = lambda line: None,
    baselines: Sequence[Target] = BASELINES,
    worker_image: str | None = None,
) -> BenchRun:
    """Measure the baselines and the worker `settings.repeat` times, interleaved."""
    targets = [Target(WORKER, tuple(worker_cmd), worker_image), *baselines]
    run = BenchRun(profile.name, settings, targets, {t.name: [] for t in targets})
    # The Elixir side the worker dials (heartbeats, callbacks), as in a real pool.
    with HostEmulator(profile) as host:
        for rep in range(1, settings.repeat + 1):
            for target in turn_order(targets, rep):
                progress(f"repetition {rep}/{settings.repeat}: {target.name}")
                spec = make_spec(target, profile, host.elixir_address_for_worker, settings)
                run.samples[target.name].append(measure(spec, settings, assume_tools=target in baselines, host=host))
    return run


def turn_order(targets: Sequence[Target], rep: int) -> list[Target]:
    """Repetition `rep`'s order: the first goes first (the worker, so one that cannot start fails the run before the
    baselines cost time), then each repetition starts one target later: whatever a place in the order costs (the
    first runs right after the previous repetition's processes were stopped) falls on every target alike."""
    shift = (rep - 1) % len(targets)
    return [*targets[shift:], *targets[:shift]]
