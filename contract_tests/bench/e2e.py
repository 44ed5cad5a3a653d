"""`snakepit-contract bench --e2e`: what a call costs from Elixir, through the real Snakepit (docs/bench.md).

One container of the live E2E tier's host image (the same image and build, docs/e2e.md) and one BEAM in it run
`mix contract.bench`: for each round, target and pool size, Snakepit starts a pool of that target and the runner
times `Snakepit.execute` of the bench's timing tool, sequentially and from concurrent callers. The targets are the
worker under test, the bare asyncio baseline server (contract_tests.bench.baselines) and Snakepit's own Python
bridge, all launched by the same Snakepit; every figure is compared with the baseline's at the same pool size.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import contract_tests
from contract_tests.bench.stats import percentile, ratio, spread
from contract_tests.e2e import image, live
from contract_tests.e2e.tier import find_sources

WORKER, BASELINE, BRIDGE = "worker", "baseline-async", "snakepit-bridge"
RAN, NOT_RUN, ERROR = "RAN", "NOT-RUN", "ERROR"
SCHEMA_VERSION = 1
CONTAINER_CONFIG = "/bench"
ENTRYPOINT = ["mix", "do", "loadpaths", "--no-deps-check", "+", "contract.bench"]
UNITS = {"p50_us": "µs", "p90_us": "µs", "p99_us": "µs", "calls_per_s": "calls/s", "concurrent_calls_per_s": "calls/s",
         "worker_cpu_us_per_call": "µs", "beam_cpu_us_per_call": "µs"}
LOWER_IS_BETTER = {"p50_us", "p90_us", "p99_us", "worker_cpu_us_per_call", "beam_cpu_us_per_call"}
_COLUMNS = {"p50_us": "p50 µs", "p90_us": "p90 µs", "p99_us": "p99 µs", "calls_per_s": "seq calls/s",
            "concurrent_calls_per_s": "conc calls/s", "worker_cpu_us_per_call": "worker-cpu µs",
            "beam_cpu_us_per_call": "beam-cpu µs"}
# /proc's CPU times are in clock ticks; the container shares this kernel.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Budget of one measurement: a pool start (Snakepit waits up to 60 s for readiness) plus the calls at 10 ms each.
_START_BUDGET_S, _CALL_BUDGET_S, _RUN_BUDGET_S = 60.0, 0.01, 180.0


class MalformedLine(ValueError):
    """A result line of the Elixir runner lacks a field or has one of the wrong type."""


@dataclass(frozen=True)
class E2ESettings:
    """What each measurement does: `calls` sequential calls after `warmup` untimed ones, then `calls` calls from
    `concurrency` callers at once; `rounds` rounds of every target and pool size."""

    calls: int = 2000
    warmup: int = 200
    rounds: int = 3
    concurrency: int = 4
    pool_sizes: tuple[int, ...] = (1, 2)
    tool: str = "contract.echo"
    params: Mapping[str, Any] = field(default_factory=lambda: {"message": "ping", "n": 1})
    timeout_scale: float = 1.0

    def as_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "warmup": self.warmup, "rounds": self.rounds, "concurrency": self.concurrency,
                "pool_sizes": list(self.pool_sizes), "tool": self.tool, "params": dict(self.params),
                "timeout_scale": self.timeout_scale}

    def timeout_s(self, targets: int) -> float:
        measurements = self.rounds * targets * len(self.pool_sizes)
        calls = 2 * (self.calls + self.warmup) + self.concurrency
        return (_RUN_BUDGET_S + measurements * (_START_BUDGET_S + calls * _CALL_BUDGET_S)) * self.timeout_scale


def baseline() -> live.Worker:
    """The bare asyncio server of the standalone bench, run by the image's Python (the reference worker's) from
    this installation's kit, mounted beside the reference worker."""
    reference = live.reference()
    kit = (Path(contract_tests.__file__).parent, "/opt/worker/contract_tests")
    return replace(reference, name=BASELINE, argv=(reference.argv[0], "-m", "contract_tests.bench.baselines",
                                                   "--variant", "async"), mounts=(*reference.mounts, kit))


def targets() -> list[live.Worker]:
    """The worker under test (the reference worker), the bare baseline and Snakepit's bridge, in measuring order."""
    return [replace(live.reference(), name=WORKER), baseline(), live.snakepit_bridge()]


