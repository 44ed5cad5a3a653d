"""Routing and dispatch: a call goes to its session's worker or the first free one, per affinity mode.

Snakepit v0.13.0 lib/snakepit/pool/dispatcher.ex and pool.ex (checkout, affinity cache); v0.6.0 pool.ex
(docs/pool.md, snakepit: routing-affinity).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from typing import Any

import grpc

from contract_tests.driver import processes
from contract_tests.driver.client import StreamResult
from contract_tests.elixir.pool.lifecycle import Lifecycle
from contract_tests.elixir.pool.state import (
    PoolError,
    Routed,
    _Lease,
    _port_status,
    _Slot,
)
from contract_tests.elixir.session_store import SessionStoreError


class Routing(Lifecycle):
    """`Snakepit.execute/3` and friends: check a worker out, make the call in its turn, check it in."""

    def execute(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        affinity: str | None = None,
        timeout: float = 60.0,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
    ) -> Routed:
        """`Snakepit.execute/3`: route by `session_id` (not sent, snakepit: worker-session-id), queue if all busy."""
        lease = self._checkout(tool, session_id, self._mode(affinity), timeout, queue=True)
        try:
            client = lease.process.client
            assert client is not None
            request, headers = client.tool_request(tool, params, binary=binary, correlation_id=correlation_id)
            turn = self._await_turn(lease, tool)  # behind a health Ping already in the worker's line
            started = time.monotonic()
            try:
                try:
                    # The RPC deadline is the whole `timeout`, queue wait or not (snakepit: call-deadlines).
                    reply = client.execute_request(request, headers, timeout)
                finally:
                    # Before the worker's reply starts its next queued RPC and the check-in its next call.
                    finished = time.monotonic()
                    self._end_turn(lease.process, turn)
            except (grpc.RpcError, ValueError) as err:  # ValueError: channel closed under a dead worker
                raise self._call_failed(lease, tool, err) from err
        finally:
            self._checkin(lease)
        return Routed(
            worker_id=lease.worker_id,
            reply=reply,
            pid=lease.process.pid,
            path=lease.path,
            preferred=lease.preferred,
            preferred_state=lease.preferred_state,
            waited_s=lease.waited_s,
            started_at=started,
            finished_at=finished,
        )

    def execute_in_session(
        self,
        session_id: str,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_param: bool = True,
        affinity: str | None = None,
        timeout: float = 60.0,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
    ) -> Routed:
        """Route by session and (by default) add it as the `session_id` parameter, as GRPCWorker does.

        `Snakepit.execute_in_session/4` itself only routes ("no args enhancement", HEAD snakepit.ex:75-80,
        v0.6.0 :51-56): pass `session_param=False` for exactly that call.
        """
        args = dict(params or {})
        if session_param:
            args["session_id"] = session_id  # Map.put: overrides a caller's own key (HEAD grpc_worker.ex:367-369)
        return self.execute(
            tool,
            args,
            session_id=session_id,
            affinity=affinity,
            timeout=timeout,
            binary=binary,
            correlation_id=correlation_id,
        )

    def execute_stream(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        affinity: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[str, StreamResult]:
        """`Pool.execute_stream/4`: a checkout that never queues (no free worker is an error), then one stream."""
        lease = self._checkout(tool, session_id, self._mode(affinity), timeout, queue=False)
        try:
            client = lease.process.client
            assert client is not None
            turn = self._await_turn(lease, tool)
            try:
                result = client.stream(tool, params, timeout)
            finally:
                self._end_turn(lease.process, turn)
        except ValueError as err:
            raise self._call_failed(lease, tool, err) from err
        finally:
            self._checkin(lease)
        if result.code is not grpc.StatusCode.OK and lease.process.poll() is not None:
            with self._cond:
                self._on_death(lease.slot, lease.process, lease.process.poll(), f"died during stream {tool}")
        return lease.worker_id, result

    def _mode(self, affinity: str | None) -> str:
        return self.affinity if affinity is None else self._validate_mode(affinity)

    def _checkout(self, tool: str, session_id: str | None, mode: str, timeout: float, queue: bool) -> _Lease:
        started = time.monotonic()
        with self._cond:
            self._check_serving()
            preferred = self._preferred(session_id) if session_id else None
            state = self._status(preferred) if preferred else None
            slot: _Slot | None = None
            path = "any"
            wait_for: str | None = None  # strict_queue: the request waits for this worker only
            if preferred is not None and state == "available":
                slot, path = self._current(preferred), "preferred"
            elif preferred is not None and state == "busy" and mode == "strict_queue":
                wait_for = preferred
            elif preferred is not None and state == "busy" and mode == "strict_fail_fast":
                raise self._refuse("worker_busy", tool, session_id, preferred, state)
            elif preferred is not None and state == "missing" and mode != "hint":
                raise self._refuse("session_worker_unavailable", tool, session_id, preferred, state)
            if slot is None and wait_for is None:
                slot = self._first_available()
            if slot is not None:
                assert slot.process is not None
                slot.busy = True
                # HEAD stores affinity on both paths (pool.ex:1298-1336); v0.6.0 only off the preferred one (:985).
                if session_id and (path == "any" or not self._legacy):
                    self._store_affinity(session_id, slot.worker_id)
                self._event(f"{tool} session={session_id!r} [{mode}] preferred={preferred} ({state}) -> "
                            f"{slot.worker_id} ({path})")
                return _Lease(slot, slot.process, slot.worker_id, path, preferred, state, 0.0, slot.epoch)
            if not queue:
                # Stream checkout never queues (HEAD pool.ex:283-286,1850-1858; v0.6.0 pool.ex:100-104,368-386).
                kind = "worker_busy" if wait_for else "no_workers_available"
                raise self._refuse(kind, tool, session_id, preferred, state)
            return self._enqueue(tool, session_id, mode, preferred, state, wait_for, timeout, started)

    def _preferred(self, session_id: str) -> str | None:
        """The affinity cache, else SessionStore's last_worker_id, cached for the TTL (HEAD pool.ex:1508-1550)."""
        now = time.monotonic()
        cached = self._cache.get(session_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        session = self.host.store.get_session(session_id)  # touches the session, as Elixir does
        if session is None or session.last_worker_id is None:
            return None
        self._cache[session_id] = (session.last_worker_id, now + self.timings.affinity_cache_ttl_s)
        return session.last_worker_id

    def _status(self, worker_id: str) -> str:
        """HEAD preferred_worker_status (pool.ex:1342-1356) without CrashBarrier taint (off by default)."""
        slot = self._current(worker_id)
        if slot is None or slot.state != "ready":
            return "missing"
        return "busy" if slot.busy else "available"

    def _first_available(self) -> _Slot | None:
        # Enum.find/take over a MapSet: up to 32 members that is sorted term order (HEAD :1416, v0.6.0 :977).
        free = [s for s in self._slots if s.state == "ready" and not s.busy]
        return min(free, key=lambda s: s.worker_id) if free else None

    def _store_affinity(self, session_id: str, worker_id: str) -> None:
        # Snakepit does this in a Task and only logs a failure (HEAD pool.ex:1556-1574).
        try:
            self.host.store.store_worker_session(session_id, worker_id)
        except SessionStoreError as err:
            self._event(f"store_worker_session({session_id!r}, {worker_id}) failed: {err}")

    def _check_serving(self) -> None:
        if self._stopping:
            raise PoolError("pool_stopped", "the pool is stopped", self._evidence())
        if self._failed is not None:
            raise PoolError("pool_stopped", self._failed, self._evidence())
        if not self._started:
            raise PoolError("pool_not_initialized", "start() was not called", self._evidence())
        if not self._initialized:
            # HEAD dispatcher.ex:31-37 while a restarted Pool waits for its first worker_ready.
            raise PoolError("pool_not_initialized", "the Pool is re-initialising", self._evidence())

    def _call_failed(self, lease: _Lease, tool: str, err: Exception) -> PoolError:
        """Classify a failed RPC: pool gone, worker died, v0.6 GRPCWorker crash, or a plain error reply."""
        code = err.code() if isinstance(err, grpc.RpcError) else None
        detail = f"{code.name}: {err.details()}" if isinstance(err, grpc.RpcError) and code else repr(err)
        where = f"{tool} on {lease.worker_id}"
        process = lease.process
        status = process.poll()
        if status is None and (code is grpc.StatusCode.UNAVAILABLE or not processes.alive(process.pid)):
            # The port closes a moment before the exit is reapable, and poll() says None while another
            # thread (watcher, crash()) is reaping the same process.
            status = process.wait_exit(0.5)
        crashes = status is None and self.profile.non_ok_execute_status_crashes and not self._stopping
        if crashes:
            # v0.6.0: CaseClauseError in the GRPCWorker; terminate/2 SIGKILLs it (snakepit: execute-status-crash).
            self._event(f"{lease.worker_id}: non-OK ExecuteTool status crashes the v0.6 GRPCWorker ({detail}); "
                        "immediate SIGKILL")
            process.send_signal(signal.SIGKILL, group=False)
            status = process.wait_exit(5.0)
        with self._cond:
            if self._stopping or self._failed is not None or lease.slot.epoch != lease.epoch:
                return PoolError("pool_stopped", f"{where}: {detail}", self._evidence())
            if status is not None:
                self._on_death(lease.slot, process, status, "GRPCWorker crashed" if crashes else f"died during {tool}")
                if not self.profile.non_ok_execute_status_crashes:
                    # HEAD: the GRPCWorker outlives the failed RPC and returns ClientImpl's mapping of the dropped
                    # connection's INTERNAL status (client_impl.ex:216-232) before its Port's exit reaches it.
                    return PoolError("internal", f"{{:error, :internal}} {where}: the worker died (exit status "
                                     f"{_port_status(status)}) during the call ({detail})", self._evidence())
                return PoolError("worker_crashed", f"{{:worker_exit, _}} {where}: exit status {_port_status(status)} "
                                 f"({detail})", self._evidence())
            self._event(f"{where} failed: {detail}")
            return PoolError("rpc_error", f"{where}: {detail}", self._evidence())
