"""Exceptions of the harness, kept apart from contract violations, and the exit codes of the command line.

A `ContractViolation` means the worker broke a clause (a FAIL); anything else
raised by the harness (`HarnessError` and its kin) means the check could not
run (an ERROR). Reports must never mix the two.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum

# `snakepit-contract`'s exit statuses (README.md, docs/gate.md); the bench command returns them too.
EXIT_CONFORMANT, EXIT_NOT_CONFORMANT, EXIT_HARNESS, EXIT_USAGE = 0, 1, 2, 3


class UsageProblem(Exception):
    """A command line that cannot run; the message says what to change."""


class ContractViolation(AssertionError):
    """The worker did something a clause forbids; renders Expected/Actual lines."""

    def __init__(self, what: str, expected: Sequence[str] | str, actual: str) -> None:
        alternatives = [expected] if isinstance(expected, str) else list(expected)
        lines = [what, *(f"Expected: {e}" for e in alternatives), f"Actual:   {actual}"]
        super().__init__("\n".join(lines))


class HarnessError(RuntimeError):
    """The suite itself could not do its job (bad option, port clash, bug)."""


class WorkerUnreachable(HarnessError):
    """--worker-address names no worker that answers Ping: no check of it can run."""


class WorkerStartError(RuntimeError):
    """The worker under test never became ready; carries its exit status and output.

    `unstartable` marks a failure of the worker launched exactly as Snakepit launches it (no check's overrides)
    before any such launch succeeded: the worker cannot start under this profile at all, so every later launch
    reports this same failure at once instead of trying again (launcher.py).
    """

    def __init__(self, message: str, exit_status: int | None, output_tail: str, *, step: str = "exit") -> None:
        self.step = step  # what failed: "exec", "exit" (before readiness), "ready" (no signal), "connect", "ping"
        self.headline = f"{message} ({'still running' if exit_status is None else f'exit status {exit_status}'})"
        super().__init__(f"{self.headline}\n--- last worker output ---\n{output_tail}")
        self.exit_status = exit_status
        self.output_tail = output_tail
        self.unstartable = False


def render(value: object) -> str:
    """A value as the reader of a report knows it from the wire: JSON (null, false, {"k": 1}), not Python's repr;
    bytes by their length and first bytes in hex, a gRPC status code by its name."""
    if isinstance(value, Enum):
        return str(value.name)
    try:
        return json.dumps(value, ensure_ascii=False, default=_unjson)
    except (TypeError, ValueError):  # circular, or a key JSON cannot have
        return repr(value)


def _unjson(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        shown = bytes(value[:32]).hex()
        return f"<{len(value)} bytes: {shown}{'...' if len(value) > 32 else ''}>"
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, Enum):
        return value.name
    return repr(value)


def expect(condition: object, what: str, expected: Sequence[str] | str, actual: object) -> None:
    """Raise a ContractViolation unless condition holds; a non-text actual value is shown as JSON."""
    __tracebackhide__ = True
    if not condition:
        raise ContractViolation(what, expected, actual if isinstance(actual, str) else render(actual))

