"""Verdicts of clause tests: a deadline per phase, FAIL/ERROR/TIMEOUT/NOT-RUN per test, the report at the end.

A pytest plugin that plugin.py registers once settings are resolved. Each phase is
classified where it ran (FAIL only when the worker broke the contract, ERROR
when the harness failed, TIMEOUT past its deadline) and carries its evidence
in the report, which survives xdist; the controller folds the phases into a
RunReport, applies the baseline, writes --report-dir and prints the verdict.
pytest's own exit status stays pytest's; `snakepit-contract run` exits with
the verdict (docs/report.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import grpc
import pytest

from contract_tests import __version__, report
from contract_tests.contract.clause import REGISTRY, Clause
from contract_tests.contract.profiles import Profile, Readiness
from contract_tests.driver.client import WorkerClient
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.driver.visible import visible
from contract_tests.errors import ContractViolation, WorkerStartError, WorkerUnreachable
from contract_tests.judging.deadline import ClauseTimeout, deadline
from contract_tests.judging.settings import SETTINGS
from contract_tests.report import json_report, terminal
from contract_tests.report.extras import EXTRAS, ReportExtras
from contract_tests.report.model import (
    LEVELS,
    NOT_APPLICABLE_PREFIX,
    NOT_RUN_PREFIX,
    SEVERITY,
    CheckRecord,
    ClauseResult,
    Evidence,
    Outcome,
    RunReport,
    fold,
    plan,
)

# Raised by a check's own calls, these mean the worker broke the contract; anything else is the harness's.
_WORKER_FAULTS = (AssertionError, grpc.RpcError, WorkerStartError)
_EVIDENCE_LIMIT = 6000

# What fixtures leave on a test for its evidence: the workers it used, the attached client, the tools found.
WORKERS = pytest.StashKey[list[WorkerProcess]]()
ATTACHED_CLIENT = pytest.StashKey[WorkerClient]()
TOOLS = pytest.StashKey[frozenset[str] | str]()
# Also left by fixtures: the lists of workers pools launched (filled as they go), and titled evidence of their own.
LAUNCHED = pytest.StashKey[list[list[WorkerProcess]]]()
EXTRA_EVIDENCE = pytest.StashKey[list[tuple[str, str]]]()
REPORT = pytest.StashKey[RunReport]()
REPORT_WRITE_ERROR = pytest.StashKey[str]()
_COLLECTOR = pytest.StashKey["_Collector"]()
_STARTED = pytest.StashKey[datetime]()


def clause_of(item: pytest.Item) -> Clause | None:
    """The catalogue clause a test checks, if it is a clause test."""
    marker = item.get_closest_marker("clause")
    return REGISTRY.get(marker.args[0]) if marker else None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STARTED] = datetime.now(UTC)
    _START_FAILURES_SHOWN.clear()
    config.stash[_COLLECTOR] = _Collector()
    config.pluginmanager.register(config.stash[_COLLECTOR], "snakepit-contract-results")


@contextmanager
def _phase_deadline(item: pytest.Item) -> Iterator[None]:
    if clause_of(item) is None:
        yield
        return
    settings = item.config.stash[SETTINGS]
    with deadline(settings.clause_timeout_s * settings.timeout_scale):
        yield


# Clauses that judge the heartbeat itself: a worker the heartbeat monitor stopped rightly FAILs them.
HEARTBEAT_CLAUSES = frozenset({"RPC-002", "RPC-003"})
# When each clause test of this process started (monotonic) and its label, to name where a monitor fired.
_STARTS: list[tuple[float, str]] = []
# The profiles whose worker never started and whose NOT-RUN checks already carry that evidence in this process.
_START_FAILURES_SHOWN: set[str] = set()


def profile_of(item: pytest.Item) -> Profile | None:
    """The profile a clause test runs under."""
    callspec = getattr(item, "callspec", None)
    profile = callspec.params.get("profile") if callspec else None
    return profile if isinstance(profile, Profile) else None


def _profile_name(item: pytest.Item) -> str:
    profile = profile_of(item)
    return profile.name if profile else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    found = clause_of(item)
    if found is not None:
        _STARTS.append((time.monotonic(), f"{found.id} [{_profile_name(item)}]"))
    with _phase_deadline(item):
        return (yield)


def stopped_by_heartbeat(workers: list[WorkerProcess]) -> str | None:
    """Why a worker this check used was stopped by Snakepit's heartbeat monitor, and during which check.

    Only a worker that answered the heartbeat wrongly (session_valid=false) or too late was stopped *by* the
    monitor; a beat that found the worker gone (killed by a check) is the check's doing, not the monitor's.
    """
    for worker in workers:
        monitor = worker.heartbeat
        if monitor is None or monitor.failure is None or not monitor.beats:
            continue
        beat = monitor.beats[-1]
        if beat.valid is not False and not (beat.error or "").startswith("DEADLINE_EXCEEDED"):
            continue
        at = beat.sent_at + beat.elapsed_s
        where = next((label for started, label in reversed(_STARTS) if started <= at), "its start")
        return f"worker pid {worker.pid} stopped by the heartbeat monitor at {where} ({monitor.failure})"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _phase_deadline(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with _phase_deadline(item):
        return (yield)


def start_judges(error: WorkerStartError, profile: Profile) -> frozenset[str]:
    """The clauses that judge the step at which a worker that cannot start failed; every other check is NOT-RUN.

    A worker that exits (or cannot be executed) fails PROC-001; one that never signals readiness, also its
    readiness signal and deadline; one whose announced port does not answer on 127.0.0.1, also the port report,
    the readiness signal and PROC-015; one whose handshake Ping is answered with an error, RPC-001.
    """
    signal = "PROC-004" if profile.readiness is Readiness.READY_FILE else "PROC-005"
    return frozenset({"PROC-001"} | {
        "ready": {signal, "PROC-007"},
        "connect": {"PROC-003", signal, "PROC-015"},
        "ping": {"RPC-001"},
    }.get(error.step, set()))


def never_started(error: WorkerStartError, profile: Profile) -> str:
    """The one NOT-RUN reason of every check a worker that cannot start leaves unjudged (tallied as one line)."""
    judges = ", ".join(sorted(start_judges(error, profile)))
    return f"{NOT_RUN_PREFIX}the worker never started ({judges}): {error.headline}"


def _message(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return grpc_status(error)
    return str(error).strip() or type(error).__name__


def grpc_status(error: grpc.RpcError) -> str:
    """A call's end as data: status code, details and the trailing metadata the worker sent."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    text = f"gRPC {code.name if code else 'status unknown'}: {details!s}"
    if trailing:
        text += "; trailing metadata: " + ", ".join(f"{item.key}={item.value!r}" for item in trailing)
    return text


