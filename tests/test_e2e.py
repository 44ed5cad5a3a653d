"""The live E2E tier: finding sources, NOT-RUN reasons, reading real Snakepit's result lines, and the tier itself.

The live tests (test_real_snakepit_agrees_with_emulator) build Snakepit in a container and run every scenario
through it; they run where SNAKEPIT_E2E=1 (tox -e e2e) and say NOT-RUN, with the reason, where the machine
lacks sources, engine or base image.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import pytest

from contract_tests.e2e import image, live, sources, tier
from contract_tests.e2e.compare import (
    ABORTED,
    AGREE,
    DIVERGE,
    FAIL,
    KNOWN,
    MISSING,
    NOT_RUN,
    PASS,
    UNJUDGED,
    Side,
    compare,
    snakepit_side,
)
from contract_tests.elixir.scenarios import expectation, load_scenario


def _sources_dir(root: Path, version: str = "0.6.0", hex_source: bool = True) -> Path:
    (root / "snakepit").mkdir(parents=True)
    (root / "snakepit" / "mix.exs").write_text(f'defmodule X do\n  @version "{version}"\nend\n')
    (root / "deps" / "jason").mkdir(parents=True)
    if hex_source:
        (root / "deps" / "hex").mkdir()
        (root / "deps" / "hex" / "mix.exs").write_text("")
    return root


def test_sources_found_flat_or_per_version(tmp_path: Path) -> None:
    """Ensure a directory for one version and a directory of versions are both accepted."""
    flat = _sources_dir(tmp_path / "flat")
    assert sources.locate("0.6.0", flat, env={}, cache_root=tmp_path / "none").root == flat
    nested = _sources_dir(tmp_path / "many" / "0.13.0", "0.13.0")
    found = sources.locate("0.13.0", None, env={sources.SOURCES_ENV: str(tmp_path / "many")},
                           cache_root=tmp_path / "none")
    assert (found.root, found.found_via, found.dependencies()) == (nested, sources.SOURCES_ENV, ["jason"])


def test_sources_given_first_then_env_then_cache(tmp_path: Path) -> None:
    """Ensure --snakepit-sources beats the environment variable, which beats the cache path."""
    cache = _sources_dir(tmp_path / "cache" / "0.6.0")
    env_dir = _sources_dir(tmp_path / "env")
    assert sources.locate("0.6.0", None, env={}, cache_root=tmp_path / "cache").root == cache
    assert sources.locate("0.6.0", None, env={sources.SOURCES_ENV: str(env_dir)},
                          cache_root=tmp_path / "cache").root == env_dir


@pytest.mark.parametrize(("version", "hex_source", "why"), [
    ("0.13.0", True, "version 0.13.0, not 0.6.0"),
    ("0.6.0", False, "no deps/hex"),
])
def test_unusable_sources_say_why(tmp_path: Path, version: str, hex_source: bool, why: str) -> None:
    """Ensure wrong-version or incomplete sources are refused with the reason, not half-built."""
    given = _sources_dir(tmp_path / "src", version, hex_source)
    with pytest.raises(sources.SourcesMissing, match=why):
        sources.locate("0.6.0", given, env={}, cache_root=tmp_path / "none")


def test_no_sources_no_hex_is_not_run_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure the tier without sources or Hex reports NOT-RUN, the places it looked, and no scenario verdicts."""
    monkeypatch.setattr(sources, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(sources.SOURCES_ENV, raising=False)
    monkeypatch.delenv(image.HEX_ENV, raising=False)
    result = tier.run_tier("0.6.0")
    assert (result.status, result.comparisons) == (NOT_RUN, [])
    assert "no Snakepit 0.6.0 sources" in result.reason and "Hex is not enabled" in result.reason
    out = io.StringIO()
    tier.summary(result, out)
    assert out.getvalue().startswith("e2e: Snakepit 0.6.0, worker reference: NOT-RUN: no Snakepit 0.6.0 sources")
    assert "agree" not in out.getvalue()


def test_no_engine_is_not_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ensure an unreachable engine is a NOT-RUN reason naming where it was looked for."""
    pytest.importorskip("docker", reason="the containers extra is not installed here (tox -e e2e has it)")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(image.NotAvailable, match="no container engine answers"):
        image.engine()


def test_result_lines_are_read_among_other_output() -> None:
    """Ensure only prefixed lines count: Snakepit and its workers print to the same stdout."""
    log = ('noise {"event": "run_end"}\nSNAKEPIT-E2E {"event": "run_start"}\nTERMINATE: x\n'
           'SNAKEPIT-E2E {"event": "run_end"}\n')
    assert [e["event"] for e in live.parse_events(log)] == ["run_start", "run_end"]


def _events(name: str, status: str | None, *steps: dict[str, object]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [{"event": "scenario_start", "scenario": name}]
    events += [{"event": "step", "scenario": name, **s} for s in steps]
    if status:
        events.append({"event": "scenario_end", "scenario": name, "status": status, "reason": "set-up step 1 failed"})
    return events


def test_clause_outcomes_from_snakepit_lines() -> None:
    """Ensure a failed tagged step fails its clause, an abort or a missing end leaves no clause passing."""
    scenario = load_scenario("session/get-extends-ttl")  # SESSION-002 and SESSION-005
    failed = {"index": 6, "op": "sweep", "clause": "SESSION-005", "passed": False, "expected": "expired = 1",
              "actual": "expired = 0"}
    side = snakepit_side(scenario, _events(scenario["name"], "completed", failed))
    assert side.clauses == {"SESSION-002": PASS, "SESSION-005": FAIL}
    assert side.trace == ["step 6 sweep [SESSION-005]: expected expired = 1; actual expired = 0"]
    assert set(snakepit_side(scenario, _events(scenario["name"], "aborted")).clauses.values()) == {ABORTED}
    assert set(snakepit_side(scenario, _events(scenario["name"], None)).clauses.values()) == {MISSING}


def test_comparison_agrees_only_on_identical_outcomes() -> None:
    """Ensure agreement means the same verdict for every clause, so a divergence cannot hide."""
    scenario = load_scenario("session/quota")
    same = compare(scenario, Side({"SESSION-007": PASS}), lambda: Side({"SESSION-007": PASS}))
    other = compare(scenario, Side({"SESSION-007": FAIL}, ["snakepit trace"]), lambda: Side({"SESSION-007": PASS}))
    aborted = compare(scenario, Side({"SESSION-007": ABORTED}), lambda: Side({"SESSION-007": ABORTED}))
    assert (same.status, other.status, aborted.status) == (AGREE, DIVERGE, UNJUDGED)
    assert other.as_json()["snakepit"]["trace"] == ["snakepit trace"]


def test_only_a_baselined_worker_failure_is_known() -> None:
    """Ensure a clause real Snakepit fails and the emulator passes is KNOWN only when the worker's baseline lists it;
    anything else that differs (another clause, the other direction, an abort) stays a divergence."""
    scenario = load_scenario("program/cleanup-releases")  # PROGRAM-007 and CLEANUP-007
    emulator = Side({"PROGRAM-007": PASS, "CLEANUP-007": PASS})
    listed = {"PROGRAM-007": "the bridge proxies CleanupSession"}

    def verdict(real: dict[str, str], known: dict[str, str]) -> str:
        return compare(scenario, Side(real), lambda: emulator, known).status

    assert verdict({"PROGRAM-007": FAIL, "CLEANUP-007": PASS}, listed) == KNOWN
    assert verdict({"PROGRAM-007": FAIL, "CLEANUP-007": PASS}, {}) == DIVERGE
    assert verdict({"PROGRAM-007": FAIL, "CLEANUP-007": FAIL}, listed) == DIVERGE
    assert verdict({"PROGRAM-007": ABORTED, "CLEANUP-007": ABORTED}, listed) == DIVERGE
    reversed_sides = compare(scenario, Side({"PROGRAM-007": PASS, "CLEANUP-007": PASS}),
                             lambda: Side({"PROGRAM-007": FAIL, "CLEANUP-007": PASS}), listed)
    assert reversed_sides.status == DIVERGE


def test_bridge_known_failures_come_from_its_baseline_at_that_release(tmp_path: Path) -> None:
    """Ensure the bridge's known failures are its baseline for exactly the release run, and none without one."""
    from contract_tests.contract.profiles import get_profile

    bridge = live.snakepit_bridge()
    known = tier.known_failures(bridge, "0.13.0", get_profile("0.13.0"))
    assert "PROGRAM-007" in known and "cleanup-session-proxied" in known["PROGRAM-007"]
    no_baseline_here = dataclasses.replace(bridge, baselines=tmp_path)
    assert tier.known_failures(no_baseline_here, "0.13.0", get_profile("0.13.0")) == {}
    assert tier.known_failures(live.reference(), "0.13.0", get_profile("0.13.0")) == {}


def test_worker_without_contract_tools_leaves_those_scenarios_not_run(tmp_path: Path) -> None:
    """Ensure Snakepit's own bridge without the contract adapter is not judged on scenarios that need its tools."""
    chosen, skipped = tier._selection("0.6.0", live.snakepit_bridge(tmp_path))
    assert chosen and skipped
    assert all(not load_scenario(n).get("requires_tools") for n in chosen)
    assert all(c.status == NOT_RUN and "contract tools" in c.reason for c in skipped)


def test_bridge_runs_the_contract_adapter_when_there_is_one(tmp_path: Path) -> None:
    """Ensure Snakepit's bridge is started with the kit's contract adapter, mounted on its PYTHONPATH, when the
    adapter is there, and with its showcase adapter (no contract tools) when it is not."""
    (tmp_path / "contract_adapter.py").write_text("")
    bridge = live.snakepit_bridge(tmp_path)
    assert bridge.contract_tools and bridge.argv[-2:] == ("--adapter", live.BRIDGE_ADAPTER)
    assert bridge.mounts == ((tmp_path, "/opt/bridge-adapter"),) and bridge.env["PYTHONPATH"] == "/opt/bridge-adapter"
    showcase = live.snakepit_bridge(tmp_path / "absent")
    assert not showcase.contract_tools and showcase.argv[-1].endswith("ShowcaseAdapter")


def test_scenario_expectations_are_resolved_for_the_release() -> None:
    """Ensure the Elixir runner gets each step's expectation for the release under test, as the emulator uses it,
    and nothing it would have to resolve itself."""
    from contract_tests.contract.profiles import get_profile

    scenario = load_scenario("cleanup/killed-mid-call")
    by_release = [i for i, step in enumerate(scenario["steps"]) if step.get("expect_when")]
    assert by_release, "the scenario no longer has a release-specific expectation; pick another"
    for release in ("0.9.0", "0.9.1"):
        resolved = tier.for_release(scenario, get_profile(release))
        assert not any("expect_when" in step for step in resolved["steps"])
        for i in by_release:
            assert resolved["steps"][i]["expect"] == expectation(scenario["steps"][i], get_profile(release))
    assert tier.for_release(scenario, get_profile("0.9.0")) != tier.for_release(scenario, get_profile("0.9.1"))


def test_default_tier_runs_the_oldest_and_newest_release() -> None:
    """Ensure tox -e e2e (in the default env list) runs the two ends of the range the kit judges, 0.6.0 and 0.13.0;
    e2e-releases runs every release the tier builds."""
    assert sources.VERSIONS[0] == "0.6.0" and sources.NEWEST == sources.VERSIONS[-1] == "0.13.0"
    expected = sources.VERSIONS if os.environ.get("SNAKEPIT_E2E_RELEASES") == "all" else ("0.6.0", "0.13.0")
    assert expected == RELEASES
    assert set(sources.VERSIONS) == set(image.BRIDGE_REQUIREMENTS)


def test_image_compiles_snakepit_once_and_runs_it_unchecked() -> None:
    """Ensure no dependency is compiled at container start (Mix recompiles path dependencies it checks), Snakepit's
    tree is compiled before our runner's code is copied in, and the bridge's venv comes after both."""
    lines = [line.strip() for line in image.DOCKERFILE.read_text().splitlines()]

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if prefix in line)

    assert first("mix deps.compile") < first("COPY host/lib") < first("RUN mix compile") < first("COPY bridge-wheels")
    entry = json.loads(lines[first("ENTRYPOINT")].removeprefix("ENTRYPOINT"))
    assert entry[:2] == ["mix", "do"] and "--no-deps-check" in entry[entry.index("loadpaths"):entry.index("+")]
    assert entry[-1] == "contract.e2e"


