"""Queueing: a call that finds no free worker waits in the FIFO queue, bounded in length and time.

Snakepit v0.13.0 lib/snakepit/pool/queue.ex and scheduler.ex; v0.6.0 lib/snakepit/pool/pool.ex (docs/pool.md).
"""

from __future__ import annotations

import time

from contract_tests.elixir.pool.state import (
    PoolError,
    PoolState,
    _Lease,
    _Request,
)


class Queueing(PoolState):
    """Wait in the queue for a worker; fail every waiting call at once when the Pool goes."""

    def _enqueue(
        self,
        tool: str,
        session_id: str | None,
        mode: str,
        preferred: str | None,
        state: str | None,
        wait_for: str | None,
        timeout: float,
        started: float,
    ) -> _Lease:
        """Wait in the FIFO queue (lock held); `{:error, :queue_timeout}` when its timer fires first."""
        if len(self._queue) >= self.timings.max_queue:
            # Snakepit's reason is :pool_saturated (HEAD scheduler.ex:16-40, v0.6.0 pool.ex:604-623).
            raise self._refuse("queue_full", tool, session_id, preferred, state,
                               f"pool_saturated: {len(self._queue)} queued (max {self.timings.max_queue})")
        request = _Request(affinity=wait_for)
        self._queue.append(request)
        self._event(f"{tool} session={session_id!r} [{mode}] preferred={preferred} ({state}) -> queued "
                    f"(for {wait_for or 'any worker'}; {len(self._queue)} in queue)")
        wait = min(self.timings.queue_timeout_s, timeout)
        deadline = started + wait
        while request.slot is None and request.failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if request.failure is not None:
            raise request.failure
        if request.slot is None or request.process is None:
            if self._legacy:
                request.cancelled = True  # v0.6.0 keeps it queued until a check-in pops it (pool.ex:733-753)
            else:
                self._queue.remove(request)  # HEAD drops it at once (event_handler.ex:13-55)
            kind = "queue_timeout" if wait == self.timings.queue_timeout_s else "timeout"
            raise self._refuse(kind, tool, session_id, preferred, state, f"waited {wait:.3f} s in the queue")
        waited = time.monotonic() - started
        slot = request.slot
        return _Lease(slot, request.process, slot.worker_id, "queued", preferred, state, waited, slot.epoch)

    def _fail_queue(self, kind: str, why: str) -> None:
        while self._queue:
            request = self._queue.popleft()
            request.failure = PoolError(kind, why, self._evidence())
        self._cond.notify_all()