def _classify(report: pytest.TestReport, call: pytest.CallInfo[None], clause_id: str,
              profile: Profile | None) -> tuple[Outcome, str]:
    """This phase's outcome: FAIL only when the worker broke the contract, ERROR when the harness failed."""
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, WorkerStartError) and error.unstartable and profile is not None:
        # One cause, judged once: by the clauses of the step that failed, in any phase; other checks did not run.
        if clause_id in start_judges(error, profile):
            return Outcome.FAIL, str(error)
        return Outcome.NOT_RUN, never_started(error, profile)
    if isinstance(error, WorkerUnreachable):
        return Outcome.NOT_RUN, f"{NOT_RUN_PREFIX}{error}"
    if report.passed:
        return Outcome.PASS, ""
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else report.longreprtext
        reason = reason.removeprefix("Skipped: ")
        return (Outcome.NOT_RUN if reason.startswith(NOT_RUN_PREFIX) else Outcome.SKIP), reason
    excinfo = call.excinfo
    if excinfo is None:
        return Outcome.ERROR, report.longreprtext.strip()[-500:]
    if excinfo.errisinstance(ClauseTimeout):
        return Outcome.TIMEOUT, _message(excinfo.value)
    if excinfo.errisinstance(ContractViolation) or (call.when == "call" and excinfo.errisinstance(_WORKER_FAULTS)):
        return Outcome.FAIL, _message(excinfo.value)
    return Outcome.ERROR, f"{excinfo.typename} during {call.when}: {_message(excinfo.value)}"