REPORT_DIR = Path(os.environ.get("SNAKEPIT_E2E_REPORT_DIR", "conformance-report/e2e"))
# tox -e e2e runs the oldest and the newest release (it is in the default env list, which must stay fast: the
# releases between cost an image build each); tox -e e2e-releases sets SNAKEPIT_E2E_RELEASES=all and runs them all.
RELEASES = (sources.VERSIONS if os.environ.get("SNAKEPIT_E2E_RELEASES") == "all"
            else (sources.VERSIONS[0], sources.NEWEST))


@pytest.mark.parametrize("worker", sorted(live.WORKERS))
@pytest.mark.parametrize("version", RELEASES)
def test_real_snakepit_agrees_with_emulator(version: str, worker: str, request: pytest.FixtureRequest) -> None:
    """Ensure every scenario gives real Snakepit and the emulator the same clause outcomes."""
    if os.environ.get("SNAKEPIT_E2E") != "1":
        pytest.skip("NOT-RUN: the live e2e tier runs under SNAKEPIT_E2E=1 (tox -e e2e)")
    result = tier.run_tier(version, worker)
    out = io.StringIO()
    tier.summary(result, out)
    tier.write_json(result, REPORT_DIR)
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line("\n" + out.getvalue())
    if result.status == NOT_RUN:
        pytest.skip(f"NOT-RUN: {result.reason}")
    assert result.status == tier.RAN, out.getvalue()
    assert result.comparisons, "no scenario ran"
    assert not [c.scenario for c in result.comparisons if c.status in (DIVERGE, UNJUDGED)], out.getvalue()


