"""Exceptions of the harness, kept apart from contract violations.

A `ContractViolation` means the worker broke a clause (a FAIL); anything else
raised by the harness (`HarnessError` and its kin) means the check could not
run (an ERROR). Reports must never mix the two.
"""

from __future__ import annotations

from collections.abc import Sequence


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


def expect(condition: object, what: str, expected: Sequence[str] | str, actual: object) -> None:
    """Raise a ContractViolation unless condition holds."""
    __tracebackhide__ = True
    if not condition:
        raise ContractViolation(what, expected, actual if isinstance(actual, str) else repr(actual))

