"""The GRPCWorker's own RPC line and its health pings, and what a failed heartbeat means for a restart.

One RPC at a time per worker (a call waits behind a health Ping); the periodic Ping is only logged when it
fails. Snakepit v0.13.0 lib/snakepit/grpc_worker.ex, lib/snakepit/heartbeat_monitor.ex (docs/pool.md).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import grpc

from contract_tests.driver import processes
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.elixir.pool.state import (
    HealthPing,
    PoolState,
    _Gate,
    _Lease,
    _Slot,
)

# How long a worker whose heartbeat failed may take to finish dying before the failure counts as a stop.
_DYING_S = 0.25
# The N of each GRPCWorker's `#PID<0.N.0>` in its health-check message.
_beam_pids = itertools.count(300)


class WorkerLine(PoolState):
    """Each worker's line of RPCs, the health-check timer that joins it, and the heartbeat's verdict."""

    def _gate(self, process: WorkerProcess) -> _Gate:
        return self._gates.setdefault(process, _Gate())

    def _gone(self, slot: _Slot, process: WorkerProcess) -> bool:
        """(Lock held.) The GRPCWorker of `process` is no more (dead, replaced, or the pool stops)."""
        return self._stopping or slot.process is not process or slot.state != "ready"

    def _await_turn(self, lease: _Lease, tool: str) -> object:
        """Join the worker's RPC line and wait until this call is at its head and nothing runs."""
        token = object()
        with self._cond:
            gate = self._gate(lease.process)
            gate.waiting.append(token)
            if gate.running is not None or gate.waiting[0] is not token:
                self._event(f"{tool} on {lease.worker_id} waits behind a health Ping in the GRPCWorker's line")
            # Once its worker is gone the call stops waiting: its RPC then fails and is classified as usual.
            self._wait_turn(gate, token, lambda: self._gone(lease.slot, lease.process))
        return token

    def _wait_turn(self, gate: _Gate, token: object, give_up: Callable[[], bool]) -> bool:
        """(Lock held.) True once `token` runs; False (and out of the line) if `give_up()` turns true first."""
        while True:
            if give_up():
                gate.waiting.remove(token)
                self._cond.notify_all()
                return False
            if gate.running is None and gate.waiting[0] is token:
                break
            self._cond.wait(0.5)
        gate.waiting.popleft()
        gate.running = token
        return True

    def _end_turn(self, process: WorkerProcess, token: object) -> None:
        with self._cond:
            gate = self._gate(process)
            if gate.running is token:
                gate.running = None
                self._cond.notify_all()

    def _watch_heartbeat(self, process: WorkerProcess) -> None:
        """Note whether the HeartbeatMonitor fails a live worker (a stop) or one already dead (a crash)."""
        monitor = process.heartbeat
        if monitor is None:
            return
        if monitor.failure is not None:
            self._heartbeat_stopped.add(process)
            return
        original = monitor.on_failure

        def on_failure(reason: str) -> None:
            # A killed worker closes its sockets a moment before it is a zombie: give it that moment.
            # Not poll(): it answers None while another thread waits on the same Popen.
            deadline = time.monotonic() + _DYING_S
            while processes.alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if processes.alive(process.pid):
                self._heartbeat_stopped.add(process)
            original(reason)

        monitor.on_failure = on_failure

    def _start_health_checks(self, slot: _Slot, process: WorkerProcess) -> None:
        """(Lock held.) Arm the worker's health-check timer as it is acknowledged ready.

        HEAD `complete_worker_initialization` (grpc_worker.ex:285-286, after worker_ready, bootstrap.ex:80-81);
        v0.6.0 after worker_ready (grpc_worker.ex:366-369).
        """
        if self.timings.health_check_interval_s is None:
            return
        thread = threading.Thread(
            target=self._health_checks,
            args=(slot, process, slot.worker_id, f"#PID<0.{next(_beam_pids)}.0>", time.monotonic()),
            name=f"pool-health-{slot.worker_id}",
            daemon=True,
        )
        self._track(thread)

    def _health_checks(
        self, slot: _Slot, process: WorkerProcess, worker_id: str, beam_pid: str, ready_at: float
    ) -> None:
        """The `:health_check` timer of one GRPCWorker; it dies with the worker (or the pool)."""
        interval = self.timings.health_check_interval_s
        assert interval is not None
        due = ready_at + interval
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._gone(slot, process), max(0.0, due - time.monotonic())):
                    return
                # The Ping takes its place in the worker's line when the timer fires: behind a running call,
                # ahead of any call the Pool hands this worker later.
                token = object()
                self._gate(process).waiting.append(token)
                fired = time.monotonic()
                ping: threading.Thread | None = None
                if not self._legacy:
                    ping = threading.Thread(
                        target=self._health_ping,
                        args=(slot, process, worker_id, beam_pid, token, fired),
                        name=f"pool-ping-{slot.worker_id}",
                        daemon=True,
                    )
                    self._track(ping)
            if ping is None:
                # v0.6.0 pings inside handle_info(:health_check), blocking the GRPCWorker, and re-arms the
                # timer only after the Ping returned, pass or fail (grpc_worker.ex:498-512).
                self._health_ping(slot, process, worker_id, beam_pid, token, fired)
                due = time.monotonic() + interval
            else:
                # HEAD re-arms the timer first, then enqueues the Ping as an async RPC (grpc_worker.ex:518-526,
                # 1028-1045): one Ping per tick, however long earlier ones wait or run.
                due = fired + interval

    def _health_ping(
        self, slot: _Slot, process: WorkerProcess, worker_id: str, beam_pid: str, token: object, queued_at: float
    ) -> None:
        """Wait for the Ping's turn, send it, log a failure; a health ping never stops or restarts a worker."""
        with self._cond:
            gate = self._gate(process)
            if not self._wait_turn(gate, token, lambda: self._gone(slot, process)):
                return  # the GRPCWorker died with its line
            message = f"health_check_{beam_pid}"
            timeout = self.timings.health_check_timeout_s
            self._event(f"{worker_id}: health Ping({message!r}) sent, deadline {timeout:g} s")
        started = time.monotonic()
        error: str | None = None
        try:
            client = process.client
            assert client is not None
            client.ping(message, timeout=timeout)
        except grpc.RpcError as err:
            error = f"{err.code().name}: {err.details()}"
        except ValueError as err:  # channel closed under a worker being stopped
            error = repr(err)
        finally:
            finished = time.monotonic()
            self._end_turn(process, token)
        with self._cond:
            if self._stopping:
                return  # the GRPCWorker is terminating; nobody handles the result
            self.health_pings.append(
                HealthPing(worker_id, process.pid, message, queued_at, started, finished, error)
            )
            if error is None:
                self._event(f"{worker_id}: health Ping answered OK in {finished - started:.3f} s")
            else:
                # HEAD grpc_worker.ex:1036-1037 SLog.warning; v0.6.0 grpc_worker.ex:506-507 Logger.warning.
                self._event(f"{worker_id}: health check failed ({error}) after {finished - started:.3f} s; "
                            "only logged, the worker stays")