def test_cli_e2e_not_run_is_exit_2_with_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure `run --e2e` without sources says NOT-RUN, writes the report and exits 2, never 0."""
    from contract_tests.cli import main

    monkeypatch.setattr(sources, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(sources.SOURCES_ENV, raising=False)
    monkeypatch.delenv(image.HEX_ENV, raising=False)
    out = io.StringIO()
    assert main(["run", "--e2e", "--snakepit-version", "0.13.0", "--report-dir", str(tmp_path)], out) == 2
    assert "NOT-RUN: no Snakepit 0.13.0 sources" in out.getvalue()
    report = json.loads((tmp_path / "e2e-0.13.0-reference.json").read_text())
    assert (report["status"], report["scenarios"]) == ("NOT-RUN", [])
    assert main(["run", "--e2e", "--snakepit-sources", str(tmp_path / "absent")], out) == 3


def test_host_project_ships_in_the_wheel() -> None:
    """Ensure every file of the Mix host project and the image recipe is listed in pyproject's package data."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["contract_tests.e2e"]
    listed = {path for pattern in patterns for path in image.HERE.glob(pattern)}
    needed = {image.DOCKERFILE} | {p for p in image.HOST_PROJECT.rglob("*") if p.is_file()}
    assert needed <= listed, sorted(str(p) for p in needed - listed)
    # The contract adapter the tier runs Snakepit's bridge with ships as data, as the scenarios do.
    data = pyproject["tool"]["setuptools"]["package-data"]["contract_tests.data"]
    adapter = live.BRIDGE_ADAPTER_DIR / "contract_adapter.py"
    assert adapter.is_file() and any(adapter.match(f"*/{pattern}") for pattern in data)


