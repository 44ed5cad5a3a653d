"""Check-in and the events that free a worker: the next queued call it may serve gets it, else it is available.

Snakepit v0.13.0 lib/snakepit/pool/event_handler.ex; v0.6.0 lib/snakepit/pool/pool.ex (docs/pool.md).
"""

from __future__ import annotations

from contract_tests.elixir.pool.state import (
    PoolState,
    _Lease,
    _Request,
    _Slot,
)


class CheckIn(PoolState):
    """A worker back from a call (or newly ready) serves the queue before it counts as available."""

    def _checkin(self, lease: _Lease) -> None:
        with self._cond:
            slot = lease.slot
            if slot.process is lease.process and slot.state == "ready":
                self._dispatch(slot)

    def _dispatch(self, slot: _Slot) -> None:
        """A worker is free: hand it the first queued request it may serve, else mark it available."""
        if self._legacy:
            # v0.6.0: plain FIFO; a timed-out request is popped and skipped (pool.ex:658-725).
            while self._queue:
                request = self._queue.popleft()
                if not request.cancelled:
                    self._assign(request, slot)
                    return
        else:
            # HEAD: first request without affinity or waiting for this worker (queue.ex:85-160).
            for request in self._queue:
                if request.affinity in (None, slot.worker_id):
                    self._queue.remove(request)
                    self._assign(request, slot)
                    return
        slot.busy = False

    def _assign(self, request: _Request, slot: _Slot) -> None:
        # A queued request records no affinity (HEAD event_handler.ex:276-330, v0.6.0 pool.ex:681-700).
        slot.busy = True
        request.slot, request.process = slot, slot.process
        self._event(f"check-in of {slot.worker_id} serves a queued request")
        self._cond.notify_all()
