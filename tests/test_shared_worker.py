"""The shared worker: every death the kit did not cause FAILs a check, and the worker is relaunched."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from contract_tests.contract.clause import REGISTRY
from contract_tests.contract.profiles import SNAKEPIT_0_6
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.errors import ContractViolation
from contract_tests.judging import verdicts
from contract_tests.judging.plugin import SharedWorker
from contract_tests.judging.settings import Settings
from contract_tests.report.model import ClauseResult, Outcome


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


def test_deaths_outside_checks_are_noted_for_proc_012(tmp_path: Path) -> None:
    """Ensure where the run judges PROC-012, a death between checks or after the last is noted for it (with the
    worker's evidence), the next check gets a fresh worker without failing, and the report FAILs PROC-012 with it."""
    made: list[WorkerProcess] = []

    def make() -> WorkerProcess:
        made.append(WorkerProcess(WorkerSpec(command=[sys.executable, "-m", "reference_worker"],
                                             profile=SNAKEPIT_0_6, elixir_address="127.0.0.1:1")))
        return made[-1]

    deaths = verdicts.shared_deaths_file(tmp_path, "snakepit-0.6")
    shared = SharedWorker(make, deaths)
    try:
        first = shared.get()
        shared.check_alive(first, "TOOL-008")
        _killed(first)
        second = shared.get()  # no violation: this check is not to blame
        assert second is not first and second.is_alive()
        shared.check_alive(second, "TOOL-009")
        _killed(second)
    finally:
        shared.close()
        for worker in made:
            worker.stop()
    noted = [json.loads(line) for line in deaths.read_text(encoding="utf-8").splitlines()]
    assert [n["pid"] for n in noted] == [first.pid, second.pid]
    assert noted[0]["reason"].startswith("the shared worker exited between checks, after TOOL-008; relaunched "
                                         "(restart 1)\nExpected: still running\nActual:   exit status -9")
    assert noted[1]["reason"].startswith("the shared worker exited after its last check, TOOL-009")
    assert "worker argv" in noted[0]["evidence"]

    results = [ClauseResult(clause=REGISTRY[cid], profile="snakepit-0.6", outcome=Outcome.PASS, reason="",
                            duration_s=0.0, judged=True, repro="", tests=[]) for cid in ("PROC-012", "PROC-001")]
    config = SimpleNamespace(_tmp_path_factory=SimpleNamespace(getbasetemp=lambda: tmp_path))
    verdicts.fold_shared_deaths(config, results)  # type: ignore[arg-type]
    assert results[0].outcome is Outcome.FAIL and "after TOOL-008" in results[0].reason
    assert "after its last check, TOOL-009" in results[0].reason
    assert [e.title for e in results[0].evidence] == [f"shared worker pid {w.pid}" for w in (first, second)]
    assert results[1].outcome is Outcome.PASS


@pytest.mark.parametrize(("scale", "judged"), [(0.1, 3.0), (1.0, 30.0), (3.0, 30.0)])
def test_timeout_scale_never_stretches_a_judged_deadline(scale: float, judged: float) -> None:
    """Ensure Snakepit's 30 s readiness deadline shrinks with a scale < 1 (the mutant tier) but never grows."""
    settings = Settings(worker_cmd=("w",), profiles=(SNAKEPIT_0_6,), timeout_scale=scale)
    assert settings.judged_s(30.0) == pytest.approx(judged)
