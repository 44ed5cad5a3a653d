"""The shared worker: every death the kit did not cause FAILs a check, and the worker is relaunched."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from contract_tests.contract.profiles import SNAKEPIT_0_6
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.errors import ContractViolation
from contract_tests.judging.plugin import SharedWorker
from contract_tests.judging.settings import Settings


def _killed(worker: WorkerProcess) -> None:
    os.kill(worker.pid, signal.SIGKILL)  # from outside the kit: to it, the worker died on its own
    assert worker.wait_exit(10) is not None


def test_deaths_during_and_between_checks_fail_and_relaunch() -> None:
    """Ensure a death during a check fails it at its end, one between checks fails the next, both relaunch."""
    made: list[WorkerProcess] = []

    def make() -> WorkerProcess:
        made.append(WorkerProcess(WorkerSpec(command=[sys.executable, "-m", "reference_worker"],
                                             profile=SNAKEPIT_0_6, elixir_address="127.0.0.1:1")))
        return made[-1]

    shared = SharedWorker(make)
    try:
        first = shared.get()
        _killed(first)
        with pytest.raises(ContractViolation, match=r"exited during this check; relaunched \(restart 1"):
            shared.check_alive(first, "RPC-001")
        second = shared.get()
        assert second is not first and second.is_alive()
        shared.check_alive(second, "RPC-002")
        _killed(second)
        with pytest.raises(ContractViolation, match=r"between checks, after RPC-002; relaunched \(restart 2"):
            shared.get()
        assert shared.get().is_alive() and shared.restarts == 2
    finally:
        shared.close()
        for worker in made:
            worker.stop()


@pytest.mark.parametrize(("scale", "judged"), [(0.1, 3.0), (1.0, 30.0), (3.0, 30.0)])
def test_timeout_scale_never_stretches_a_judged_deadline(scale: float, judged: float) -> None:
    """Ensure Snakepit's 30 s readiness deadline shrinks with a scale < 1 (the mutant tier) but never grows."""
    settings = Settings(worker_cmd=("w",), profiles=(SNAKEPIT_0_6,), timeout_scale=scale)
    assert settings.judged_s(30.0) == pytest.approx(judged)
