"""pytest plugin: options, fixtures and report hooks of the conformance suite.

Registered through the `pytest11` entry point; inert unless clause tests run.
Settings resolve in one place with the precedence CLI > environment > ini >
default, and bad values are usage errors that name their source.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contract_tests import launcher
from contract_tests.clause import REGISTRY, Clause
from contract_tests.client import WorkerClient
from contract_tests.codec import ToolError
from contract_tests.errors import ContractViolation
from contract_tests.host import HostEmulator
from contract_tests.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile

WORKER_CMD_HELP = "Worker command to test, as a shell-quoted string (default: the reference worker)"
PROFILE_HELP = "Snakepit profile: snakepit-0.6, snakepit-0.13 or all (default: snakepit-0.13)"
TIMEOUT_SCALE_HELP = "Multiply every contract deadline by this factor on slow machines (default: 1)"
ONLY_HELP = "Run only clauses whose id matches one of these comma-separated globs"
SKIP_HELP = "Skip clauses whose id matches one of these comma-separated globs"
RESULTS_HELP = "Write per-clause results as JSON to this file"
DEFAULT_WORKER_CMD = [sys.executable, "-m", "reference_worker"]

_SETTINGS = pytest.StashKey["Settings"]()
_RESULTS = pytest.StashKey["_Results"]()
_WORKERS = pytest.StashKey["list[launcher.WorkerProcess]"]()


@dataclass(frozen=True)
class Settings:
    """Resolved options of a suite run."""

    worker_cmd: tuple[str, ...]
    profiles: tuple[Profile, ...]
    timeout_scale: float
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    results_path: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def repro(self, clause_id: str, profile: str) -> str:
        """A one-line command that runs just this clause against the same worker."""
        return shlex.join(
            ["snakepit-contract", "run", "--only", clause_id, "--profile", profile,
             "--worker-cmd", shlex.join(self.worker_cmd)]
            + (["--timeout-scale", str(self.timeout_scale)] if self.timeout_scale != 1 else [])
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("snakepit-contract", "Snakepit worker conformance")
    for name, help_text in (
        ("worker-cmd", WORKER_CMD_HELP),
        ("profile", PROFILE_HELP),
        ("timeout-scale", TIMEOUT_SCALE_HELP),
        ("only", ONLY_HELP),
        ("skip", SKIP_HELP),
        ("contract-json", RESULTS_HELP),
    ):
        group.addoption(f"--{name}", dest=name.replace("-", "_"), default=None, help=help_text)
        parser.addini(f"contract_{name.replace('-', '_')}", help_text, default=None)


def _lookup(config: pytest.Config, name: str) -> tuple[str | None, str]:
    """The raw value of a setting and where it came from."""

    value = config.getoption(name.replace("-", "_"))
    if value is not None:
        return value, f"--{name}"
    env = "SNAKEPIT_CONTRACT_" + name.replace("-", "_").upper()
    if os.environ.get(env):
        return os.environ[env], env
    ini = config.getini(f"contract_{name.replace('-', '_')}")
    if ini:
        return str(ini), "ini file"
    return None, "default"


def _validate_profiles(value: str | None, where: str) -> tuple[Profile, ...]:
    if value is None:
        return (get_profile(DEFAULT_PROFILE),)
    if value == "all":
        return tuple(PROFILES.values())
    try:
        return tuple(get_profile(name.strip()) for name in value.split(","))
    except ValueError as err:
        raise pytest.UsageError(f"Invalid profile from {where}: {err}") from None


def _validate_timeout_scale(value: str | None, where: str) -> float:
    if value is None:
        return 1.0
    try:
        scale = float(value)
    except ValueError:
        scale = -1.0
    if not 0.1 <= scale <= 100:
        raise pytest.UsageError(f"Invalid timeout scale {value!r} from {where}: expected a number in 0.1..100")
    return scale


def _validate_worker_cmd(value: str | None, where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(DEFAULT_WORKER_CMD)
    try:
        argv = shlex.split(value)
    except ValueError as err:
        raise pytest.UsageError(f"Invalid worker command from {where}: {err}") from None
    if not argv:
        raise pytest.UsageError(f"Invalid worker command from {where}: it is empty")
    if shutil.which(argv[0]) is None:
        raise pytest.UsageError(
            f"Invalid worker command from {where}: {argv[0]!r} is not an executable file or on PATH"
        )
    return tuple(argv)


def _globs(value: str | None) -> tuple[str, ...]:
    return tuple(g.strip() for g in (value or "").split(",") if g.strip())


def resolve_settings(config: pytest.Config) -> Settings:
    values = {name: _lookup(config, name) for name in
              ("worker-cmd", "profile", "timeout-scale", "only", "skip", "contract-json")}
    results = values["contract-json"][0]
    return Settings(
        worker_cmd=_validate_worker_cmd(*values["worker-cmd"]),
        profiles=_validate_profiles(*values["profile"]),
        timeout_scale=_validate_timeout_scale(*values["timeout-scale"]),
        only=_globs(values["only"][0]),
        skip=_globs(values["skip"][0]),
        results_path=Path(results) if results else None,
        sources={name: where for name, (_, where) in values.items()},
    )


def _interrupt_on_sigterm() -> None:
    """CI runners stop jobs with SIGTERM: turn it into Ctrl-C so teardown still stops every worker."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    _interrupt_on_sigterm()
    config.addinivalue_line("markers", "clause(id): the contract clause this test checks")
    config.addinivalue_line("markers", "requires_tools(*names): contract tools the check needs")
    config.stash[_SETTINGS] = resolve_settings(config)
    config.stash[_RESULTS] = _Results()
    config.pluginmanager.register(config.stash[_RESULTS], "snakepit-contract-results")


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[_SETTINGS]
    return [
        f"snakepit-contract: worker {shlex.join(settings.worker_cmd)!r} "
        f"({settings.sources['worker-cmd']}); profiles "
        + ", ".join(p.name for p in settings.profiles)
        + f"; timeout scale {settings.timeout_scale}"
    ]


