"""Per-phase deadline of a clause test: SIGALRM raises ClauseTimeout carrying a dump of every thread.

A hung worker must not hang the run: each phase (setup, call, teardown) of a
clause test gets a budget, and when it runs out the test is stopped where it
stands and reported as TIMEOUT with the stacks that show what it waited for.
Signals reach only the main thread, which is where pytest (and xdist's
workers) run tests; elsewhere, or without SIGALRM, the deadline is not armed.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_FRAMES_PER_THREAD = 12


class ClauseTimeout(BaseException):
    """The phase outran its budget. A BaseException so that `except Exception` in a check cannot swallow it."""

    def __init__(self, budget_s: float, thread_dump: str) -> None:
        super().__init__(f"no result within {budget_s:g} s (stretch deadlines with --timeout-scale)")
        self.budget_s = budget_s
        self.thread_dump = thread_dump


def thread_dump() -> str:
    """The innermost frames of every live thread, named."""
    names = {t.ident: t.name for t in threading.enumerate()}
    blocks = []
    for ident, frame in sys._current_frames().items():
        stack = traceback.format_stack(frame)[-_FRAMES_PER_THREAD:]
        blocks.append(f"--- thread {names.get(ident, ident)} ---\n" + "".join(stack).rstrip())
    return "\n".join(blocks)


def _armable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(budget_s: float) -> Iterator[None]:
    """Raise ClauseTimeout in the main thread if the block runs longer than budget_s."""
    if not _armable():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ClauseTimeout(budget_s, thread_dump())

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
