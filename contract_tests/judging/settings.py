"""Settings of a suite run: every option with its ini key and environment variable, resolved in one place.

Precedence is CLI > environment (SNAKEPIT_CONTRACT_*) > ini > default; each
value passes a `_validate_<name>(value, where)` that raises pytest.UsageError
naming the bad value and where it came from.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contract_tests.contract.clause import MUST, REGISTRY, SHOULD, Level
from contract_tests.contract.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile, select_releases
from contract_tests.report.baseline import Baseline, BaselineError, load_baseline
from contract_tests.report.model import LEVELS, WorkerInfo

WORKER_CMD_HELP = "Worker command to test, as a shell-quoted string (default: the reference worker)"
PROFILE_HELP = "Snakepit profile: snakepit-0.6 (= 0.6.0), snakepit-0.13 (= 0.13.0) or all (both); default: the newest"
VERSION_HELP = ("Snakepit release(s) to judge against: X.Y.Z, comma-separated, or a range FIRST..LAST "
                "(every release 0.6.0 … 0.13.0 of contract_tests/contract/releases.toml); default: the newest")
TIMEOUT_SCALE_HELP = ("Multiply the kit's own waits by this factor on slow machines (default: 1); the deadlines "
                      "it judges (Snakepit's, and clause bounds) are shrunk by a factor < 1 but never stretched")
ONLY_HELP = "Run only clauses whose id matches one of these comma-separated globs"
SKIP_HELP = "Skip clauses whose id matches one of these comma-separated globs"
RESULTS_HELP = "Write the conformance report as JSON to this file (conformance.json's schema)"
WORKER_IMAGE_HELP = ("Container image of the worker: each worker runs in its own container (host network) with the "
                     "image's ENTRYPOINT and Snakepit's flags; needs DOCKER_HOST and the containers extra")
WORKER_ADDRESS_HELP = "Attach to a worker already running at HOST:PORT instead of launching one"
LEVEL_HELP = "Levels that decide the verdict: must, should (MUST+SHOULD) or all (default: must)"
BASELINE_HELP = "TOML file of the worker's expected failures (XFAIL); see docs/report.md"
REPORT_DIR_HELP = "Write conformance.json, conformance.md, junit.xml, conformance.html and badge.svg here"
CLAUSE_TIMEOUT_HELP = "Seconds each phase of a clause test may take before it is a TIMEOUT, then scaled (default: 120)"
DEFAULT_WORKER_CMD = [sys.executable, "-m", "reference_worker"]
# Longer than any check's own waits (30 s readiness, then up to 30 s for PROC-013) so only a hang trips it.
DEFAULT_CLAUSE_TIMEOUT_S = 120.0


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
    worker_address: str | None = None
    level: str = "must"
    baseline: Baseline | None = None
    report_dir: Path | None = None
    clause_timeout_s: float = DEFAULT_CLAUSE_TIMEOUT_S
    worker_image: str | None = None

    def judged_s(self, seconds: float) -> float:
        """A deadline the contract sets (Snakepit's own, or a clause's bound): --timeout-scale may shrink it (the
        mutant tier does, to stay short) but never stretches it, so a slow worker cannot PASS by the scale."""
        return seconds * min(self.timeout_scale, 1.0)

    def repro(self, clause_id: str, profile: str, level: Level = MUST) -> str:
        """A one-line command that runs just this clause against the same worker, judged at its level."""
        worker = (["--worker-address", self.worker_address] if self.worker_address
                  else ["--worker-image", self.worker_image] if self.worker_image
                  else ["--worker-cmd", shlex.join(self.worker_cmd)])
        release = ["--profile", profile] if profile in PROFILES else ["--snakepit-version",
                                                                       get_profile(profile).snakepit_version]
        return shlex.join(
            ["snakepit-contract", "run", "--only", clause_id, *release, *worker]
            + ([] if level is MUST else ["--level", "should" if level is SHOULD else "all"])
            + (["--timeout-scale", str(self.timeout_scale)] if self.timeout_scale != 1 else [])
        )

    def describe_worker(self) -> WorkerInfo:
        """The worker as reports name it: the address attached to, or the command launched."""
        if self.worker_address:
            return WorkerInfo("address", self.worker_address)
        if self.worker_image:
            return WorkerInfo("image", self.worker_image)
        return WorkerInfo("command", shlex.join(self.worker_cmd))


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin (the plugin's pytest_addoption)."""
    group = parser.getgroup("snakepit-contract", "Snakepit worker conformance")
    for name, help_text in (
        ("worker-cmd", WORKER_CMD_HELP),
        ("profile", PROFILE_HELP),
        ("snakepit-version", VERSION_HELP),
        ("timeout-scale", TIMEOUT_SCALE_HELP),
        ("only", ONLY_HELP),
        ("skip", SKIP_HELP),
        ("contract-json", RESULTS_HELP),
        ("worker-address", WORKER_ADDRESS_HELP),
        ("worker-image", WORKER_IMAGE_HELP),
        ("level", LEVEL_HELP),
        ("baseline", BASELINE_HELP),
        ("report-dir", REPORT_DIR_HELP),
        ("clause-timeout", CLAUSE_TIMEOUT_HELP),
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
    """The releases judged: aliases, X.Y.Z lists and FIRST..LAST ranges (profiles.select_releases)."""
    try:
        return select_releases(DEFAULT_PROFILE if value is None else value)
    except ValueError as err:
        raise pytest.UsageError(f"Invalid profile from {where}: {err}") from None


def _number_in_range(value: str, where: str, what: str, low: float, high: float, unit: str) -> float:
    """Parse a float setting; a usage error names the setting, its source and the accepted range."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:  # NaN fails both comparisons
        raise pytest.UsageError(f"Invalid {what} {value!r} from {where}: expected {unit} in {low:g}..{high:g}")
    return number


def _validate_timeout_scale(value: str | None, where: str) -> float:
    return 1.0 if value is None else _number_in_range(value, where, "timeout scale", 0.1, 100, "a number")


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


def _validate_worker_address(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise pytest.UsageError(f"Invalid worker address {value!r} from {where}: expected HOST:PORT")
    return value


def _validate_worker_image(value: str | None, where: str) -> str | None:
    """The engine at DOCKER_HOST answers and holds the image; nothing is pulled."""
    if value is None:
        return None
    if not value.strip():
        raise pytest.UsageError(f"Invalid worker image from {where}: it is empty")
    try:
        from contract_tests.driver import container
    except ImportError as err:
        raise pytest.UsageError(f"--worker-image needs the containers extra (testcontainers): {err}") from None
    try:
        container.check_image(value)
    except container.ContainerEngineError as err:
        raise pytest.UsageError(f"Cannot use the worker image from {where}: {err}") from None
    return value


def _validate_level(value: str | None, where: str) -> str:
    if value is None:
        return "must"
    if value not in LEVELS:
        raise pytest.UsageError(f"Invalid level {value!r} from {where}: expected must, should or all")
    return value


def _validate_baseline(value: str | None, where: str) -> Baseline | None:
    if value is None:
        return None
    try:
        return load_baseline(Path(value), REGISTRY)
    except BaselineError as err:
        raise pytest.UsageError(f"Invalid baseline from {where}: {err}") from None


def _validate_report_dir(value: str | None, where: str) -> Path | None:
    """The directory exists or can be made, and takes a file: found now, not after a run of many minutes."""
    if value is None:
        return None
    if Path(value).exists() and not Path(value).is_dir():
        raise pytest.UsageError(f"Invalid report directory {value!r} from {where}: it is a file")
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=value):
            pass
    except OSError as err:
        raise pytest.UsageError(f"Invalid report directory {value!r} from {where}: cannot write there "
                                f"({err.strerror or err})") from None
    return Path(value)


def _validate_clause_timeout(value: str | None, where: str) -> float:
    if value is None:
        return DEFAULT_CLAUSE_TIMEOUT_S
    return _number_in_range(value, where, "clause timeout", 0.1, 3600, "seconds")


def _globs(value: str | None) -> tuple[str, ...]:
    return tuple(g.strip() for g in (value or "").split(",") if g.strip())


def resolve_settings(config: pytest.Config) -> Settings:
    """Read, validate and combine every setting; raise pytest.UsageError on the first bad one."""
    values = {name: _lookup(config, name) for name in (
        "worker-cmd", "profile", "snakepit-version", "timeout-scale", "only", "skip", "contract-json",
        "worker-address", "worker-image", "level", "baseline", "report-dir", "clause-timeout")}
    given = [(name, where) for name in ("worker-cmd", "worker-image", "worker-address")
             for value, where in [values[name]] if value is not None]
    if len(given) > 1:
        raise pytest.UsageError("Give one worker, not several: "
                                + ", ".join(f"{name.replace('-', ' ')} ({where})" for name, where in given))
    if values["profile"][0] is not None and values["snakepit-version"][0] is not None:
        raise pytest.UsageError(f"Give the releases once: profile ({values['profile'][1]}) or Snakepit version "
                                f"({values['snakepit-version'][1]}), not both")
    results = values["contract-json"][0]
    releases = values["snakepit-version"] if values["snakepit-version"][0] is not None else values["profile"]
    return Settings(
        # An image's ENTRYPOINT is the worker command: no command of this machine goes into its container.
        worker_cmd=() if values["worker-image"][0] else _validate_worker_cmd(*values["worker-cmd"]),
        profiles=_validate_profiles(*releases),
        timeout_scale=_validate_timeout_scale(*values["timeout-scale"]),
        only=_globs(values["only"][0]),
        skip=_globs(values["skip"][0]),
        results_path=Path(results) if results else None,
        sources={name: where for name, (_, where) in values.items()},
        worker_address=_validate_worker_address(*values["worker-address"]),
        worker_image=_validate_worker_image(*values["worker-image"]),
        level=_validate_level(*values["level"]),
        baseline=_validate_baseline(*values["baseline"]),
        report_dir=_validate_report_dir(*values["report-dir"]),
        clause_timeout_s=_validate_clause_timeout(*values["clause-timeout"]),
    )


SETTINGS = pytest.StashKey[Settings]()
