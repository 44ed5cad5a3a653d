"""Fixtures shared by the pool-level clause modules: scenarios and pools behind the emulated Elixir side."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from contract_tests.contract.profiles import Profile
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.pool import PoolEmulator
from contract_tests.elixir.scenarios import ScenarioRunner, describe_steps, load_scenario, scenario_applies
from contract_tests.errors import ContractViolation
from contract_tests.judging.plugin import Settings, skip_unless_listed
from contract_tests.judging.verdicts import EXTRA_EVIDENCE, LAUNCHED

RunScenario = Callable[[str], None]
MakePool = Callable[..., PoolEmulator]


@dataclass
class _ScenarioRun:
    """What one run of a scenario found, for every clause it checks (or the error that ended it)."""

    found: dict[str, list[ContractViolation]] = field(default_factory=dict)
    error: Exception | None = None
    launched: list[WorkerProcess] = field(default_factory=list)
    steps: str = ""


# One run of a scenario serves every clause it checks, as one run of Snakepit would show them all: the checks of
# clauses sharing a scenario run on one process (plugin.py groups them), the first runs it, the next judge their
# own clause's steps of that run. A run ended by a timeout or an interrupt is not kept.
_RUNS = pytest.StashKey[dict[tuple[str, str], _ScenarioRun]]()


def _spec_maker(settings: Settings, profile: Profile, host: HostEmulator) -> Callable[[], WorkerSpec]:
    def make() -> WorkerSpec:
        # Pool workers are launched exactly as Snakepit does: one that cannot start shows the worker cannot start.
        return WorkerSpec(command=settings.worker_cmd, profile=profile, elixir_address=host.elixir_address_for_worker,
                          timeout_scale=settings.timeout_scale, image=settings.worker_image, standard=True)

    return make


@pytest.fixture
def run_scenario(
    contract_settings: Settings, profile: Profile, catalogue: frozenset[str] | str, request: pytest.FixtureRequest
) -> RunScenario:
    """Run fixtures/scenarios/<name>.json against a fresh pool; judge the steps of the test's own clause."""
    marker = request.node.get_closest_marker("clause")
    assert marker is not None, "run_scenario is for clause tests"
    clause_id: str = marker.args[0]

    def run(name: str) -> None:
        scenario = load_scenario(name)
        assert clause_id in scenario["clauses"], f"scenario {name} does not check {clause_id}"
        if not scenario_applies(scenario, profile):
            pytest.skip(f"profile: scenario {name} applies only where {scenario['applies']} (releases.toml)")
        needed = scenario.get("requires_tools", [])
        if missing := [t for t in needed if t not in skip_unless_listed(catalogue)]:
            pytest.skip(f"capability: worker does not implement {', '.join(missing)}")
        runs = request.config.stash.setdefault(_RUNS, {})
        done = runs.get((name, profile.name))
        if done is None:
            done = runs[name, profile.name] = _run_once(scenario, contract_settings, profile)
        # The pool's workers and the scenario's steps, failed ones marked: the evidence if the check fails.
        request.node.stash.setdefault(LAUNCHED, []).append(done.launched)
        request.node.stash.setdefault(EXTRA_EVIDENCE, []).append((f"scenario {name}", done.steps))
        if done.error is not None:
            raise done.error
        if found := done.found.get(clause_id, []):
            raise ContractViolation(f"{len(found)} step(s) of scenario {name} failed for {clause_id}",
                                    "every step passes", "\n\n".join(str(v) for v in found))

    return run


def _run_once(scenario: dict[str, Any], settings: Settings, profile: Profile) -> _ScenarioRun:
    runner: ScenarioRunner | None = None

    def make_spec() -> WorkerSpec:
        assert runner is not None
        return _spec_maker(settings, profile, runner.host)()

    runner = ScenarioRunner(scenario, profile, make_spec, settings.timeout_scale)
    done = _ScenarioRun()
    try:
        done.found = runner.run()
    except Exception as error:  # a set-up step failed, or the worker could not start: every clause's check says so
        done.error = error
    finally:
        done.launched = runner.launched
        done.steps = describe_steps(scenario, runner.failed_steps)
    return done


@pytest.fixture
def make_pool(contract_settings: Settings, profile: Profile, request: pytest.FixtureRequest) -> Iterator[MakePool]:
    """Pools of the worker under test, each with its own emulated Elixir side; all stopped at teardown."""
    made: list[tuple[HostEmulator, PoolEmulator]] = []

    def make(size: int = 2, **kwargs: Any) -> PoolEmulator:
        host = HostEmulator(profile)
        host.start()
        pool = PoolEmulator(_spec_maker(contract_settings, profile, host), profile, host, size=size, **kwargs)
        made.append((host, pool))
        request.node.stash.setdefault(LAUNCHED, []).append(pool.launched)
        pool.start(timeout=60 * contract_settings.timeout_scale)
        return pool

    yield make
    for host, pool in made:
        pool.stop()
        host.stop()
