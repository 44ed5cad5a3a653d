"""Fixtures shared by the pool-level clause modules: scenarios and pools behind the emulated Elixir side."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contract_tests.contract.profiles import Profile
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.pool import PoolEmulator
from contract_tests.elixir.scenarios import ScenarioRunner, describe_steps, load_scenario, scenario_applies
from contract_tests.errors import ContractViolation
from contract_tests.judging.plugin import Settings, skip_unless_listed
from contract_tests.judging.verdicts import EXTRA_EVIDENCE, LAUNCHED

RunScenario = Callable[[str], None]
MakePool = Callable[..., PoolEmulator]


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
        runner: ScenarioRunner | None = None

        def make_spec() -> WorkerSpec:
            assert runner is not None
            return _spec_maker(contract_settings, profile, runner.host)()

        runner = ScenarioRunner(scenario, profile, make_spec, contract_settings.timeout_scale)
        try:
            found = runner.run().get(clause_id, [])
        finally:
            # The pool's workers and the scenario's steps, failed ones marked: the evidence if the check fails.
            request.node.stash.setdefault(LAUNCHED, []).append(runner.launched)
            request.node.stash.setdefault(EXTRA_EVIDENCE, []).append(
                (f"scenario {name}", describe_steps(scenario, runner.failed_steps)))
        if found:
            raise ContractViolation(f"{len(found)} step(s) of scenario {name} failed for {clause_id}",
                                    "every step passes", "\n\n".join(str(v) for v in found))

    return run


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
