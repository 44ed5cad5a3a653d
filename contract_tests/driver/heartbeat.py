"""Snakepit 0.13's HeartbeatMonitor: Heartbeat every 2 s, 10 s deadline (snakepit: heartbeat).

With the default transport one failed, late or `session_valid=false` reply
fails a dependent worker at once; the monitor records why and calls back
so the launcher can stop the worker as Snakepit would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from contract_tests.driver.client import WorkerClient


@dataclass(frozen=True)
class Beat:
    """One heartbeat exchange: when it was sent, how long it took, what came back."""

    sent_at: float
    elapsed_s: float
    valid: bool | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.valid)


class HeartbeatMonitor:
    """Sends Heartbeat(worker session) on its own thread and judges each reply."""

    def __init__(
        self,
        client: WorkerClient,
        interval_s: float,
        timeout_s: float,
        on_failure: Callable[[str], None],
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_failure = on_failure
        self.beats: list[Beat] = []
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.timeout_s + 1)

    def _beat(self) -> Beat:
        sent = time.monotonic()
        try:
            reply = self.client.heartbeat(timeout=self.timeout_s)
        except grpc.RpcError as err:
            return Beat(sent, time.monotonic() - sent, None, f"{err.code().name}: {err.details()}")
        return Beat(sent, time.monotonic() - sent, reply.session_valid, None)

    def _run(self) -> None:
        # Snakepit's initial delay is 0: the first ping goes out right after the handshake.
        while not self._stop.is_set():
            beat = self._beat()
            if self._stop.is_set():
                return
            self.beats.append(beat)
            if not beat.ok:
                self.failure = beat.error or "Heartbeat answered session_valid=false"
                self.on_failure(self.failure)
                return
            self._stop.wait(self.interval_s)