def runner_config(settings: E2ESettings, workers: Sequence[live.Worker]) -> dict[str, Any]:
    """The CONFIG.json of `mix contract.bench`."""
    return {"targets": [{"name": w.name, "argv": list(w.argv), "env": dict(w.env)} for w in workers],
            "pool_sizes": list(settings.pool_sizes), "rounds": settings.rounds, "calls": settings.calls,
            "warmup": settings.warmup, "concurrency": settings.concurrency, "tool": settings.tool,
            "params": dict(settings.params)}


def _field(event: Mapping[str, Any], name: str, kind: type) -> Any:
    value = event.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedLine(f"bench_sample line without a valid {name!r}: {json.dumps(event)[:300]}")
    return value


def figures(event: Mapping[str, Any]) -> dict[str, float]:
    """One measurement's figures from its `bench_sample` line: nearest-rank percentiles of the sequential calls,
    their calls/s over the loop's wall time, the concurrent callers' calls/s, and the CPU time the pool's workers
    and the BEAM spent per sequential call (10 ms ticks: a few µs per call over 2000 calls)."""
    latencies = _field(event, "latencies_ns", list)
    if not latencies or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in latencies):
        raise MalformedLine(f"bench_sample line with no or non-positive latencies: {json.dumps(event)[:300]}")
    elapsed, calls, concurrent_elapsed = (_field(event, name, int)
                                          for name in ("elapsed_ns", "concurrent_calls", "concurrent_elapsed_ns"))
    if min(elapsed, calls, concurrent_elapsed) <= 0:
        raise MalformedLine(f"bench_sample line with a non-positive count or time: {json.dumps(event)[:300]}")
    worker_ticks, beam_ticks = (_field(event, name, int) for name in ("worker_cpu_ticks", "beam_cpu_ticks"))
    if min(worker_ticks, beam_ticks) < 0:
        raise MalformedLine(f"bench_sample line with a negative CPU time: {json.dumps(event)[:300]}")
    micros = [v / 1000 for v in latencies]
    per_call = 1e6 / CLOCK_TICKS_PER_S / len(latencies)
    return {"p50_us": percentile(micros, 50), "p90_us": percentile(micros, 90), "p99_us": percentile(micros, 99),
            "calls_per_s": len(latencies) / (elapsed / 1e9),
            "concurrent_calls_per_s": calls / (concurrent_elapsed / 1e9),
            "worker_cpu_us_per_call": worker_ticks * per_call, "beam_cpu_us_per_call": beam_ticks * per_call}


Samples = dict[str, dict[int, list[dict[str, float]]]]


def collect(events: Sequence[Mapping[str, Any]]) -> tuple[Samples, str | None]:
    """Every measurement's figures by target and pool size, in round order, and the runner's error if it stopped."""
    samples: Samples = {}
    for event in events:
        if event.get("event") == "bench_error":
            where = f"{event.get('target')} (pool of {event.get('pool_size')}, round {event.get('round')})"
            return samples, f"{where}: {str(event.get('reason', '?'))[:2000]}"
        if event.get("event") == "bench_sample":
            target, size = _field(event, "target", str), _field(event, "pool_size", int)
            samples.setdefault(target, {}).setdefault(size, []).append(figures(event))
    return samples, None


def summarise(samples: Samples) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """Median and spread (min-max) over the rounds, per target, pool size and figure."""
    return {target: {size: {figure: spread([s[figure] for s in rounds]) for figure in UNITS}
                     for size, rounds in by_size.items()}
            for target, by_size in samples.items()}


def ratios(summary: Mapping[str, Mapping[int, Mapping[str, Mapping[str, float]]]],
           base: str = BASELINE) -> dict[str, dict[int, dict[str, float | None]]]:
    """Each target's median / the baseline's median at the same pool size (None where either is missing)."""
    reference = summary.get(base, {})
    return {target: {size: {figure: ratio(stat["median"], reference.get(size, {}).get(figure, {}).get("median"))
                            for figure, stat in figures_.items()}
                     for size, figures_ in by_size.items()}
            for target, by_size in summary.items()}


