"""`snakepit-contract bench --e2e`: reading the Elixir runner's result lines, the summary and ratios, the command's
usage errors and NOT-RUN, and (where SNAKEPIT_E2E=1) one real run through Snakepit with tiny counts.

No figure is asserted against a threshold: the live test checks that every target and pool size was measured.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from contract_tests.bench import e2e
from contract_tests.bench.e2e import BASELINE, BRIDGE, WORKER, E2ESettings, MalformedLine
from contract_tests.cli import main
from contract_tests.e2e import image, live, sources


def _sample(target: str, size: int, latencies_us: Sequence[int], elapsed_ms: float = 10.0, concurrent_calls: int = 8,
            concurrent_ms: float = 4.0, round_: int = 1) -> dict[str, Any]:
    return {"event": "bench_sample", "round": round_, "target": target, "pool_size": size,
            "latencies_ns": [v * 1000 for v in latencies_us], "elapsed_ns": int(elapsed_ms * 1e6),
            "concurrency": 4, "concurrent_calls": concurrent_calls, "concurrent_elapsed_ns": int(concurrent_ms * 1e6),
            "worker_cpu_ticks": 3, "beam_cpu_ticks": 5}


def test_figures_are_nearest_rank_percentiles_and_rates_over_wall_time() -> None:
    """Ensure one bench_sample line gives nearest-rank p50/p90/p99 in µs, calls over the loop's wall time and the
    concurrent calls over theirs."""
    found = e2e.figures(_sample(WORKER, 1, list(range(100, 0, -1)), elapsed_ms=20.0, concurrent_calls=40,
                                concurrent_ms=10.0))
    assert (found["p50_us"], found["p90_us"], found["p99_us"]) == (50.0, 90.0, 99.0)
    assert found["calls_per_s"] == pytest.approx(100 / 0.020)
    assert found["concurrent_calls_per_s"] == pytest.approx(40 / 0.010)
    tick_us = 1e6 / e2e.CLOCK_TICKS_PER_S
    assert found["worker_cpu_us_per_call"] == pytest.approx(3 * tick_us / 100)
    assert found["beam_cpu_us_per_call"] == pytest.approx(5 * tick_us / 100)


@pytest.mark.parametrize("broken", [
    {"latencies_ns": []},
    {"latencies_ns": [1000, 0]},
    {"latencies_ns": [1000, True]},
    {"latencies_ns": "1000"},
    {"elapsed_ns": 0},
    {"elapsed_ns": None},
    {"concurrent_calls": -8},
    {"concurrent_elapsed_ns": 4.5},
    {"worker_cpu_ticks": -1},
    {"beam_cpu_ticks": None},
    {"pool_size": "1"},
    {"target": None},
])
def test_a_malformed_sample_line_is_an_error_never_a_figure(broken: dict[str, Any]) -> None:
    """Ensure a sample line missing a field, or with a zero, negative or mistyped one, raises instead of counting."""
    with pytest.raises(MalformedLine):
        e2e.collect([{**_sample(WORKER, 1, [100, 200]), **broken}])


def test_result_lines_are_read_among_snakepit_output_and_grouped_by_target_and_pool() -> None:
    """Ensure the runner's lines are found among Snakepit's and the workers' output, grouped by target and pool size
    in round order; other events are ignored."""
    lines = [
        "21:04:01.113 [warning] Starting worker pool",
        live.RESULT_PREFIX + json.dumps({"event": "run_start", "snakepit_version": "0.13.0"}),
        live.RESULT_PREFIX + json.dumps(_sample(WORKER, 1, [300, 100, 200])),
        "GRPC_READY:50123",
        live.RESULT_PREFIX + json.dumps(_sample(WORKER, 2, [400])),
        live.RESULT_PREFIX + json.dumps(_sample(WORKER, 1, [500], round_=2)),
        live.RESULT_PREFIX + json.dumps({"event": "run_end"}),
    ]
    samples, error = e2e.collect(live.parse_events("\n".join(lines)))
    assert error is None
    assert sorted(samples[WORKER]) == [1, 2]
    assert [s["p50_us"] for s in samples[WORKER][1]] == [200.0, 500.0]
    assert samples[WORKER][2][0]["p99_us"] == 400.0


def test_a_failed_measurement_stops_collection_with_where_and_why() -> None:
    """Ensure a bench_error line is returned as the run's error, naming target, pool size and round."""
    events = [_sample(WORKER, 1, [100]),
              {"event": "bench_error", "round": 1, "target": BRIDGE, "pool_size": 2, "reason": "did not start"},
              _sample(BASELINE, 1, [100])]
    samples, error = e2e.collect(events)
    assert list(samples) == [WORKER]
    assert error == f"{BRIDGE} (pool of 2, round 1): did not start"


