"""`snakepit-contract explore`: the program generator, the shrinker, reading both sides, and the command's input.

The live run (real Snakepit in a container) is in tests/test_e2e.py's tier (SNAKEPIT_E2E=1, tox -e e2e).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contract_tests.cli import main
from contract_tests.contract.profiles import get_profile
from contract_tests.e2e import explore, generator
from contract_tests.e2e.compare import ABORTED, FAIL, PASS
from contract_tests.e2e.explore import NOT_REACHED, RAISED, Outcome, Result
from contract_tests.elixir.scenarios import SCENARIO_DIR

VALIDATOR = jsonschema.Draft202012Validator(json.loads((SCENARIO_DIR / "scenario.schema.json").read_text()))
RELEASES = ("0.6.0", "0.13.0")


@pytest.fixture(scope="module", params=RELEASES)
def generated(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, generator.generate(get_profile(request.param), 120, 11)


def test_programs_are_valid_scenarios(generated: tuple[str, list[dict[str, Any]]]) -> None:
    """Ensure every generated program validates against the scenario schema and names what it refers to."""
    _, programs = generated
    assert len(programs) == 120
    for program in programs:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(program)]
        assert not errors, (program["name"], errors)
        ids = [s["id"] for s in program["steps"] if "id" in s]
        assert len(ids) == len(set(ids))
        referenced = {s.get("of") for s in program["steps"]} | {
            s.get("expect", {}).get(k) for s in program["steps"] for k in ("same_worker_as", "different_worker_than")}
        assert referenced - {None} <= set(ids)
        assert {s["clause"] for s in program["steps"]} == set(program["clauses"])
        assert all(s["op"] != "leftovers" or program["steps"][i - 1]["op"] == "stop_pool"
                   for i, s in enumerate(program["steps"]))


def test_programs_use_only_what_the_release_has(generated: tuple[str, list[dict[str, Any]]]) -> None:
    """Ensure store programs appear only at a release that has them, strict affinity only where it exists."""
    version, programs = generated
    profile = get_profile(version)
    ops = {s["op"] for p in programs for s in p["steps"]}
    affinities = {p["pool"].get("affinity") for p in programs} | {s.get("affinity") for p in programs
                                                                    for s in p["steps"]}
    assert bool(ops & set(generator.STORE_PROGRAM_OPS)) == profile.session_programs
    assert bool(affinities & {"strict_queue", "strict_fail_fast"}) == profile.strict_affinity


def test_every_step_kind_is_covered(generated: tuple[str, list[dict[str, Any]]]) -> None:
    """Ensure 120 programs exercise every step kind the release allows, and many interleavings of them."""
    version, programs = generated
    cover = explore.coverage(programs)
    assert set(cover["step_kinds"]) == generator.step_kinds(get_profile(version))
    assert len(cover["interleavings"]) > 120


def test_same_seed_same_programs_other_seed_others() -> None:
    """Ensure a seed fixes the programs (the fixed-seed budget of the e2e tier is repeatable)."""
    profile = get_profile("0.13.0")
    first = generator.generate(profile, 30, 5)
    assert first == generator.generate(profile, 30, 5)
    assert [p["steps"] for p in first] != [p["steps"] for p in generator.generate(profile, 30, 6)]


def test_timed_steps_stay_clear_of_every_ttl() -> None:
    """Ensure clock jumps are whole seconds, either far below the sessions' TTL over a whole program or past every
    TTL (real time moves Snakepit's clock on during the run)."""
    programs = generator.generate(get_profile("0.6.0"), 150, 2)
    jumps = [[s["seconds"] for s in p["steps"] if s["op"] == "advance_clock"] for p in programs]
    assert {j for js in jumps for j in js} == {generator.SHORT_JUMP_S, generator.LONG_JUMP_S}
    assert max(js.count(generator.SHORT_JUMP_S) for js in jumps) * generator.SHORT_JUMP_S < generator.TTL_S / 2
    assert generator.LONG_JUMP_S > 3600 > generator.TTL_S
    assert all(p["pool"]["session_ttl_s"] == generator.TTL_S and "max_sessions" not in p["pool"] for p in programs)


# -- shrinking ------------------------------------------------------------------------------------------------
def _program(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return generator.finish("explore/test", {"size": 1}, steps, "A program for the shrinker's tests.")


def test_repair_drops_what_refers_to_removed_steps() -> None:
    """Ensure a shrunk program stays valid: awaits, crashes and routing expectations of removed calls go."""
    steps: list[dict[str, Any]] = [
        {"op": "execute", "id": "c2", "tool": "contract.whoami", "expect": {"ok": True, "same_worker_as": "c1"}},
        {"op": "await", "of": "a1"},
        {"op": "crash_worker", "of": "c1"},
        {"op": "leftovers", "expect": {"no_worker_process": True}},
        {"op": "stop_pool"},
        {"op": "leftovers", "expect": {"no_ready_file": True}},
    ]
    assert explore.repair(steps) == [
        {"op": "execute", "id": "c2", "tool": "contract.whoami", "expect": {"ok": True}},
        {"op": "stop_pool"},
        {"op": "leftovers", "expect": {"no_ready_file": True}},
    ]


def _outcome(program: dict[str, Any], differs: bool) -> Outcome:
    same = Result({c: PASS for c in program["clauses"]}, [PASS] * len(program["steps"]))
    other = Result({c: FAIL for c in program["clauses"]}, [FAIL] * len(program["steps"])) if differs else same
    return Outcome(program, same, other)


def test_shrinker_finds_the_minimal_program_in_batches() -> None:
    """Ensure delta debugging keeps exactly the steps a divergence needs, each round one batch for all programs."""
    noise = [{"op": "create_session", "session": f"n{i}"} for i in range(9)]
    culprit = [{"op": "execute", "id": "c1", "tool": "contract.whoami"}, {"op": "crash_worker", "of": "c1"}]
    steps = noise[:3] + culprit[:1] + noise[3:7] + culprit[1:] + noise[7:]
    batches: list[int] = []

    def run(batch: list[dict[str, Any]]) -> list[Outcome]:
        batches.append(len(batch))
        return [_outcome(p, any(s["op"] == "crash_worker" for s in p["steps"])) for p in batch]

    flaky = _program([{"op": "get_session", "session": "x"}, {"op": "sweep"}])
    states = explore.shrink([_outcome(_program(steps), True), _outcome(flaky, True)], run)
    shrunk, race = states
    assert [s["op"] for s in shrunk.smallest.program["steps"]] == ["execute", "crash_worker"]
    assert shrunk.reproduced and shrunk.smallest.differs
    assert not race.reproduced and race.smallest is race.original
    assert batches[0] == 2 and len(batches) <= 12


def test_shrinker_respects_its_round_budget() -> None:
    """Ensure a budget of zero rounds only re-runs the originals."""
    program = _program([{"op": "create_session", "session": f"n{i}"} for i in range(6)])
    states = explore.shrink([_outcome(program, True)], lambda b: [_outcome(p, True) for p in b], max_rounds=0)
    assert states[0].smallest.program["steps"] == program["steps"]


def test_found_scenario_is_a_valid_scenario_with_both_traces() -> None:
    """Ensure the written file is a scenario (schema, clauses) whose differing steps carry both sides' results."""
    program = _program([{"op": "create_session", "session": "s1", "expect": {"ok": True}},
                        {"op": "get_session", "session": "s1", "expect": {"exists": True}}])
    real = Result({"SESSION-001": PASS, "SESSION-002": FAIL}, [PASS, FAIL], {2: "expected exists = true"})
    emulated = Result({"SESSION-001": PASS, "SESSION-002": PASS}, [PASS, PASS])
    state = explore.Shrinking(Outcome(program, real, emulated), Outcome(program, real, emulated), 1)
    found = explore.found_scenario(state, "0.13.0", "found/0-13-0-p1-1")
    assert not list(VALIDATOR.iter_errors(found))
    assert "note" not in found["steps"][0]
    assert found["steps"][1]["note"] == "real Snakepit 0.13.0: FAIL - expected exists = true | emulator: PASS"
    assert "SESSION-002 snakepit=FAIL emulator=PASS" in found["description"]


# -- each side's results --------------------------------------------------------------------------------------
def test_snakepit_steps_from_its_result_lines() -> None:
    """Ensure real Snakepit's lines become a result per step: passed, failed, raised, and never reached."""
    program = _program([{"op": "create_session", "session": "a"}, {"op": "get_session", "session": "a"},
                        {"op": "update_metadata", "session": "a", "metadata": {"k": "v"}},
                        {"op": "sweep"}])
    name = program["name"]
    events = [
        {"event": "step", "scenario": name, "index": 1, "passed": True},
        {"event": "step", "scenario": name, "index": 2, "passed": False, "clause": "SESSION-002",
         "expected": "exists = true", "actual": "exists = false"},
        {"event": "step", "scenario": name, "index": 3, "passed": False, "error": "boom"},
        {"event": "scenario_end", "scenario": name, "status": "aborted", "reason": "step 3 raised"},
    ]
    result = explore.snakepit_result(program, events)
    assert result.steps == [PASS, FAIL, RAISED, NOT_REACHED]
    assert set(result.clauses.values()) == {ABORTED}
    assert result.notes[2] == "expected exists = true; actual exists = false"


def test_emulator_steps_pass_fail_and_abort() -> None:
    """Ensure the emulator's side is read step by step, and a step that raises ends the program as on real
    Snakepit (an update of a session that does not exist)."""
    profile = get_profile("0.13.0")
    program = _program([{"op": "create_session", "session": "a", "expect": {"ok": True}},
                        {"op": "get_session", "session": "a", "expect": {"exists": False}},
                        {"op": "update_metadata", "session": "nobody", "metadata": {"k": "v"}},
                        {"op": "sweep"}])
    result = explore.emulator_result(program, profile)
    assert result.steps == [PASS, FAIL, RAISED, NOT_REACHED]
    assert "SessionNotFound" in result.notes[3]
    assert set(result.clauses.values()) == {ABORTED}


# -- the command ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--programs", "0"], ["--programs", "many"], ["--seed", "-1"], ["--snakepit-version", "0.9.9"],
    ["--shrink-rounds", "x"], ["--timeout-scale", "0"], ["--snakepit-sources", "/nonexistent/sources"],
    ["--report-dir", __file__], ["--bogus"],
])
def test_bad_input_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Ensure bad options are refused with exit status 3 and a message saying what is wrong, before any work."""
    assert main(["explore", *argv], io.StringIO()) == 3
    err = capsys.readouterr().err
    assert argv[0] in err or "unrecognized" in err


def test_no_sources_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure explore without Snakepit's sources says NOT-RUN and exits 2, never 0."""
    from contract_tests.e2e import image, sources

    monkeypatch.setattr(sources, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(sources.SOURCES_ENV, raising=False)
    monkeypatch.delenv(image.HEX_ENV, raising=False)
    out = io.StringIO()
    assert main(["explore", "--programs", "2", "--report-dir", str(tmp_path / "r"),
                 "--found-dir", str(tmp_path / "f")], out) == 2
    assert "NOT-RUN: no Snakepit 0.13.0 sources" in out.getvalue()
    assert not (tmp_path / "f").exists()


def test_report_says_what_was_explored_and_what_differs(tmp_path: Path) -> None:
    """Ensure the summary and the JSON report give programs, steps, kinds, interleavings, each side's step results
    and every divergence with both sides per step."""
    agreeing = _program([{"op": "create_session", "session": "a"}, {"op": "sweep"}])
    differing = _program([{"op": "get_session", "session": "a", "expect": {"exists": True}}])
    differs = Outcome(differing, Result({"SESSION-002": FAIL}, [FAIL], {1: "expected exists = true"}),
                      Result({"SESSION-002": PASS}, [PASS]))
    state = explore.Shrinking(differs, differs, 1, rounds=2)
    result = explore.Exploration("0.6.0", 4, [agreeing, differing], [_outcome(agreeing, False), differs], [state],
                                 [tmp_path / "found.json"], 12.0)
    out = io.StringIO()
    explore.summary(result, out)
    text = out.getvalue()
    assert "2 programs, 3 steps, 3 step kinds, 1 interleavings" in text
    assert "snakepit steps: FAIL 1, PASS 2" in text and "emulator steps: PASS 3" in text
    assert "1 agree, 1 differ (1 reproduced and shrunk, 0 not reproduced)" in text
    assert "snakepit=FAIL emulator=PASS  <-- differs" in text and "expected exists = true" in text
    report = json.loads(explore.write_json(result, tmp_path).read_text())
    assert report["interleavings"] == {"create_session -> sweep": 1}
    assert report["divergences"][0]["shrunk"]["snakepit"]["steps"] == [FAIL]
