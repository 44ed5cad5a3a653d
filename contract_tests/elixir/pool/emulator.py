"""Snakepit's Pool as a test double: N real workers routed, queued, restarted and stopped per profile (docs/pool.md)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from contract_tests.driver.launcher import StopResult, WorkerProcess
from contract_tests.elixir.pool.routing import Routing
from contract_tests.elixir.pool.shutdown import Shutdown


class PoolEmulator(Routing, Shutdown):
    """Starts `size` workers through the launcher and routes calls to them the way Snakepit's Pool does."""

    def __enter__(self) -> PoolEmulator:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start every slot in parallel and wait until all are ready; any start failure stops the pool."""
        with self._cond:
            if self._started:
                raise RuntimeError("pool already started")
            self._started = True
            self._event(f"start: {self.size} workers, profile {self.profile.name}, affinity {self.affinity}")
            for slot in self._slots:
                self._launch(slot, initial=True)
            done = self._cond.wait_for(lambda: all(s.state != "starting" for s in self._slots), timeout)
            failed = next((s.start_error for s in self._slots if s.start_error is not None), None)
        if not done or failed is not None:
            self.stop()
            if failed is not None:
                raise failed
            raise TimeoutError(f"pool workers not ready within {timeout} s\n" + "\n".join(self._evidence()))
        self._watcher = threading.Thread(target=self._watch, name="pool-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> dict[str, StopResult]:
        """Application stop: SIGTERM every worker (group when it leads one), grace, SIGKILL; then RuntimeCleanup."""
        with self._cond:
            if self._stop_results is not None:
                return dict(self._stop_results)
            if self._stopping:  # another thread is stopping the pool: wait for its results
                self._cond.wait_for(lambda: self._stop_results is not None, 60.0)
                return dict(self._stop_results or {})
            self._stopping = True
            self._fail_queue("pool_stopped", "the Pool process is shutting down")
        results: dict[str, StopResult] = {}
        try:
            results = self._shutdown()
        except BaseException:
            self._force_kill()  # Ctrl-C or a bug mid-stop: still leave nothing behind
            raise
        finally:
            with self._cond:
                self._stop_results = results
                self._cond.notify_all()
        return dict(results)

    def worker_ids(self) -> list[str]:
        """Current worker id of every slot, in slot order."""
        with self._cond:
            return [s.worker_id for s in self._slots]

    def worker_sessions(self) -> set[str]:
        """The session id each ready worker gets on the wire (the one the HeartbeatMonitor beats)."""
        with self._cond:
            return {s.process.client.session_id for s in self._slots
                    if s.state == "ready" and s.process is not None and s.process.client is not None}

    def worker(self, worker_id: str) -> WorkerProcess:
        """The OS process currently behind a worker id (KeyError if that id has none)."""
        with self._cond:
            slot = self._current(worker_id)
            if slot is None or slot.process is None:
                raise KeyError(worker_id)
            return slot.process

    def busy(self, worker_id: str) -> bool:
        """True while a call runs on that worker."""
        with self._cond:
            slot = self._current(worker_id)
            return slot is not None and slot.state == "ready" and slot.busy

    def slot_states(self) -> dict[str, str]:
        """worker id -> starting | ready | down | empty."""
        with self._cond:
            return {s.worker_id: s.state for s in self._slots}

    def queued(self) -> int:
        """Requests in the queue (at 0.6 this includes timed-out ones not yet popped)."""
        with self._cond:
            return len(self._queue)

    @property
    def failed(self) -> str | None:
        """Why the pool stopped serving on its own (restart limits exhausted), if it did."""
        return self._failed

    def preferred_worker(self, session_id: str) -> str | None:
        """The worker routing would prefer for a session now (cache, else store), without touching either."""
        with self._cond:
            cached = self._cache.get(session_id)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            session = self.host.store.peek_session(session_id)
            return None if session is None else session.last_worker_id