def _attach_evidence(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None],
                     found: Clause, profile_name: str) -> None:
    """Requirement and repro, each worker's state and gRPC trace, stacks at a timeout, full worker output."""
    settings = item.config.stash[SETTINGS]
    report.sections.append((
        f"clause {found.id}",
        f"{found.level.value}: {found.requirement}\nReproduce: {settings.repro(found.id, profile_name, found.level)}",
    ))
    logs = {}
    extra: list[tuple[str, str]] = item.stash.get(EXTRA_EVIDENCE, [])
    report.sections += extra
    pooled = [w for launched in item.stash.get(LAUNCHED, []) for w in launched]
    for worker in dict.fromkeys([*item.stash.get(WORKERS, []), *pooled]):
        pid = worker.proc.pid if worker.proc else "-"
        report.sections.append((f"worker pid {pid}", worker.evidence()))
        if worker.output is not None:
            logs[f"{found.id}-{profile_name}-{pid}.log"] = (
                f"{worker.evidence()}\n--- full worker output (last 64 KiB) ---\n{worker.output.text()}")
    attached = item.stash.get(ATTACHED_CLIENT, None)
    if attached is not None:
        report.sections.append((f"worker at {attached.target}",
                                "--- gRPC trace (last calls) ---\n" + "\n".join(attached.trace)))
    if call.excinfo is not None and isinstance(call.excinfo.value, ClauseTimeout):
        report.sections.append(("thread dump at the deadline", call.excinfo.value.thread_dump))
    # Reports keep extra attributes across xdist, unlike sections nobody should print in full.
    report.worker_logs = logs  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = clause_of(item)
    if found is None:
        return report
    profile_name = _profile_name(item)
    outcome, reason = _classify(report, call, found.id, profile_of(item))
    stopped = stopped_by_heartbeat(item.stash.get(WORKERS, [])) if outcome is Outcome.FAIL else None
    if stopped is not None and found.id in HEARTBEAT_CLAUSES:
        # The monitor's own beat is the first cause; what the check saw afterwards (UNAVAILABLE) is its consequence.
        reason = f"{stopped}, the first cause. Then the check saw: {reason}"
    elif stopped is not None:
        # A later check on a worker the monitor stopped says nothing about its own clause.
        outcome, reason = Outcome.ERROR, (f"{stopped}; {found.id} could not be judged on it "
                                          f"(RPC-002 judges heartbeats). The check saw: {reason}")
    reason = visible(reason)
    if report.failed and (text := report.longreprtext) != visible(text):
        report.longrepr = visible(text)  # pytest prints this block: a worker's escape sequences stay visible text
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, WorkerStartError) and error.unstartable and outcome is Outcome.NOT_RUN \
            and profile_name not in _START_FAILURES_SHOWN:
        # Once per process and profile: the exit status and last output, for a run where no judge of the start ran.
        _START_FAILURES_SHOWN.add(profile_name)
        report.sections.append((f"worker that never started under {profile_name}", str(error)))
    if outcome is Outcome.NOT_RUN and report.failed:
        # Not run for a cause reported once elsewhere (a worker that cannot start or be reached): a skip to pytest,
        # so no block of pytest frames repeats that cause for every check.
        report.outcome, report.longrepr = "skipped", (str(item.path), item.location[1] or 0, reason)
    report.user_properties += [
        ("clause", found.id), ("level", found.level.value), ("profile", profile_name),
        ("outcome", outcome.value), ("reason", reason),
    ]
    tools = item.stash.get(TOOLS, None)
    if tools is not None:
        # A plain str: xdist sends only built-in types (the catalogue's reason may be a str subclass).
        report.user_properties.append(("contract_tools", str(tools) if isinstance(tools, str) else sorted(tools)))
    if report.failed:
        _attach_evidence(item, report, call, found, profile_name)
    return report


