"""Self-tests of `snakepit-contract bench`: plumbing only, with tiny counts.

Benchmarks are never timed assertions here: the figures are checked for shape and presence, and
the one comparison (a mutant that sleeps 5 ms per call) is loose and relative to the reference worker.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract_tests import cli, errors
from contract_tests.bench.measure import TOOL_FIGURES, UNITS, BenchSettings, Target, make_spec, measure
from contract_tests.bench.output import build
from contract_tests.bench.runner import BASELINES, WORKER, run_bench, turn_order
from contract_tests.bench.stats import percentile, ratio, spread
from contract_tests.contract.profiles import PROFILES, SNAKEPIT_0_13
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.elixir.host import HostEmulator
from contract_tests.judging.settings import DEFAULT_WORKER_CMD

TINY = BenchSettings(calls=20, warmup=0, repeat=1, launches=1, stream_chunks=20, stream_runs=1, payload_calls=1,
                     payload_50mib_calls=0, pool_calls=0)
TINY_ARGS = ["--calls", "20", "--warmup", "0", "--repeat", "1", "--launches", "1", "--stream-chunks", "20",
             "--stream-runs", "1", "--payload-calls", "1", "--payload-50mib-calls", "0", "--pool-calls", "8"]
NOT_REQUESTED = {"payload_50mib_mb_per_s", "pool_calls_per_s"}
SLEEPY_MUTANT = '''
"""Mutant: every ExecuteTool first sleeps 5 ms."""
import asyncio
import sys

from reference_worker import server, servicer

_execute = servicer.BridgeServicer.ExecuteTool


async def _slow(self, request, context):
    await asyncio.sleep(0.005)
    return await _execute(self, request, context)


servicer.BridgeServicer.ExecuteTool = _slow
sys.exit(server.main())
'''


@pytest.fixture(scope="module")
def host() -> Iterator[HostEmulator]:
    with HostEmulator(SNAKEPIT_0_13) as emulator:
        yield emulator


def test_stats_are_nearest_rank_and_median_spread() -> None:
    """Ensure that percentiles, spreads and ratios are computed as docs/bench.md says."""
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([7.0], 90)) == (50.0, 99.0, 7.0)
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("baseline", BASELINES, ids=lambda t: t.name)
def test_baseline_servers_answer_like_workers(baseline: Target, profile: str, host: HostEmulator) -> None:
    """Ensure that both bare servers start through the launcher and answer the measured calls."""
    spec = make_spec(baseline, PROFILES[profile], host.elixir_address_for_worker, TINY)
    with WorkerProcess(spec) as worker:
        assert worker.client is not None
        assert worker.client.execute("anything").value == {"ok": True}
        assert worker.client.execute("contract.echo", {"a": [1, "x"], "b": None}).value == {"a": [1, "x"], "b": None}
        chunks = worker.client.stream("contract.stream", {"count": 3, "interval_ms": 0}).chunks
        assert [json.loads(c.data) for c in chunks[:-1]] == [{"index": 0}, {"index": 1}, {"index": 2}]
        assert chunks[-1].is_final and not chunks[-1].data


def test_worker_without_catalogue_gets_tool_figures_skipped(host: HostEmulator) -> None:
    """Ensure that a worker without contract.catalogue keeps its non-tool figures, the rest skipped with a reason."""
    spec = make_spec(BASELINES[0], SNAKEPIT_0_13, host.elixir_address_for_worker, TINY)
    sample = measure(spec, TINY)
    assert set(sample.skipped) == set(TOOL_FIGURES)  # pool_calls_per_s too, before its own reason
    assert all("contract.catalogue" in reason for reason in sample.skipped.values())
    assert set(sample.figures) == set(UNITS) - set(TOOL_FIGURES)


def test_call_tool_measures_latency_of_a_worker_without_catalogue(host: HostEmulator) -> None:
    """Ensure that --call-tool unlocks the call figures only; payload and streaming stay skipped."""
    settings = dataclasses.replace(TINY, call_tool="ping")
    sample = measure(make_spec(BASELINES[1], SNAKEPIT_0_13, host.elixir_address_for_worker, settings), settings)
    assert {"p50_us", "calls_per_s", "rss_growth_mib"} <= set(sample.figures)
    assert set(sample.skipped) == {"stream_chunks_per_s", "stream_mb_per_s", "stream_cpu_us_per_chunk",
                                   "payload_1mib_mb_per_s", "payload_1mib_cpu_us_per_call", "payload_50mib_mb_per_s",
                                   "pool_calls_per_s"}


def test_mutant_sleeping_5ms_shows_a_larger_p50(tmp_path: Path) -> None:
    """Ensure that 5 ms of sleep per call shows up: every repetition's p50 is at least the sleep, whatever the load,
    and the median p50 is larger than the reference's, measured interleaved in the same run (the bench's method;
    at load 30 the reference's own p50 moves by more than 10 ms, so no difference in ms is a margin)."""
    mutant = tmp_path / "sleeps_5ms.py"
    mutant.write_text(SLEEPY_MUTANT)
    settings = dataclasses.replace(TINY, repeat=3)
    run = run_bench([sys.executable, str(mutant)], settings, SNAKEPIT_0_13,
                    baselines=(Target("reference", DEFAULT_WORKER_CMD),))
    assert all(set(sample.skipped) == NOT_REQUESTED for samples in run.samples.values() for sample in samples)
    doc = build(run)
    p50 = doc["targets"][WORKER]["summary"]["p50_us"]
    assert p50["n"] == 3 and p50["min"] >= 5000, doc["targets"]
    assert doc["ratios"][WORKER]["p50_us"]["reference"] > 1, doc["targets"]


