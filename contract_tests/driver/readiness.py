"""Readiness waits: how Snakepit learns a worker's port (snakepit: readiness-line, readiness-file).

`ReadyFileWait` polls SNAKEPIT_READY_FILE every 50 ms like v0.8.1+;
`ReadyLineWait` scans merged output chunks for GRPC_READY like v0.6. Both
give up at once when the worker exits, with its status and output tail.
"""

from __future__ import annotations

import queue
import re
import time
from pathlib import Path
from typing import Protocol

from contract_tests.errors import WorkerStartError

# v0.6 restarts its timer on every chunk (snakepit: readiness-timeout), so a chatty worker could
# wait forever; the harness still gives up after this long, and says why.
HARD_CAP_S = 120.0
_POLL_S = 0.05
_READY_LINE = re.compile(rb"GRPC_READY:(\d+)")
_LEADING_DIGITS = re.compile(rb"\s*(\d+)")


class WatchedProcess(Protocol):
    """What a wait needs from the worker being started."""

    def poll(self) -> int | None: ...

    def output_tail(self) -> str: ...


def _exited(proc: WatchedProcess, what: str) -> WorkerStartError:
    return WorkerStartError(f"worker exited before {what}", proc.poll(), proc.output_tail(), step="exit")


def _timed_out(proc: WatchedProcess, what: str, seconds: float) -> WorkerStartError:
    return WorkerStartError(
        f"no {what} within {seconds:.1f} s. Hint: the worker must signal readiness once it listens",
        proc.poll(),
        proc.output_tail(),
        step="ready",
    )


class ReadyFileWait:
    """Poll the ready file; parse it like Integer.parse(String.trim(contents))."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def read_port(self) -> int | None:
        """The port in the file, or None while it is absent, empty or non-numeric."""
        try:
            match = _LEADING_DIGITS.match(self.path.read_bytes())
        except FileNotFoundError:
            return None
        return int(match.group(1)) if match else None

    def wait(self, proc: WatchedProcess) -> int:
        deadline = time.monotonic() + self.timeout_s
        while True:
            port = self.read_port()
            if port is not None:
                # Snakepit deletes the file once read (snakepit: readiness-file).
                self.path.unlink(missing_ok=True)
                return port
            if proc.poll() is not None:
                raise _exited(proc, "writing its ready file")
            if time.monotonic() >= deadline:
                raise _timed_out(proc, "port in its ready file (SNAKEPIT_READY_FILE)", self.timeout_s)
            time.sleep(_POLL_S)


class ReadyLineWait:
    """Scan output chunks as v0.6 did: first line of a chunk containing the marker."""

    def __init__(self, chunks: queue.Queue[bytes], timeout_s: float, resets_on_output: bool) -> None:
        self.chunks = chunks
        self.timeout_s = timeout_s
        self.resets_on_output = resets_on_output

    @staticmethod
    def parse_chunk(chunk: bytes) -> int | None:
        """v0.6 splits a chunk on newlines and applies the regex to the first marked line."""
        if b"GRPC_READY:" not in chunk:
            return None
        line = next(part for part in chunk.split(b"\n") if b"GRPC_READY:" in part)
        match = _READY_LINE.search(line)
        return int(match.group(1)) if match else None

    def wait(self, proc: WatchedProcess) -> int:
        start = time.monotonic()
        deadline = start + self.timeout_s
        while True:
            now = time.monotonic()
            if now >= min(deadline, start + HARD_CAP_S):
                raise _timed_out(proc, "GRPC_READY:<port> line", now - start)
            try:
                chunk = self.chunks.get(timeout=min(_POLL_S, deadline - now))
            except queue.Empty:
                if proc.poll() is not None and self.chunks.empty():
                    raise _exited(proc, "printing GRPC_READY:<port>") from None
                continue
            if self.resets_on_output:
                deadline = time.monotonic() + self.timeout_s
            port = self.parse_chunk(chunk)
            if port is not None:
                return port
