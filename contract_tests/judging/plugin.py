"""pytest plugin: options, clause selection and fixtures of the conformance suite.

Registered through the `pytest11` entry point; inert unless clause tests run.
Options and their resolution live in settings.py; verdicts, deadlines and the
report in verdicts.py, registered by this plugin once settings are resolved. Fixtures launch the worker as
Snakepit does (as a process, or with --worker-image as a container), or, in
attach mode (--worker-address), reach a running one; then checks that need the
process are NOT-RUN with the reason, as are, with an image, the checks marked
not_in_container, and, where the OS hides other processes' environments, those marked
reads_process_environments.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from contract_tests.contract.clause import REGISTRY
from contract_tests.contract.profiles import Profile
from contract_tests.driver import launcher, processes
from contract_tests.driver.client import WorkerClient
from contract_tests.driver.ownership import sweep_dead_runs
from contract_tests.driver.visible import visible
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.scenarios import shared_scenario
from contract_tests.errors import ContractViolation, WorkerStartError, WorkerUnreachable
from contract_tests.judging import verdicts
from contract_tests.judging.settings import SETTINGS, Settings, add_options, resolve_settings
from contract_tests.judging.verdicts import (
    ATTACHED_CLIENT,
    PROCESS_HEALTH,
    TOOLS,
    WORKERS,
    clause_of,
    never_started,
    profile_of,
    start_judges,
)
from contract_tests.protocol.codec import ToolError, ToolReply, parse_error
from contract_tests.report.model import NOT_APPLICABLE_PREFIX, NOT_RUN_PREFIX, matches, plan

# In attach mode a check runs only if every fixture it uses is known to leave the process alone; any other
# (launch, worker, host, pools, scenarios...) launches, signals or watches a process, or stands in for Elixir.
ATTACH_SAFE_FIXTURES = frozenset({
    "client", "attached_client", "catalogue", "contract_settings", "profile", "_required_tools",
    "request", "pytestconfig", "tmp_path", "tmp_path_factory",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _interrupt_on_sigterm() -> None:
    """CI runners stop jobs with SIGTERM: turn it into Ctrl-C so teardown still stops every worker."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Once the session is over there is nothing left to tear down: a late SIGTERM just ends the process.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.default_int_handler:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_configure(config: pytest.Config) -> None:
    _interrupt_on_sigterm()
    config.addinivalue_line("markers", "clause(id): the contract clause this test checks")
    config.addinivalue_line("markers", "requires_tools(*names): contract tools the check needs")
    config.addinivalue_line("markers", "not_in_container(reason): NOT-RUN when the worker runs as a container")
    config.addinivalue_line("markers", "reads_process_environments: NOT-RUN where the OS hides them (processes.py)")
    config.addinivalue_line("markers", "watches(seconds): how long the check waits by design (it starts first)")
    config.stash[SETTINGS] = resolve_settings(config)
    launcher.forget_starts()
    _unreachable.clear()
    # The xdist controller, or the only process: once per run, before any worker of its own starts.
    if not hasattr(config, "workerinput") and (line := sweep_dead_runs().line()):
        sys.stderr.write(line + "\n")
    if config.stash[SETTINGS].worker_image:
        from contract_tests.driver import container

        if not hasattr(config, "workerinput"):  # the xdist controller, or the only process
            container.claim_run_label()
        container.sweep_orphans()  # containers a crashed earlier run left behind
    config.pluginmanager.register(verdicts, "snakepit-contract-verdicts")


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    worker = settings.describe_worker()
    source = settings.sources[{"address": "worker-address", "image": "worker-image"}.get(worker.kind, "worker-cmd")]
    return [
        f"snakepit-contract: worker {worker.target!r} ({'attached, ' if worker.kind == 'address' else ''}{source}); "
        "profiles " + ", ".join(p.name for p in settings.profiles)
        + f"; level {settings.level}; timeout scale {settings.timeout_scale}"
        + (f"; baseline {settings.baseline.path}" if settings.baseline else "")
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Only clause tests: other tests may use the name `profile` for their own purposes.
    if "profile" in metafunc.fixturenames and metafunc.definition.get_closest_marker("clause"):
        profiles = metafunc.config.stash[SETTINGS].profiles
        metafunc.parametrize("profile", profiles, ids=[p.name for p in profiles], scope="module")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS]
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        found = clause_of(item)
        selected = found is None or matches(found.id, settings.only, settings.skip)
        (keep if selected else dropped).append(item)
        if found and selected and hasattr(item, "callspec"):
            profile = item.callspec.params.get("profile")
            if isinstance(profile, Profile) and not found.applies_to(profile):
                item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE_PREFIX}{found.id} applies only where "
                                                        f"{found.applies} (releases.toml)"))
        unsafe = sorted(set(getattr(item, "fixturenames", ())) - ATTACH_SAFE_FIXTURES)
        if found and selected and settings.worker_address and unsafe:
            item.add_marker(pytest.mark.skip(reason=f"{NOT_RUN_PREFIX}attached to a running worker, and this check "
                                                    f"launches or watches worker processes ({', '.join(unsafe)})"))
        if found and selected:
            _group_shared_worker_checks(item)
        in_container = item.get_closest_marker("not_in_container")
        if found and selected and settings.worker_image and in_container:
            item.add_marker(pytest.mark.skip(reason=f"{NOT_RUN_PREFIX}the worker runs in a container: "
                                                    f"{in_container.args[0]}"))
        hidden = not processes.ENVIRONMENTS_READABLE and item.get_closest_marker("reads_process_environments")
        if found and selected and hidden:
            item.add_marker(pytest.mark.skip(reason=f"{NOT_RUN_PREFIX}{processes.ENVIRONMENTS_HIDDEN}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if getattr(config.option, "loadgroup", False):
        _groups_into_ids(items)


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")  # after pytest's own reordering
def pytest_collection_modifyitems_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist hands out work in this order (cli.py turns its own reordering off): the checks that wait longest
    first, then the groups of checks sharing a worker (each a chain on one process), then the rest."""
    if getattr(config.option, "loadgroup", False):
        items.sort(key=lambda item: (-_watch_s(item), item.get_closest_marker("xdist_group") is None))


def _watch_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("watches")
    return float(marker.args[0]) if marker else 0.0


def _groups_into_ids(items: list[pytest.Item]) -> None:
    """Puts each test's groups into its id, where xdist's loadgroup scheduler looks for them.

    xdist 3.8 writes the "@group" suffix to a field pytest 9.2 no longer reads ids from, so grouped checks would
    run anywhere, each process starting its own shared worker (pytest-xdist issue #1386). Where the id is still
    that field (older pytest), xdist's own hook, after this one, adds the suffix."""
    for item in items:
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group") if mark.args})
        structured = getattr(item, "_id", None)
        if groups and "@" not in item.nodeid and structured is not None and hasattr(structured, "parse"):
            item._id = structured.parse(f"{item.nodeid}@{'_'.join(groups)}")


# Fixtures that start or watch workers of their own: a check using one mostly waits, so it runs on any xdist
# process, alone, next to the others. A check using only the module's shared worker runs with the module's other
# such checks on one process (--dist loadgroup), so the shared worker starts once per module and profile.
_OWN_WORKER_FIXTURES = frozenset({"launch", "make_pool", "run_scenario"})
_SHARED_WORKER_FIXTURES = frozenset({"client", "worker", "shared_worker"})


def _group_shared_worker_checks(item: pytest.Item) -> None:
    used = set(getattr(item, "fixturenames", ()))
    profile = item.callspec.params.get("profile") if hasattr(item, "callspec") else None
    if isinstance(profile, Profile) and used & _SHARED_WORKER_FIXTURES and not used & _OWN_WORKER_FIXTURES:
        item.add_marker(pytest.mark.xdist_group(f"{item.path.stem}-{profile.name}"))
    # Checks of clauses that one scenario checks together share one run of it (clauses/conftest.py).
    found = clause_of(item)
    if isinstance(profile, Profile) and "run_scenario" in used and found and (shared := shared_scenario(found.id)):
        item.add_marker(pytest.mark.xdist_group(f"scenario-{shared}-{profile.name}"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A worker that cannot start (or be reached) under this profile is judged by the clauses of the step that
    failed; the other checks are NOT-RUN at once with that cause, before any of their fixtures is set up."""
    found, profile = clause_of(item), profile_of(item)
    if found is None or profile is None:
        return
    settings = item.config.stash[SETTINGS]
    if settings.worker_address is not None:
        if (why := _unreachable.get((settings.worker_address, profile.name))) is not None:
            pytest.skip(f"{NOT_RUN_PREFIX}{why}")
        return
    error = launcher.unstartable(profile.name)
    if error is not None and found.id not in start_judges(error, profile):
        pytest.skip(never_started(error, profile))


def pytest_sessionfinish(session: pytest.Session) -> None:
    launcher.stop_all()
    if session.config.stash[SETTINGS].worker_image:
        from contract_tests.driver import container

        container.remove_owned()
        if not hasattr(session.config, "workerinput"):  # the xdist controller, or the only process
            container.remove_run()


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def contract_settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig.stash[SETTINGS]


@pytest.fixture(scope="module")
def host(profile: Profile) -> Iterator[HostEmulator]:
    """The emulated Elixir side (BridgeServer + SessionStore) for this profile."""
    with HostEmulator(profile) as emulator:
        yield emulator


Launch = Callable[..., launcher.WorkerProcess]


def _spec(settings: Settings, profile: Profile, host: HostEmulator, **overrides: Any) -> launcher.WorkerSpec:
    return launcher.WorkerSpec(
        command=settings.worker_cmd,
        profile=profile,
        elixir_address=host.elixir_address_for_worker,
        timeout_scale=settings.timeout_scale,
        image=settings.worker_image,
        **overrides,
    )


class SharedWorker:
    """The module's long-lived worker; relaunched if it died, and each death it caused itself is reported.

    Snakepit treats any exit of a worker as a crash (PROC-012). A death during a check FAILs that check (at its
    teardown). One between checks, or after the last, happened while no check was running: it FAILs PROC-012 of the
    profile when the run judges PROC-012 there (`deaths`, a file the report reads: verdicts.SHARED_DEATHS), else the
    next check that asks for the worker. Either way a worker that keeps dying is never judged on its fresh copies
    alone, and the check after a death is judged on a fresh copy by its own clause.
    """

    def __init__(self, make: Callable[[], launcher.WorkerProcess], deaths: Path | None = None) -> None:
        self._make = make
        self._deaths = deaths
        self.current: launcher.WorkerProcess | None = None
        self.restarts = 0
        self.last_check = "its start"

    def get(self) -> launcher.WorkerProcess:
        if self.current is not None and not self.current.is_alive():
            died = self.current
            self.current, self.restarts = None, self.restarts + 1
            died.stop()
            if (death := _own_death(died)) is not None:
                self._between_checks(died, f"the shared worker exited between checks, after {self.last_check}; "
                                           f"relaunched (restart {self.restarts})", death)
        if self.current is None:
            self.current = self._make().__enter__()
        return self.current

    def check_alive(self, worker: launcher.WorkerProcess, check: str) -> None:
        """At the end of a check: FAIL it if the worker it used exited on its own meanwhile."""
        self.last_check = check
        if worker is self.current and not worker.is_alive():
            self.current, self.restarts = None, self.restarts + 1
            worker.stop()
            if (death := _own_death(worker)) is not None:
                raise ContractViolation(f"the shared worker exited during this check; relaunched (restart "
                                        f"{self.restarts})", "still running", death)

    def close(self) -> None:
        died = self.current
        if died is None:
            return
        self.current = None
        alive = died.is_alive()
        died.stop()
        if not alive and (death := _own_death(died)) is not None:
            self._between_checks(died, f"the shared worker exited after its last check, {self.last_check}", death)

    def _between_checks(self, died: launcher.WorkerProcess, what: str, death: str) -> None:
        if self._deaths is None:
            raise ContractViolation(what, "still running", death)
        record = json.dumps({"reason": f"{what}\nExpected: still running\nActual:   {death}",
                             "evidence": died.evidence(), "pid": died.pid})
        with open(self._deaths, "a", encoding="utf-8") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(record + "\n")


def _own_death(worker: launcher.WorkerProcess) -> str | None:
    """How a worker ended when nothing of the kit's stopped it (Snakepit treats any exit as a crash), else None."""
    if verdicts.stopped_by_heartbeat([worker]) is not None:
        return None  # the heartbeat monitor stopped it; RPC-002 judges that
    after = f", {time.monotonic() - worker.ready_at:.1f} s after readiness" if worker.ready_at is not None else ""
    return f"exit status {worker.poll()}{after} (PROC-012: a worker MUST NOT exit on its own)"


@pytest.fixture(scope="module")
def shared_worker(
    contract_settings: Settings, profile: Profile, host: HostEmulator, _shared_run_dir: Path
) -> Iterator[SharedWorker]:
    chosen = plan(REGISTRY.values(), [profile.name], contract_settings.only, contract_settings.skip)
    judged = any(found.id == PROCESS_HEALTH for found, _ in chosen.pairs)
    shared = SharedWorker(lambda: launcher.WorkerProcess(_spec(contract_settings, profile, host, standard=True)),
                          verdicts.shared_deaths_file(_shared_run_dir, profile.name) if judged else None)
    yield shared
    shared.close()


@pytest.fixture
def worker(shared_worker: SharedWorker, request: pytest.FixtureRequest) -> Iterator[launcher.WorkerProcess]:
    """A ready worker shared by the module's non-destructive checks."""
    current = shared_worker.get()
    request.node.stash.setdefault(WORKERS, []).append(current)
    yield current
    found = clause_of(request.node)
    shared_worker.check_alive(current, found.id if found else request.node.name)


# Attach mode: the addresses (and profiles) whose handshake Ping failed, asked once per run, not per module.
_unreachable: dict[tuple[str, str], str] = {}


def reach(address: str, profile: Profile, timeout_s: float) -> WorkerClient:
    """A client of the worker at the address after Snakepit's handshake Ping; WorkerUnreachable if none answers."""
    if (known := _unreachable.get((address, profile.name))) is not None:
        raise WorkerUnreachable(known)
    client = WorkerClient(address, profile)
    try:
        client.ping("connection_test", timeout=timeout_s)
    except grpc.RpcError as err:
        client.close()
        _unreachable[address, profile.name] = why = (
            f"cannot reach the worker at {address}: Ping failed with {err.code().name} {visible(str(err.details()))}")
        raise WorkerUnreachable(why) from None
    return client


@pytest.fixture(scope="module")
def attached_client(contract_settings: Settings, profile: Profile) -> Iterator[WorkerClient]:
    """Attach mode: a client of the worker at --worker-address, handshaken as Snakepit does (no heartbeats)."""
    address = contract_settings.worker_address
    assert address is not None
    client = reach(address, profile, 10 * contract_settings.timeout_scale)
    if profile.initializes_worker_session:
        with contextlib.suppress(grpc.RpcError):  # Snakepit ignores the answer too (launcher.after_handshake)
            client.initialize_session()
    yield client
    client.close()


@pytest.fixture
def client(contract_settings: Settings, profile: Profile, request: pytest.FixtureRequest) -> WorkerClient:
    """The worker's client: the shared worker's, or the attached worker's (no process fixtures in attach mode)."""
    if contract_settings.worker_address is not None:
        attached: WorkerClient = request.getfixturevalue("attached_client")
        request.node.stash[ATTACHED_CLIENT] = attached
        return attached
    worker: launcher.WorkerProcess = request.getfixturevalue("worker")
    assert worker.client is not None
    return worker.client


@pytest.fixture
def launch(
    contract_settings: Settings, profile: Profile, host: HostEmulator, request: pytest.FixtureRequest
) -> Iterator[Launch]:
    """Factory for fresh workers (destructive checks); all are stopped at teardown."""
    started: list[launcher.WorkerProcess] = []

    def make(
        *, start: bool = True, on_host: HostEmulator | None = None, elixir_address: str | None = None,
        **overrides: Any,
    ) -> launcher.WorkerProcess:
        # Only a launch as Snakepit does it, with no check's overrides, can show the worker cannot start at all.
        standard = not overrides and on_host is None and elixir_address is None
        spec = _spec(contract_settings, profile, on_host or host, standard=standard, **overrides)
        if elixir_address is not None:
            spec.elixir_address = elixir_address
        worker = launcher.WorkerProcess(spec)
        started.append(worker)
        request.node.stash.setdefault(WORKERS, []).append(worker)
        try:
            if start:
                worker.start()
            else:
                worker.spawn()
        except WorkerStartError as err:
            if worker.proc is None:  # not launched (a known start failure): it has no evidence of its own
                request.node.stash[WORKERS].remove(worker)
            if not standard and not err.unstartable and not launcher.has_started(spec):
                plain = _plain_start_error(_spec(contract_settings, profile, host, standard=True), request)
                if plain is not None:
                    raise plain from None
            raise
        return worker

    yield make
    for worker in started:
        worker.stop()


def _plain_start_error(spec: launcher.WorkerSpec, request: pytest.FixtureRequest) -> WorkerStartError | None:
    """Why the worker cannot start at all as Snakepit launches it, asked when a check's own variant of the launch
    failed before any plain start in this process: a worker that never starts is then NOT-RUN there as everywhere,
    and only a variant that fails where the plain launch starts is the check's FAIL."""
    plain = launcher.WorkerProcess(spec)
    request.node.stash.setdefault(WORKERS, []).append(plain)
    try:
        plain.start()
    except WorkerStartError as err:
        return err if err.unstartable else None
    finally:
        plain.stop()
    return None


def _brief(error: ToolError | None) -> str:
    """One short line for a skip reason: type and message, or the first line of the raw text."""
    if error is None:
        return "no error message"
    text = f"{error.type}: {error.message}" if error.structured else error.raw.strip().split("\n", 1)[0]
    return text if len(text) <= 120 else text[:117] + "..."


@pytest.fixture(scope="session")
def _shared_run_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist process of this run sees (each has its own basetemp below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base


class UnreadableCatalogue(str):
    """Why a worker that offers contract.catalogue could not be read for it: a defect (TOOL-022), not a capability.

    A str, so code that only tells tools from "none" still skips on it; the checks that need the catalogue are NOT-RUN
    on it instead, with one reason, and TOOL-022 FAILs: a broken catalogue must never turn the run into skips alone.
    """


# A tool no worker has: how a worker answers it is how it answers a tool it does not offer.
UNKNOWN_TOOL = "contract.no-such-tool"
_REPR_LIMIT = 120


@pytest.fixture(scope="module")
def catalogue(
    contract_settings: Settings, profile: Profile, request: pytest.FixtureRequest, _shared_run_dir: Path
) -> frozenset[str] | str:
    """The contract tools the worker implements under this profile, or why none could be listed.

    Asked once per profile and run: the first process to need it asks its shared worker and leaves the answer
    for the others, so a process running only checks with workers of their own starts no shared worker for it.
    """
    if contract_settings.worker_address is not None:
        return read_catalogue(request.getfixturevalue("attached_client"), contract_settings)
    known = _shared_run_dir / f"catalogue-{profile.name}.json"
    with open(known.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if known.exists():
            answer = json.loads(known.read_text(encoding="utf-8"))
            if isinstance(answer, dict):
                return UnreadableCatalogue(answer["unreadable"])
            return frozenset(answer) if isinstance(answer, list) else str(answer)
        client = request.getfixturevalue("shared_worker").get().client
        assert client is not None
        found = read_catalogue(client, contract_settings)
        stored = sorted(found) if isinstance(found, frozenset) else \
            {"unreadable": str(found)} if isinstance(found, UnreadableCatalogue) else found
        known.write_text(json.dumps(stored), encoding="utf-8")
        return found


def read_catalogue(client: WorkerClient, settings: Settings) -> frozenset[str] | str:
    """The tools contract.catalogue lists; why the worker offers none (it answers the catalogue as it answers a tool
    it does not have); or, an UnreadableCatalogue, why a catalogue it does offer could not be read."""
    timeout = 10 * settings.timeout_scale
    answer = _ask(client, "contract.catalogue", timeout)
    if isinstance(answer, grpc.RpcError) or not answer.ok:
        # A worker may refuse an unknown tool with a status: then it has no catalogue either.
        unknown = _ask(client, UNKNOWN_TOOL, timeout)
        if _answer_kind(answer, "contract.catalogue") == _answer_kind(unknown, UNKNOWN_TOOL):
            return f"worker does not implement the contract tool catalogue ({_describe(answer)})"
        return UnreadableCatalogue(f"contract.catalogue ended with {_describe(answer)}, unlike a tool the worker "
                                   f"does not have ({UNKNOWN_TOOL}: {_describe(unknown)})")
    tools = answer.value.get("tools") if isinstance(answer.value, dict) else None
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        got = repr(answer.value) if answer.response.HasField("result") else "no result"
        got = got if len(got) <= _REPR_LIMIT else got[:_REPR_LIMIT - 3] + "..."
        return UnreadableCatalogue(f"contract.catalogue returned {got}, not the JSON text of {{\"tools\": [names]}}")
    return frozenset(tools)


def _ask(client: WorkerClient, tool: str, timeout: float) -> ToolReply | grpc.RpcError:
    try:
        return client.execute(tool, {}, timeout=timeout)
    except grpc.RpcError as err:
        return err


def _describe(answer: ToolReply | grpc.RpcError) -> str:
    if isinstance(answer, grpc.RpcError):
        return f"gRPC {answer.code().name}: {answer.details()}"
    return "success=true" if answer.ok else _brief(parse_error(answer.response.error_message, json_errors=True))


def _answer_kind(answer: ToolReply | grpc.RpcError, tool: str) -> tuple[str, str]:
    """What kind of answer a call got, its tool's name left out: a status code, an error type, or the error text."""
    if isinstance(answer, grpc.RpcError):
        return "status", answer.code().name
    if answer.ok:
        return "success", ""
    raw = answer.response.error_message
    error = parse_error(raw, json_errors=True)  # a worker may send JSON errors under the 0.6 rules too
    return ("error type", str(error.type)) if error.structured else ("error", raw.replace(tool, "<tool>"))


def skip_unless_listed(catalogue: frozenset[str] | str) -> frozenset[str]:
    """The tools the worker lists; else the check is SKIP (no catalogue offered) or NOT-RUN (one offered but
    unreadable: TOOL-022 FAILs for it, and nothing that needs it may pass as skipped)."""
    if isinstance(catalogue, UnreadableCatalogue):
        pytest.skip(f"{NOT_RUN_PREFIX}the worker's contract tool catalogue could not be read (TOOL-022): {catalogue}")
    if isinstance(catalogue, str):
        pytest.skip(f"capability: {catalogue}")
    return catalogue


@pytest.fixture(autouse=True)
def _required_tools(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("requires_tools")
    if marker is None or "profile" not in request.fixturenames:
        return
    available = request.getfixturevalue("catalogue")
    request.node.stash[TOOLS] = available
    missing = [t for t in marker.args if t not in skip_unless_listed(available)]
    if missing:
        pytest.skip(f"capability: worker does not implement {', '.join(missing)}")


__all__ = ["ContractViolation", "Launch", "Settings", "SharedWorker", "UnreadableCatalogue", "read_catalogue",
           "resolve_settings", "skip_unless_listed"]
