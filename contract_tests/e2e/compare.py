"""Clause outcomes of one scenario on each side, real Snakepit and the emulator, and whether they agree.

Both runners judge a scenario the same way: a failed step tagged with a clause fails that clause and the
run goes on; a failed untagged (set-up) step aborts the scenario, which leaves every clause ABORTED.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract_tests.contract.profiles import Profile
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.elixir.scenarios import ScenarioRunner
from contract_tests.errors import ContractViolation
from contract_tests.judging.settings import DEFAULT_WORKER_CMD

PASS, FAIL, ABORTED, MISSING = "PASS", "FAIL", "ABORTED", "MISSING"
AGREE, DIVERGE, NOT_RUN, UNJUDGED = "AGREE", "DIVERGE", "NOT-RUN", "UNJUDGED"
# Real Snakepit fails a clause the emulator passes, and the worker's baseline documents that failure at this
# release: a defect of the worker (the emulator runs the reference worker), not of Snakepit or the emulator.
KNOWN = "KNOWN"


@dataclass
class Side:
    """One side's verdict per clause of a scenario, and the evidence behind any failure."""

    clauses: dict[str, str]
    trace: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    scenario: str
    status: str
    reason: str = ""
    snakepit: Side | None = None
    emulator: Side | None = None

    def as_json(self) -> dict[str, Any]:
        sides = {name: {"clauses": side.clauses, "trace": side.trace}
                 for name, side in (("snakepit", self.snakepit), ("emulator", self.emulator)) if side is not None}
        return {"scenario": self.scenario, "status": self.status, "reason": self.reason, **sides}


def snakepit_side(scenario: Mapping[str, Any], events: list[dict[str, Any]]) -> Side:
    """The clause outcomes real Snakepit's run printed for this scenario."""
    name, clauses = scenario["name"], list(scenario["clauses"])
    mine = [e for e in events if e.get("scenario") == name]
    end = next((e for e in mine if e.get("event") == "scenario_end"), None)
    failed = [e for e in mine if e.get("event") == "step" and e.get("passed") is False]
    trace = [_step_line(e) for e in failed]
    if end is None:
        return Side({c: MISSING for c in clauses}, [*trace, "no scenario_end line: the run stopped inside it"])
    if end.get("status") != "completed":
        return Side({c: ABORTED for c in clauses}, [*trace, f"aborted: {end.get('reason', '?')}"])
    failing = {e.get("clause") for e in failed}
    return Side({c: FAIL if c in failing else PASS for c in clauses}, trace)


def _step_line(event: Mapping[str, Any]) -> str:
    where = f"step {event.get('index')} {event.get('op')}" + (f" [{event['clause']}]" if event.get("clause") else "")
    if "error" in event:
        return f"{where}: raised {str(event['error'])[:1500]}"
    seen = f" (observed: {event['observed']})" if event.get("observed") else ""
    return f"{where}: expected {event.get('expected')}; actual {event.get('actual')}{seen}"


def emulator_side(scenario: Mapping[str, Any], profile: Profile, timeout_scale: float = 1.0) -> Side:
    """The same scenario through the pool emulator with the reference worker, judged per clause."""
    clauses = list(scenario["clauses"])
    runner: ScenarioRunner | None = None

    def make_spec() -> WorkerSpec:
        assert runner is not None
        return WorkerSpec(command=tuple(DEFAULT_WORKER_CMD), profile=profile,
                          elixir_address=runner.host.elixir_address_for_worker, timeout_scale=timeout_scale)

    runner = ScenarioRunner(scenario, profile, make_spec, timeout_scale)
    try:
        violations = runner.run()
    except ContractViolation as violation:
        return Side({c: ABORTED for c in clauses}, [f"aborted: {violation}"])
    except Exception as err:  # the emulator itself failed: as visible as an aborted scenario
        return Side({c: ABORTED for c in clauses}, [f"emulator error: {type(err).__name__}: {err}"])
    trace = [str(v) for found in violations.values() for v in found]
    return Side({c: FAIL if violations.get(c) else PASS for c in clauses}, trace)


def compare(scenario: Mapping[str, Any], snakepit: Side, emulator: Callable[[], Side],
            known_failures: Mapping[str, str] | None = None) -> Comparison:
    """AGREE only when both sides judged every clause alike; two aborted runs agree on nothing (UNJUDGED).
    KNOWN when the only differences are clauses real Snakepit FAILs and the emulator PASSes that the worker's
    baseline lists (`known_failures`: clause -> reason); any other difference is a DIVERGE."""
    other = emulator()
    known_failures = known_failures or {}
    reason = ""
    if snakepit.clauses != other.clauses:
        differing = sorted(c for c in snakepit.clauses if snakepit.clauses[c] != other.clauses.get(c))
        if all(snakepit.clauses[c] == FAIL and other.clauses.get(c) == PASS and c in known_failures
               for c in differing):
            status = KNOWN
            reason = "; ".join(f"{c}: the worker's known failure ({known_failures[c]})" for c in differing)
        else:
            status = DIVERGE
    elif set(snakepit.clauses.values()) - {PASS, FAIL}:
        status = UNJUDGED
    else:
        status = AGREE
    return Comparison(scenario["name"], status, reason, snakepit=snakepit, emulator=other)