def pytest_report_teststatus(
    report: pytest.TestReport | pytest.CollectReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    """pytest's own tally (its last line) says what the suite means: not applicable and not run, not "skipped"."""
    # A module skipped at collection reaches this hook as a CollectReport (under xdist), with no user properties.
    props = dict(getattr(report, "user_properties", ()))
    if not report.skipped or "outcome" not in props:
        return None
    if str(props["reason"]).startswith(NOT_APPLICABLE_PREFIX):
        return "not applicable", "n", "NOT APPLICABLE"
    if props["outcome"] == Outcome.NOT_RUN.value:
        return "not run", "N", "NOT-RUN"
    return None


def _evidence(report: pytest.TestReport) -> list[Evidence]:
    """Our sections of a failed phase (the requirement and repro are fields of the result instead)."""
    found = [Evidence(title, visible(text if len(text) <= _EVIDENCE_LIMIT else "[...]\n" + text[-_EVIDENCE_LIMIT:]))
             for title, text in report.sections
             if title.startswith(("worker ", "thread dump", "scenario "))]
    if report.failed and not any(t.startswith("worker") for t, _ in report.sections):
        found.append(Evidence(f"traceback ({report.when})",
                              visible("\n".join(report.longreprtext.splitlines()[-40:]))))
    return found


def _without_group(nodeid: str) -> str:
    """The test's own id: xdist's loadgroup appends "@<group>" to the ids of grouped tests."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


class _Collector:
    """Folds phase reports into one record per clause test, on the xdist controller or the only process."""

    def __init__(self) -> None:
        self.records: dict[str, CheckRecord] = {}
        self.tools: list[str] | str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "outcome" not in props:
            return
        nodeid = _without_group(report.nodeid)
        record = self.records.setdefault(nodeid, CheckRecord(nodeid, str(props["clause"]), str(props["profile"])))
        record.add_phase(report.when, Outcome(props["outcome"]), str(props["reason"]), report.duration,
                         [e for e in _evidence(report) if e.title not in {x.title for x in record.evidence}],
                         getattr(report, "worker_logs", None))
        if self.tools is None and "contract_tools" in props:
            self.tools = props["contract_tools"]  # type: ignore[assignment]


# The clause a shared worker's death outside any check FAILs: it exited on its own while no check was running.
PROCESS_HEALTH = "PROC-012"


def shared_deaths_file(run_dir: Path, profile_name: str) -> Path:
    """Where the processes of a run note the shared workers that died between checks (plugin.SharedWorker)."""
    return run_dir / f"shared-worker-deaths-{profile_name}.jsonl"


def fold_shared_deaths(config: pytest.Config, results: list[ClauseResult]) -> None:
    """FAIL PROC-012 of each profile with the deaths of its shared workers between checks, evidence and all."""
    factory = getattr(config, "_tmp_path_factory", None)  # the run's folder: xdist makes each process's below it
    if factory is None:
        return
    run_dir = factory.getbasetemp()
    for result in results:
        if result.clause.id != PROCESS_HEALTH or not (path := shared_deaths_file(run_dir, result.profile)).exists():
            continue
        deaths = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if not deaths:
            continue
        if SEVERITY[result.outcome] < SEVERITY[Outcome.FAIL]:
            result.outcome = Outcome.FAIL
            result.reason = "\n".join(d["reason"] for d in deaths)
        else:
            result.reason += "\n" + "\n".join(d["reason"] for d in deaths)
        result.evidence += [Evidence(f"shared worker pid {d['pid']}", visible(d["evidence"][-_EVIDENCE_LIMIT:]))
                            for d in deaths]


def _build_report(config: pytest.Config, interrupted: bool) -> RunReport:
    settings, collector = config.stash[SETTINGS], config.stash[_COLLECTOR]
    chosen = plan(REGISTRY.values(), [p.name for p in settings.profiles], settings.only, settings.skip)
    results = fold(collector.records.values(), chosen, LEVELS[settings.level],
                   lambda c, p: settings.repro(c.id, p, c.level), interrupted)
    fold_shared_deaths(config, results)
    problems = settings.baseline.apply(results, date.today()) if settings.baseline else []
    worker = settings.describe_worker()
    if isinstance(collector.tools, list):
        worker = replace(worker, tools=tuple(collector.tools))
    elif isinstance(collector.tools, str):
        worker = replace(worker, tools_note=collector.tools)
    extras = config.stash.get(EXTRAS, ReportExtras())
    return RunReport(
        mutation_score=extras.mutation_score, bench=extras.bench,
        suite_version=__version__, started_at=config.stash[_STARTED], finished_at=datetime.now(UTC),
        worker=worker, profiles=[p.name for p in settings.profiles], level=settings.level,
        only=settings.only, skip=settings.skip, not_selected=chosen.not_selected,
        not_applicable=chosen.not_applicable, results=results, interrupted=interrupted,
        baseline=str(settings.baseline.path) if settings.baseline else None, problems=problems,
        processes=_processes(config),
    )


def _processes(config: pytest.Config) -> int:
    """How many pytest processes ran checks: xdist's resolved -n, else this one."""
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) and count > 0 else 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    settings = config.stash[SETTINGS]
    wanted = settings.report_dir is not None or settings.results_path is not None
    if hasattr(config, "workerinput") or not (wanted or config.stash[_COLLECTOR].records):
        return
    built = _build_report(config, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
    config.stash[REPORT] = built
    try:
        if settings.report_dir is not None:
            report.write_all(built, settings.report_dir)
        if settings.results_path is not None:
            settings.results_path.parent.mkdir(parents=True, exist_ok=True)
            settings.results_path.write_text(json_report.render(built), encoding="utf-8")
    except OSError as err:
        # The verdict stands, but a run whose report is lost gives none: exit 2 (cli.py), with one line saying why.
        config.stash[REPORT_WRITE_ERROR] = f"the report could not be written: {err}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    built = config.stash.get(REPORT, None)
    if built is not None:
        terminalreporter.section("snakepit-contract")
        lost = config.stash.get(REPORT_WRITE_ERROR, None)
        for line, markup in terminal.summary_lines(built, None if lost else config.stash[SETTINGS].report_dir):
            terminalreporter.write_line(line, **markup)
        if lost:
            terminalreporter.write_line(f"No verdict: {lost}", red=True, bold=True)