def test_summary_is_median_and_spread_and_ratios_compare_the_same_pool_size() -> None:
    """Ensure each figure is the median over rounds with its min-max, and each ratio divides by the baseline's
    median at the same pool size (None where the baseline lacks that pool size)."""
    samples = e2e.collect([
        *(_sample(WORKER, 1, [v], elapsed_ms=v / 1000, round_=r) for r, v in enumerate((300, 100, 200), 1)),
        *(_sample(BASELINE, 1, [v], elapsed_ms=v / 1000, round_=r) for r, v in enumerate((100, 150, 50), 1)),
        _sample(BASELINE, 2, [400]),
        _sample(BRIDGE, 3, [1000]),
    ])[0]
    summary = e2e.summarise(samples)
    assert summary[WORKER][1]["p50_us"] == {"median": 200.0, "min": 100.0, "max": 300.0, "n": 3}
    shares = e2e.ratios(summary)
    assert shares[WORKER][1]["p50_us"] == pytest.approx(2.0)
    assert shares[WORKER][1]["calls_per_s"] == pytest.approx(0.5)
    assert shares[BASELINE][1]["p50_us"] == 1.0 and shares[BASELINE][2]["p50_us"] == 1.0
    assert shares[BRIDGE][3]["p50_us"] is None


def _result(samples: Mapping[str, Mapping[int, list[dict[str, float]]]]) -> e2e.BenchE2EResult:
    result = e2e.BenchE2EResult("0.13.0", E2ESettings(), status=e2e.RAN, origin="sources /x", targets=e2e.targets(),
                                load={"before": [1.0, 2.0, 3.0], "after": [1.5, 2.0, 3.0]})
    result.samples = {target: dict(by_size) for target, by_size in samples.items()}
    return result


