"""Stop: every worker gets SIGTERM, the grace, then SIGKILL; then RuntimeCleanup sweeps what is left.

Snakepit v0.13.0 lib/snakepit/pool/worker_supervisor.ex, application_cleanup.ex and runtime_cleanup.ex
(docs/pool.md, snakepit: shutdown-grace).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterable

from contract_tests.driver import processes
from contract_tests.driver.launcher import StopResult, WorkerProcess
from contract_tests.elixir.pool.state import (
    PoolState,
    _port_status,
)

# Slack for joining threads whose own deadlines (grace, readiness) bound them already.
_JOIN_SLACK_S = 10.0


class Shutdown(PoolState):
    """Application stop and the clean-up after it; nothing of the pool outlives it."""

    def _shutdown(self) -> dict[str, StopResult]:
        self._halt.set()
        if self._watcher is not None and self._watcher.is_alive():
            self._watcher.join(timeout=5)
        with self._cond:
            ready = [(s.worker_id, s.process) for s in self._slots if s.process is not None and s.state == "ready"]
            starting = [(s.worker_id, s.process) for s in self._slots if s.process is not None and s.state != "ready"]
            threads = list(self._threads)
        grace = self.timings.stop_timeout_s
        self._event(f"stop: SIGTERM {len(ready)} workers (their groups where they lead one), "
                    f"{grace:g} s grace, then SIGKILL")
        results: dict[str, StopResult] = {}

        def stop_one(worker_id: str, process: WorkerProcess) -> None:
            results[worker_id] = process.stop(grace_s=grace)

        stoppers = [
            threading.Thread(target=stop_one, args=item, name=f"pool-stop-{item[0]}", daemon=True) for item in ready
        ]
        for stopper in stoppers:
            stopper.start()
        for _, process in starting:
            if process.proc is not None:  # start threads see _stopping and finish the job themselves
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + _JOIN_SLACK_S
        for thread in [*stoppers, *threads]:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker_id, process in starting:
            results[worker_id] = process.stop(graceful=False)
        for process in [p for _, p in ready] + self._retired:
            process.stop(graceful=False)  # no-op for those already stopped
        if self.timings.cleanup_timeout_s is not None:
            self._runtime_cleanup([p for _, p in ready + starting] + self._retired)
        self._event(f"stopped: {', '.join(f'{w} exit {_port_status(r.exit_status)}' for w, r in results.items())}")
        return results

    def _runtime_cleanup(self, processes: Iterable[WorkerProcess]) -> None:
        """RuntimeCleanup: SIGTERM what is left of this run, poll every 50 ms up to 3 s, then SIGKILL."""
        targets = [p for p in processes if p.proc is not None]
        alive = [p for p in targets if _alive(p)]
        if not alive:
            self._event("RuntimeCleanup: no worker process left")
            return
        self._event(f"RuntimeCleanup: SIGTERM {len(alive)} leftover targets")
        for process in alive:
            process.send_signal(signal.SIGTERM)  # the group when the worker leads one
        assert self.timings.cleanup_timeout_s is not None
        deadline = time.monotonic() + self.timings.cleanup_timeout_s
        while alive and time.monotonic() < deadline:
            time.sleep(self.timings.cleanup_poll_s)
            alive = [p for p in alive if _alive(p)]
        for process in alive:
            process.send_signal(signal.SIGKILL)
        if alive:
            self._event(f"RuntimeCleanup: SIGKILL {len(alive)} targets after {self.timings.cleanup_timeout_s:g} s")

    def _force_kill(self) -> None:
        with self._cond:
            processes = [s.process for s in self._slots if s.process is not None] + self._retired
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop(graceful=False)


def _alive(process: WorkerProcess) -> bool:
    """Our own unreaped pid, or members left in its group (a zombie counts as dead, snakepit: shutdown-grace).

    A reaped pid is never checked by number: it may already belong to someone else.
    """
    return process.poll() is None or (process.process_group and bool(processes.group_members(process.pid)))