def test_stream_and_50mib_figures_measure_the_reference_worker(host: HostEmulator) -> None:
    """Ensure that the streaming figures (median of the runs, worker CPU per chunk) and the 50 MiB echo are taken."""
    settings = dataclasses.replace(TINY, stream_chunks=200, stream_runs=3, payload_50mib_calls=1)
    spec = make_spec(Target("reference", DEFAULT_WORKER_CMD), SNAKEPIT_0_13, host.elixir_address_for_worker, settings)
    sample = measure(spec, settings)
    assert set(sample.skipped) == {"pool_calls_per_s"}, sample.skipped
    assert sample.figures["stream_chunks_per_s"] > 0 and sample.figures["payload_50mib_mb_per_s"] > 0
    assert sample.figures["stream_cpu_us_per_chunk"] >= 0  # 10 ms ticks: 600 chunks may round to 0


def test_targets_take_turns_going_first() -> None:
    """Ensure the worker goes first in the first repetition (it fails fast) and every target goes first, and last,
    equally often over as many repetitions as there are targets."""
    targets = [Target(WORKER, ("w",)), *BASELINES]
    orders = [turn_order(targets, rep) for rep in range(1, 4)]
    assert orders[0] == targets
    assert all(sorted(t.name for t in order) == sorted(t.name for t in targets) for order in orders)
    assert {order[0].name for order in orders} == {order[-1].name for order in orders} == {t.name for t in targets}
    assert turn_order(targets, 4) == targets


def test_bench_command_writes_bench_json_with_ratios(tmp_path: Path) -> None:
    """Ensure that `bench` exits 0, prints the table and writes a versioned bench.json with every ratio."""
    done = subprocess.run([sys.executable, "-m", "contract_tests.cli", "bench", *TINY_ARGS,
                           "--report-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.EXIT_CONFORMANT, done.stdout + done.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["baselines"] == ["baseline-sync", "baseline-async"]
    assert set(doc["targets"]) == {"worker", "baseline-sync", "baseline-async"}
    worker = doc["targets"]["worker"]
    assert set(worker["skipped"]) == {"payload_50mib_mb_per_s"}
    assert set(worker["summary"]) == set(UNITS) - {"payload_50mib_mb_per_s"} and len(worker["samples"]) == 1
    for figure in worker["summary"]:
        assert set(doc["ratios"]["worker"][figure]) == {"baseline-sync", "baseline-async"}
    assert all(isinstance(doc["ratios"]["worker"][f]["baseline-sync"], float) for f in ("p50_us", "calls_per_s"))
    assert "x baseline-sync" in done.stdout and "p50_us" in done.stdout


@pytest.mark.parametrize("args", [["--calls", "0"], ["--worker-image", "x"], ["--profile", "nope"],
                                  ["--worker-cmd", "'unclosed"], ["--call-params", "[1]"],
                                  ["--stream-runs", "0"], ["--payload-50mib-calls", "-1"]])
def test_bench_usage_errors_exit_3(args: list[str]) -> None:
    """Ensure that impossible bench command lines are usage errors."""
    assert cli.main(["bench", *args], out=io.StringIO()) == errors.EXIT_USAGE


def test_bench_worker_that_cannot_start_is_a_harness_failure(tmp_path: Path) -> None:
    """Ensure that a worker that never becomes ready makes `bench` exit 2 without writing bench.json."""
    code = cli.main(["bench", *TINY_ARGS, "--worker-cmd", f"{sys.executable} -c 'pass'",
                     "--report-dir", str(tmp_path)], out=io.StringIO())
    assert code == errors.EXIT_HARNESS
    assert not (tmp_path / "bench.json").exists()