def test_json_and_table_carry_every_target_pool_ratio_and_the_load() -> None:
    """Ensure the bench-e2e JSON holds each target's summary, samples and ratios per pool size, and the table prints
    one row per target and pool size with the ratio and the load averages."""
    medians = ((WORKER, 110), (BASELINE, 100), (BRIDGE, 250))
    samples = e2e.collect([_sample(name, size, [v * size * scale // 10], round_=round_)
                           for round_, scale in ((1, 10), (2, 12)) for name, v in medians for size in (1, 2)])[0]
    doc = _result(samples).as_json()
    json.dumps(doc)  # serialisable as written
    assert doc["ratios"][WORKER]["2"]["p50_us"] == pytest.approx(1.1)
    assert doc["ratios"][BRIDGE]["1"]["p50_us"] == pytest.approx(2.5)
    assert doc["targets"][BASELINE]["samples"]["1"][0]["p50_us"] == 100.0
    assert doc["machine"]["load_average"]["before"] == [1.0, 2.0, 3.0]
    rows = e2e.table(doc).splitlines()
    bridge = [row.split() for row in rows if row.startswith(BRIDGE)]  # figures at pools 1 and 2, then ratios
    assert bridge[1][:4] == [BRIDGE, "2", "550", "(500-600)"]
    assert bridge[3][:3] == [BRIDGE, "2", "2.50"]
    assert sum(row.split()[0] in (WORKER, BASELINE, BRIDGE) for row in rows if row) == 12
    assert "load average before [1.0, 2.0, 3.0]" in rows[-1]


def test_targets_are_launched_by_snakepit_from_the_image_and_this_installation() -> None:
    """Ensure the runner's config names the three targets with the argv the adapter reads: the reference worker and
    the bare asyncio baseline from the mounted installation, Snakepit's bridge with the contract adapter."""
    workers = e2e.targets()
    config = e2e.runner_config(E2ESettings(calls=10, concurrency=2), workers)
    by_name = {t["name"]: t for t in config["targets"]}
    assert list(by_name) == [WORKER, BASELINE, BRIDGE]
    assert by_name[BASELINE]["argv"][1:] == ["-m", "contract_tests.bench.baselines", "--variant", "async"]
    assert by_name[BASELINE]["argv"][0] == by_name[WORKER]["argv"][0] == live.reference().argv[0]
    assert by_name[BASELINE]["env"] == by_name[WORKER]["env"] == dict(live.reference().env)
    assert by_name[BRIDGE]["argv"] == list(live.snakepit_bridge().argv)
    kit = {inside: host for host, inside in workers[1].mounts}["/opt/worker/contract_tests"]
    assert (kit / "bench" / "baselines.py").is_file() and by_name[BASELINE]["env"]["PYTHONPATH"] == "/opt/worker"
    assert (config["calls"], config["concurrency"], config["pool_sizes"]) == (10, 2, [1, 2])
    assert (config["tool"], config["params"]) == ("contract.echo", {"message": "ping", "n": 1})


def test_the_bench_runs_the_e2e_image_with_only_the_mix_task_changed() -> None:
    """Ensure bench --e2e uses the tier's entry point (paths loaded, no dependency compiled) with its own task."""
    lines = image.DOCKERFILE.read_text().splitlines()
    entry = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT")).removeprefix("ENTRYPOINT"))
    assert e2e.ENTRYPOINT[:-1] == entry[:-1] and e2e.ENTRYPOINT[-1] == "contract.bench"
    assert (image.HOST_PROJECT / "lib" / "mix" / "tasks" / "contract.bench.ex").is_file()


def _fake_container(monkeypatch: pytest.MonkeyPatch, lines: list[str], status: int = 0) -> list[dict[str, Any]]:
    """run() without Docker: the image is 'built' and the container prints `lines`; returns what it was given."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(e2e, "find_sources", lambda version, given: None)
    monkeypatch.setattr(image, "engine", lambda: object())
    monkeypatch.setattr(image, "bridge_wheels", lambda version: Path("/nonexistent"))
    monkeypatch.setattr(image, "build", lambda client, version, sources, wheels: "host:tag")

    def run_container(tag: str, command: list[str], mounts: Sequence[tuple[Path, str]], env: Mapping[str, str],
                      timeout_s: float, entrypoint: list[str] | None = None) -> tuple[int | None, str]:
        config_dir = next(host for host, inside in mounts if inside == e2e.CONTAINER_CONFIG)
        seen.append({"tag": tag, "entrypoint": entrypoint, "command": command, "timeout_s": timeout_s,
                     "config": json.loads((config_dir / "config.json").read_text())})
        return status, "\n".join(lines)

    monkeypatch.setattr(live, "run_container", run_container)
    return seen


def test_run_without_run_end_or_with_a_failed_measurement_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure a container that stopped early, or whose runner reported a failed call, is an ERROR with the log,
    and that a complete run is RAN with the config's file given to the bench task."""
    started = live.RESULT_PREFIX + json.dumps({"event": "run_start", "snakepit_version": "0.13.0"})
    sample = live.RESULT_PREFIX + json.dumps(_sample(WORKER, 1, [100]))
    ended = live.RESULT_PREFIX + json.dumps({"event": "run_end"})
    failed = live.RESULT_PREFIX + json.dumps({"event": "bench_error", "target": WORKER, "pool_size": 1, "round": 1,
                                              "reason": "returned {:error, :timeout}"})
    settings = E2ESettings(calls=10, warmup=0, rounds=1, concurrency=2)

    seen = _fake_container(monkeypatch, [started, sample, "** (exit) killed"], status=137)
    result = e2e.run("0.13.0", settings)
    assert (result.status, result.reason) == (e2e.ERROR, "real Snakepit printed no run_end line (container exit "
                                                         "status 137)")
    assert "** (exit) killed" in result.evidence
    assert seen[0]["entrypoint"] == e2e.ENTRYPOINT and seen[0]["command"] == [f"{e2e.CONTAINER_CONFIG}/config.json"]
    assert seen[0]["config"] == e2e.runner_config(settings, e2e.targets())

    _fake_container(monkeypatch, [started, sample, failed, ended])
    result = e2e.run("0.13.0", settings)
    assert result.status == e2e.ERROR and "worker (pool of 1, round 1): returned {:error, :timeout}" in result.reason

    _fake_container(monkeypatch, [started, sample, ended])
    result = e2e.run("0.13.0", settings)
    assert (result.status, result.runtime["snakepit_version"]) == (e2e.RAN, "0.13.0")
    assert set(result.load) == {"before", "after"}


@pytest.mark.parametrize(("args", "message"), [
    (["--worker-cmd", "./w"], "measures the reference worker"),
    (["--profile", "snakepit-0.6"], "takes --snakepit-version"),
    (["--snakepit-version", "0.9.9"], "builds Snakepit 0.6.0"),
    (["--concurrency", "0"], "--concurrency must be a positive number"),
    (["--calls", "3", "--concurrency", "4"], "--calls (3) must be at least --concurrency (4)"),
    (["--snakepit-sources", "/nonexistent/dir"], "is not a directory"),
    (["--calls", "0"], "--calls must be a positive number"),
])
def test_bad_input_is_exit_3_with_a_clear_message(args: list[str], message: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Ensure every option that does not fit bench --e2e is a usage error (exit 3) naming it, before any work."""
    assert main(["bench", "--e2e", *args, "--report-dir", str(tmp_path)], io.StringIO()) == 3
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_no_sources_is_not_run_exit_2_with_the_reason_and_a_report(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure bench --e2e without Snakepit sources says NOT-RUN with the reason, writes that to its JSON, exits 2."""
    monkeypatch.setattr(sources, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(sources.SOURCES_ENV, raising=False)
    monkeypatch.delenv(image.HEX_ENV, raising=False)
    out = io.StringIO()
    assert main(["bench", "--e2e", "--snakepit-version", "0.6.0", "--report-dir", str(tmp_path)], out) == 2
    assert "NOT-RUN: no Snakepit 0.6.0 sources" in out.getvalue()
    report = json.loads((tmp_path / "bench-e2e-0.6.0.json").read_text())
    assert (report["status"], report["ratios"]) == ("NOT-RUN", {})
    assert all(not target["samples"] for target in report["targets"].values())


@pytest.mark.parametrize("version", [sources.NEWEST])
def test_real_snakepit_measures_every_target_and_pool_size(version: str, tmp_path: Path) -> None:
    """Ensure one real run through Snakepit measures the worker, the bare baseline and Snakepit's bridge at pool
    sizes 1 and 2, every figure positive and every ratio computed (tiny counts: plumbing, not performance)."""
    if os.environ.get("SNAKEPIT_E2E") != "1":
        pytest.skip("NOT-RUN: the live e2e tier runs under SNAKEPIT_E2E=1 (tox -e e2e)")
    result = e2e.run(version, E2ESettings(calls=40, warmup=10, rounds=1, concurrency=4))
    if result.status == e2e.NOT_RUN:
        pytest.skip(f"NOT-RUN: {result.reason}")
    assert result.status == e2e.RAN, f"{result.reason}\n{result.evidence}"
    doc = result.as_json()
    for name in (WORKER, BASELINE, BRIDGE):
        assert sorted(result.samples[name]) == [1, 2], name
        for size, rounds in result.samples[name].items():
            assert len(rounds) == 1 and all(value > 0 for value in rounds[0].values()), (name, size)
            assert all(share is not None and share > 0 for share in doc["ratios"][name][str(size)].values())
    e2e.write_json(doc, tmp_path)