EXPLORE_PROGRAMS, EXPLORE_SEED = 20, 2026


def test_explore_fixed_seed_budget_agrees(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Ensure a small fixed-seed budget of generated programs (docs/explore.md) gives real Snakepit and the emulator
    the same result for every clause and every step; the long run is `snakepit-contract explore`."""
    if os.environ.get("SNAKEPIT_E2E") != "1":
        pytest.skip("NOT-RUN: the live e2e tier runs under SNAKEPIT_E2E=1 (tox -e e2e)")
    from contract_tests.cli import main

    out = io.StringIO()
    status = main(["explore", "--snakepit-version", sources.NEWEST, "--programs", str(EXPLORE_PROGRAMS),
                   "--seed", str(EXPLORE_SEED), "--report-dir", str(REPORT_DIR),
                   "--found-dir", str(REPORT_DIR / "found")], out)
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line("\n" + out.getvalue())
    if status == 2 and "NOT-RUN" in out.getvalue():
        pytest.skip(out.getvalue().splitlines()[0])
    assert status == 0, out.getvalue()
    report = json.loads((REPORT_DIR / f"explore-{sources.NEWEST}-seed{EXPLORE_SEED}.json").read_text())
    assert report["programs"] == EXPLORE_PROGRAMS and report["agree"] == EXPLORE_PROGRAMS