def _clause_of(item: pytest.Item) -> Clause | None:
    marker = item.get_closest_marker("clause")
    return REGISTRY.get(marker.args[0]) if marker else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Only clause tests: other tests may use the name `profile` for their own purposes.
    if "profile" in metafunc.fixturenames and metafunc.definition.get_closest_marker("clause"):
        profiles = metafunc.config.stash[_SETTINGS].profiles
        metafunc.parametrize("profile", profiles, ids=[p.name for p in profiles], scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[_SETTINGS]
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        found = _clause_of(item)
        selected = found is None or (
            (not settings.only or any(fnmatch.fnmatchcase(found.id, g) for g in settings.only))
            and not any(fnmatch.fnmatchcase(found.id, g) for g in settings.skip)
        )
        (keep if selected else dropped).append(item)
        if found and selected and hasattr(item, "callspec"):
            profile = item.callspec.params.get("profile")
            if isinstance(profile, Profile) and profile.name not in found.profiles:
                only = ", ".join(sorted(found.profiles))
                item.add_marker(pytest.mark.skip(reason=f"profile: {found.id} applies to {only} only"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = _clause_of(item)
    if found is None:
        return report
    callspec = getattr(item, "callspec", None)
    profile = callspec.params.get("profile") if callspec else None
    profile_name = profile.name if isinstance(profile, Profile) else ""
    report.user_properties.append(("clause", found.id))
    report.user_properties.append(("level", found.level.value))
    report.user_properties.append(("profile", profile_name))
    if report.failed:
        settings = item.config.stash[_SETTINGS]
        report.sections.append((
            f"clause {found.id}",
            f"{found.level.value}: {found.requirement}\nReproduce: {settings.repro(found.id, profile_name)}",
        ))
        for worker in item.stash.get(_WORKERS, []):
            report.sections.append((f"worker pid {worker.proc.pid if worker.proc else '-'}", worker.evidence()))
    return report


class _Results:
    """Collects one record per clause run, on the xdist controller or the only process."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "clause" not in props or (report.when != "call" and not (report.failed or report.skipped)):
            return
        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = crash.message if crash is not None else report.longreprtext.strip()[-500:]
        self.records.append({
            "clause": props["clause"], "level": props["level"], "profile": props["profile"],
            "outcome": "error" if report.failed and report.when != "call" else report.outcome,
            "phase": report.when, "duration_s": round(report.duration, 3), "reason": reason,
            "nodeid": report.nodeid,
        })


def pytest_sessionfinish(session: pytest.Session) -> None:
    launcher.stop_all()
    settings = session.config.stash[_SETTINGS]
    if settings.results_path is None or hasattr(session.config, "workerinput"):
        return
    results = sorted(session.config.stash[_RESULTS].records, key=lambda r: (r["clause"], r["profile"]))
    settings.results_path.parent.mkdir(parents=True, exist_ok=True)
    settings.results_path.write_text(json.dumps({
        "worker_cmd": list(settings.worker_cmd),
        "profiles": [p.name for p in settings.profiles],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exit_status": int(session.exitstatus),
        "results": results,
    }, indent=2) + "\n")


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def contract_settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig.stash[_SETTINGS]


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
        **overrides,
    )


class SharedWorker:
    """The module's long-lived worker; relaunched (and noted) if a check killed it."""

    def __init__(self, make: Callable[[], launcher.WorkerProcess]) -> None:
        self._make = make
        self.current: launcher.WorkerProcess | None = None
        self.restarts = 0

    def get(self) -> launcher.WorkerProcess:
        if self.current is not None and not self.current.is_alive():
            self.current.stop()
            self.current, self.restarts = None, self.restarts + 1
        if self.current is None:
            self.current = self._make().__enter__()
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()


@pytest.fixture(scope="module")
def shared_worker(contract_settings: Settings, profile: Profile, host: HostEmulator) -> Iterator[SharedWorker]:
    shared = SharedWorker(lambda: launcher.WorkerProcess(_spec(contract_settings, profile, host)))
    yield shared
    shared.close()


@pytest.fixture
def worker(shared_worker: SharedWorker, request: pytest.FixtureRequest) -> launcher.WorkerProcess:
    """A ready worker shared by the module's non-destructive checks."""
    current = shared_worker.get()
    request.node.stash.setdefault(_WORKERS, []).append(current)
    return current


@pytest.fixture
def client(worker: launcher.WorkerProcess) -> WorkerClient:
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
        spec = _spec(contract_settings, profile, on_host or host, **overrides)
        if elixir_address is not None:
            spec.elixir_address = elixir_address
        worker = launcher.WorkerProcess(spec)
        started.append(worker)
        request.node.stash.setdefault(_WORKERS, []).append(worker)
        if start:
            worker.start()
        else:
            worker.spawn()
        return worker

    yield make
    for worker in started:
        worker.stop()


def _brief(error: ToolError | None) -> str:
    """One short line for a skip reason: type and message, or the first line of the raw text."""
    if error is None:
        return "no error message"
    text = f"{error.type}: {error.message}" if error.structured else error.raw.strip().split("\n", 1)[0]
    return text if len(text) <= 120 else text[:117] + "..."


@pytest.fixture(scope="module")
def catalogue(shared_worker: SharedWorker) -> frozenset[str] | str:
    """The contract tools the worker implements, or why none could be listed."""
    client = shared_worker.get().client
    assert client is not None
    reply = client.execute("contract.catalogue", {}, timeout=10)
    if not reply.ok:
        return f"worker does not implement the contract tool catalogue ({_brief(reply.error)})"
    tools = reply.value.get("tools") if isinstance(reply.value, dict) else None
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        return f"contract.catalogue returned {reply.value!r}, not {{'tools': [names]}}"
    return frozenset(tools)


@pytest.fixture(autouse=True)
def _required_tools(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("requires_tools")
    if marker is None or "profile" not in request.fixturenames:
        return
    available = request.getfixturevalue("catalogue")
    if isinstance(available, str):
        pytest.skip(f"capability: {available}")
    missing = [t for t in marker.args if t not in available]
    if missing:
        pytest.skip(f"capability: worker does not implement {', '.join(missing)}")


__all__ = ["ContractViolation", "Launch", "Settings", "SharedWorker", "resolve_settings"]