@dataclass
class BenchE2EResult:
    """One `bench --e2e` run: whether it ran, why not, and every measurement."""

    version: str
    settings: E2ESettings
    status: str = NOT_RUN
    reason: str = ""
    origin: str = ""
    targets: list[live.Worker] = field(default_factory=list)
    samples: Samples = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    evidence: str = ""

    def as_json(self) -> dict[str, Any]:
        summary = summarise(self.samples)
        return {
            "schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "snakepit_version": self.version, "status": self.status, "reason": self.reason,
            "snakepit_from": self.origin, "runtime": self.runtime,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": self.load},
            "settings": self.settings.as_json(), "units": UNITS, "lower_is_better": sorted(LOWER_IS_BETTER),
            "baseline": BASELINE,
            "targets": {w.name: {"argv": list(w.argv),
                                 "summary": {str(size): figs for size, figs in summary.get(w.name, {}).items()},
                                 "samples": {str(size): got for size, got in self.samples.get(w.name, {}).items()}}
                        for w in self.targets},
            "ratios": {target: {str(size): figs for size, figs in by_size.items()}
                       for target, by_size in ratios(summary).items()},
            "evidence": self.evidence,
        }


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(version: str, settings: E2ESettings, sources_dir: Path | None = None) -> BenchE2EResult:
    """Build (or reuse) the host image with Snakepit's bridge, run every measurement in one container, collect."""
    result = BenchE2EResult(version, settings, targets=targets())
    try:
        sources = find_sources(version, sources_dir)
        result.origin = f"sources {sources.root} (via {sources.found_via})" if sources else "Hex"
        client = image.engine()
        tag = image.build(client, version, sources, image.bridge_wheels(version))
    except image.NotAvailable as why:
        result.reason = str(why)
        return result
    except image.BuildFailed as failed:
        result.status, result.reason, result.evidence = ERROR, "the host image did not build", str(failed)
        return result
    mounts = list(dict.fromkeys(mount for worker in result.targets for mount in worker.mounts))
    staged = Path(tempfile.mkdtemp(prefix="snakepit-bench-e2e-"))
    try:
        (staged / "config.json").write_text(json.dumps(runner_config(settings, result.targets)), encoding="utf-8")
        result.load["before"] = _load()
        status, log = live.run_container(tag, [f"{CONTAINER_CONFIG}/config.json"], [(staged, CONTAINER_CONFIG),
                                         *mounts], {}, settings.timeout_s(len(result.targets)), entrypoint=ENTRYPOINT)
        result.load["after"] = _load()
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    events = live.parse_events(log)
    result.runtime = next(({k: v for k, v in e.items() if k != "event"} for e in events
                           if e.get("event") == "run_start"), {})
    tail = "\n".join(log.splitlines()[-40:])
    try:
        result.samples, error = collect(events)
    except MalformedLine as bad:
        result.status, result.reason, result.evidence = ERROR, str(bad), tail
        return result
    if error is not None:
        result.status, result.reason, result.evidence = ERROR, f"a measurement failed: {error}", tail
    elif not any(e.get("event") == "run_end" for e in events):
        result.status, result.evidence = ERROR, tail
        result.reason = f"real Snakepit printed no run_end line (container exit status {status})"
    else:
        result.status = RAN
    return result


def write_json(doc: Mapping[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"bench-e2e-{doc['snakepit_version']}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _number(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ") if abs(value) >= 100 else f"{value:.1f}"


def _cell(stat: Mapping[str, float]) -> str:
    """The median, and its spread when there was more than one round."""
    spread_ = "" if stat["n"] == 1 else f" ({_number(stat['min'])}-{_number(stat['max'])})"
    return _number(stat["median"]) + spread_


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)) for row in rows]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def table(doc: Mapping[str, Any]) -> str:
    """Per target and pool size: each figure's median (min-max), then a second grid of its ratio to the baseline
    at that pool size."""
    figures_ = list(doc["units"])
    values = [["target", "pool", *(_COLUMNS[f] for f in figures_)]]
    shares = [["target", "pool", *(f"x {_COLUMNS[f]}" for f in figures_)]]
    for name, target in doc["targets"].items():
        for size, stats in target["summary"].items():
            values.append([name, size, *(_cell(stats[f]) for f in figures_)])
            got = doc["ratios"][name][size]
            shares.append([name, size, *("-" if got[f] is None else f"{got[f]:.2f}" for f in figures_)])
    lines = [*_grid(values), "", *_grid(shares)]
    settings, load = doc["settings"], doc["machine"]["load_average"]
    lines.append(f"Snakepit {doc['snakepit_version']} ({doc['snakepit_from']}); Snakepit.execute of "
                 f"{settings['tool']} from Elixir: {settings['calls']} sequential calls and {settings['calls']} from "
                 f"{settings['concurrency']} concurrent callers per measurement; medians of {settings['rounds']} "
                 f"rounds (min-max); ratio = target / {doc['baseline']} at the same pool size; load average before "
                 f"{load.get('before')}, after {load.get('after')}")
    return "\n".join(lines)
