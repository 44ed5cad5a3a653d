"""Worker lifecycle: start, death, restart with the same id, and the escalation when restarts run out.

Snakepit v0.13.0 lib/snakepit/pool/worker_starter.ex, worker_supervisor.ex, initializer.ex and the supervisors
above them; v0.6.0's own (docs/pool.md).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time

from contract_tests.driver.launcher import WorkerProcess
from contract_tests.elixir.pool.checkin import CheckIn
from contract_tests.elixir.pool.health import WorkerLine
from contract_tests.elixir.pool.queue import Queueing
from contract_tests.elixir.pool.state import (
    _port_status,
    _Slot,
)

# Snakepit hears of a dead worker from its Port's exit_status message at once; 50 ms of polling is close enough.
_WATCH_INTERVAL_S = 0.05


def _allow(history: collections.deque[float], now: float, limit: int, window: float) -> bool:
    """OTP supervisor intensity: record a restart; False once more than `limit` fall within `window`."""
    while history and now - history[0] > window:
        history.popleft()
    history.append(now)
    return len(history) <= limit


class Lifecycle(CheckIn, Queueing, WorkerLine):
    """Start each slot's worker, notice its death, restart it, and escalate as the supervision tree does."""

    def crash(self, worker_id: str) -> None:
        """SIGKILL the worker's OS process (an OOM kill, say) and let the pool handle the death at once."""
        with self._cond:
            slot = self._current(worker_id)
            if slot is None or slot.process is None or slot.state != "ready":
                raise KeyError(f"no running worker {worker_id!r}")
            process = slot.process
            self._event(f"crash(): SIGKILL {worker_id} (pid {process.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        status = process.wait_exit(5.0)
        with self._cond:
            self._on_death(slot, process, status, "killed by crash()")

    def wait_restarted(
        self, worker_id_or_slot: str | int, timeout: float = 30.0, previous_pid: int | None = None
    ) -> str:
        """Wait until the slot runs a worker started after its last death (or other than `previous_pid`)."""
        with self._cond:
            slot = self._slot_of(worker_id_or_slot)

            def restarted() -> bool:
                if slot.state != "ready" or slot.process is None:
                    return False
                if previous_pid is not None:
                    return slot.process.pid != previous_pid
                return slot.death_mark is not None and slot.ready_count > slot.death_mark

            if not self._cond.wait_for(restarted, timeout):
                raise TimeoutError(
                    f"slot {slot.index} ({slot.worker_id}) not restarted within {timeout} s (state {slot.state})\n"
                    + "\n".join(self._evidence())
                )
            return slot.worker_id

    def _launch(self, slot: _Slot, initial: bool = False, retire: WorkerProcess | None = None,
                graceful_retire: bool = False) -> None:
        """Start the slot's worker on its own thread (lock held), after stopping the one it replaces."""
        slot.state, slot.busy, slot.start_error = "starting", False, None
        thread = threading.Thread(
            target=self._start_worker,
            args=(slot, slot.epoch, initial, retire, graceful_retire),
            name=f"pool-start-{slot.worker_id}",
            daemon=True,
        )
        self._track(thread)

    def _start_worker(
        self, slot: _Slot, epoch: int, initial: bool, retire: WorkerProcess | None, graceful_retire: bool
    ) -> None:
        if retire is not None:
            retire.stop(graceful=graceful_retire, grace_s=self.timings.stop_timeout_s)
        with self._cond:
            if self._stopping or slot.epoch != epoch:
                return
            try:
                process = WorkerProcess(self._make_spec())
                self.launched.append(process)
            except Exception as err:
                slot.start_error, slot.state = err, "empty"
                self._event(f"{slot.worker_id}: make_spec failed: {err!r}")
                self._cond.notify_all()
                return
            slot.process = process
        began = time.monotonic()
        try:
            process.start()
        except Exception as err:  # WorkerStartError, or a channel closed under it by stop()
            status = getattr(err, "exit_status", None)
            status = process.poll() if status is None else status
            process.stop(graceful=False)
            with self._cond:
                if not (self._stopping or slot.epoch != epoch):
                    self._start_failed(slot, process, err, _port_status(status), initial)
            return
        self._watch_heartbeat(process)
        with self._cond:
            if not (self._stopping or slot.epoch != epoch):
                slot.state, slot.ready_count = "ready", slot.ready_count + 1
                self._initialized = True
                self._event(f"{slot.worker_id} ready: pid {process.pid} in {time.monotonic() - began:.3f} s")
                self._start_health_checks(slot, process)
                self._dispatch(slot)  # worker_ready drives the queue like a check-in (HEAD pool.ex:867)
                self._cond.notify_all()
                return
        process.stop(grace_s=self.timings.stop_timeout_s)  # the pool stopped or was torn down meanwhile

    def _start_failed(self, slot: _Slot, process: WorkerProcess, err: Exception, status: int | None,
                      initial: bool) -> None:
        first_line = str(err).splitlines()[0] if str(err) else repr(err)
        self._event(f"{slot.worker_id} failed to start (exit status {status}): {first_line}")
        if initial:
            slot.start_error, slot.state = err, "empty"
        elif not self._legacy and status in (0, 143):
            # HEAD: {:error, :shutdown} stops the :transient child normally; nothing restarts it (snakepit: restarts).
            slot.state = "empty"
            self._event(f"{slot.worker_id}: startup exit {status} is :shutdown for a :transient child; slot empty")
        else:
            self._restart(slot, process, graceful=False)
        self._cond.notify_all()

    def _watch(self) -> None:
        """Notice workers that exit on their own (crash, unprompted exit, heartbeat stop)."""
        while not self._halt.wait(_WATCH_INTERVAL_S):
            with self._cond:
                running = [(s, s.process) for s in self._slots if s.state == "ready" and s.process is not None]
            for slot, process in running:
                status = process.poll()
                if status is not None:
                    with self._cond:
                        self._on_death(slot, process, status, "exited")

    def _on_death(self, slot: _Slot, process: WorkerProcess, status: int | None, cause: str) -> None:
        """The Pool's :DOWN handling (lock held), then the Worker.Starter's decision."""
        if slot.process is not process or slot.state != "ready" or self._stopping:
            return
        slot.state, slot.busy, slot.death_mark = "down", False, slot.ready_count
        # The dead id's cache entries go (HEAD event_handler.ex:85, v0.6.0 pool.ex:767); SessionStore keeps it.
        self._cache = {sid: entry for sid, entry in self._cache.items() if entry[0] != slot.worker_id}
        self._event(f"{slot.worker_id} (pid {process.pid}) {cause}: exit status {_port_status(status)}")
        failure = process.heartbeat.failure if process.heartbeat is not None else None
        if failure is not None and process in self._heartbeat_stopped:
            # HeartbeatMonitor stops the worker with {:shutdown, reason}: a :transient child is not restarted
            # (HEAD heartbeat_monitor.ex:402-409, grpc_worker.ex:566-573; worker_starter.ex:172).
            slot.state = "empty"
            self._event(f"{slot.worker_id}: stopped by its heartbeat ({failure}); {{:shutdown, _}} is not restarted")
            self._retire(process, graceful=False)
        else:
            self._restart(slot, process, graceful=False)
        self._cond.notify_all()

    def _restart(self, slot: _Slot, process: WorkerProcess, graceful: bool) -> None:
        """Worker.Starter restart with the same id, escalating when the supervisors' limits are hit (lock held)."""
        now, t = time.monotonic(), self.timings
        if _allow(slot.starter_restarts, now, t.restart_max, t.restart_window_s):
            self._event(f"Worker.Starter restarts {slot.worker_id} "
                        f"({len(slot.starter_restarts)}/{t.restart_max} in {t.restart_window_s:g} s)")
            self._launch(slot, retire=process, graceful_retire=graceful)
            return
        self._event(f"Worker.Starter for {slot.worker_id} gives up: more than {t.restart_max} restarts "
                    f"in {t.restart_window_s:g} s")
        if _allow(self._supervisor_restarts, now, t.supervisor_restart_max, t.supervisor_restart_window_s):
            # The Starter is :permanent under WorkerSupervisor, which restarts it: same id, fresh history.
            slot.starter_restarts.clear()
            self._event(f"WorkerSupervisor restarts the Worker.Starter of {slot.worker_id} (same id)")
            self._launch(slot, retire=process, graceful_retire=graceful)
            return
        self._retire(process, graceful=False)
        self._escalate()

    def _escalate(self) -> None:
        """WorkerSupervisor gave up too: what happens above it differs between eras (docs/pool.md)."""
        t = self.timings
        self._event(f"WorkerSupervisor gives up: more than {t.supervisor_restart_max} restarts "
                    f"in {t.supervisor_restart_window_s:g} s")
        if self._legacy:
            # v0.6.0: Snakepit.Supervisor (:one_for_one) restarts an empty WorkerSupervisor; the Pool lives on
            # without workers and without reconciliation, so every call queues and times out.
            self._event("Snakepit.Supervisor restarts WorkerSupervisor empty; the v0.6.0 Pool has no workers left")
            self._tear_down_slots(new_ids=False)
            return
        if _allow(self._runtime_restarts, time.monotonic(), t.supervisor_restart_max, t.supervisor_restart_window_s):
            # HEAD: RuntimeSupervisor (:rest_for_one) restarts WorkerSupervisor and the Pool, which starts afresh.
            self._event("RuntimeSupervisor restarts WorkerSupervisor and Pool: new worker ids, queued calls fail")
            self._fail_queue("pool_stopped", "the Pool process was restarted")
            self._cache.clear()  # the ETS cache belonged to the old Pool process
            self._supervisor_restarts.clear()
            self._initialized = False
            self._tear_down_slots(new_ids=True)
            return
        self._failed = "restart limits exhausted up to RuntimeSupervisor: Snakepit's supervision tree stops"
        self._event(self._failed)
        self._fail_queue("pool_stopped", self._failed)
        self._tear_down_slots(new_ids=False)

    def _tear_down_slots(self, new_ids: bool) -> None:
        for slot in self._slots:
            slot.epoch += 1
            old, slot.process = slot.process, None
            slot.starter_restarts.clear()
            if not new_ids:
                if old is not None:
                    self._retire(old, graceful=True)
                slot.state, slot.busy = "empty", False
                continue
            slot.worker_id = self._new_id(slot.index)
            self._by_id[slot.worker_id] = slot
            self._launch(slot, retire=old, graceful_retire=True)

    def _retire(self, process: WorkerProcess, graceful: bool) -> None:
        """Stop a replaced worker in the background; stop() makes sure it is gone."""
        self._retired.append(process)
        thread = threading.Thread(
            target=process.stop,
            kwargs={"graceful": graceful, "grace_s": self.timings.stop_timeout_s},
            name="pool-retire",
            daemon=True,
        )
        self._track(thread)
