"""The E2E host image: the trixie base, Elixir/OTP from Debian, our Mix project compiled against Snakepit.

The image is built once per input (Dockerfile, host project, sources, wheels, base image) and reused: its
tag carries a digest of those inputs. The build context is assembled in a temporary directory and removed
afterwards; nothing of it lands in the repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contract_tests.e2e.sources import Sources

# Read by testcontainers at import: no reaper (its image cannot be pulled), the engine at DOCKER_HOST as given.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")

HERE = Path(__file__).parent
HOST_PROJECT = HERE / "host"
DOCKERFILE = HERE / "Dockerfile"
BASE_IMAGE_ENV = "SNAKEPIT_E2E_BASE_IMAGE"
DEFAULT_BASE_IMAGE = "snakepit-contract/base:trixie"
HEX_ENV = "SNAKEPIT_E2E_HEX"
IMAGE_REPOSITORY = "snakepit-contract-e2e/host"
WHEELHOUSE = Path(os.environ.get("SNAKEPIT_E2E_WHEELHOUSE", "/var/cache/snakepit-contract/wheelhouse"))
# Debian trixie's python3.
IMAGE_PYTHON = "3.13"
_IGNORED = shutil.ignore_patterns("_build", ".git", ".elixir_ls", "erl_crash.dump")


class NotAvailable(Exception):
    """Something the tier needs is missing on this machine; the message is the NOT-RUN reason."""


class BuildFailed(Exception):
    """The image did not build although everything it needs was there; the message ends with the log tail."""


def engine() -> Any:
    """A client of the Docker engine at DOCKER_HOST (testcontainers' client library), or NotAvailable."""
    try:
        import docker
    except ImportError:
        raise NotAvailable("the containers extra is not installed (pip install 'snakepit-contract[containers]')") \
            from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise NotAvailable(f"no container engine answers at {where}: {str(err)[:200]}") from None
    return client


def base_image() -> str:
    return os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE


def require_image(client: Any, name: str) -> str:
    """The local image's id; images cannot be pulled here, so a missing base image is NOT-RUN."""
    import docker.errors

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        raise NotAvailable(f"base image {name} is not in the engine (build a Debian trixie base image under that "
                           f"name, or set {BASE_IMAGE_ENV}; docs/e2e.md)") from None


def _platforms() -> list[str]:
    machine = platform.machine()
    return [f"--platform=manylinux{tag}_{machine}" for tag in ("2014", "_2_17", "_2_28")]


def wheelhouse(name: str, requirements: list[str]) -> Path:
    """Wheels for the image's Python, downloaded once with pip into the wheelhouse cache."""
    target = WHEELHOUSE / name
    stamp = target / ".requirements"
    if stamp.is_file() and stamp.read_text() == "\n".join(requirements):
        return target
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", f"--python-version={IMAGE_PYTHON}", "--implementation=cp", *_platforms(),
               "--dest", str(target), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise NotAvailable(f"could not download wheels {' '.join(requirements)} for Python {IMAGE_PYTHON}: "
                           f"{done.stderr.strip()[-400:]}")
    stamp.write_text("\n".join(requirements))
    return target


def worker_wheels() -> Path:
    """What the reference worker imports: grpcio and protobuf at the versions installed here."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("grpcio", "protobuf")]
    return wheelhouse(f"worker-cp{IMAGE_PYTHON.replace('.', '')}", pins)


# What Snakepit's own Python bridge imports (its priv/python/requirements.txt, at the versions its committed stubs
# were generated with; the test-only and optional entries left out). 0.6.0 has neither orjson nor OpenTelemetry.
_BRIDGE_0_6 = ["grpcio==1.76.0", "protobuf==6.31.1", "numpy", "psutil"]
_BRIDGE_LATER = [*_BRIDGE_0_6, "orjson", "opentelemetry-api", "opentelemetry-sdk",
                 "opentelemetry-exporter-otlp-proto-http"]
BRIDGE_REQUIREMENTS = {"0.6.0": _BRIDGE_0_6, "0.7.7": _BRIDGE_LATER, "0.8.0": _BRIDGE_LATER, "0.8.1": _BRIDGE_LATER,
                       "0.10.1": _BRIDGE_LATER, "0.13.0": _BRIDGE_LATER}


def bridge_wheels(version: str) -> Path:
    """One wheelhouse per distinct requirement list, shared by the releases that have the same one."""
    requirements = BRIDGE_REQUIREMENTS[version]
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    return wheelhouse(f"bridge-{digest}-cp{IMAGE_PYTHON.replace('.', '')}", requirements)


def _files(root: Path, skip: frozenset[str] = frozenset({"_build", ".git"})) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not skip.intersection(path.relative_to(root).parts):
            yield path


def image_tag(version: str, sources: Sources | None, base_id: str, wheel_dirs: list[Path]) -> str:
    """Tag naming every input of the build, so an unchanged input reuses the image; `-bridge` images also carry
    the Python packages of Snakepit's own bridge."""
    kind = "bridge" if len(wheel_dirs) > 1 else "reference"
    digest = hashlib.sha256()
    digest.update(f"{version}\0{base_id}\0".encode())
    for path in [DOCKERFILE, *_files(HOST_PROJECT, frozenset({"_build", "deps"}))]:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    for root in ([sources.root] if sources else []) + wheel_dirs:
        for path in _files(root):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return f"{IMAGE_REPOSITORY}:{version}-{kind}-{digest.hexdigest()[:16]}"


def build(client: Any, version: str, sources: Sources | None, bridge_wheels: Path | None = None) -> str:
    """The host image for `version` (from sources, or from Hex when sources is None); built if not there."""
    import docker.errors

    base = base_image()
    base_id = require_image(client, base)
    wheels = worker_wheels()
    tag = image_tag(version, sources, base_id, [wheels] + ([bridge_wheels] if bridge_wheels else []))
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    context = Path(tempfile.mkdtemp(prefix="snakepit-e2e-context-"))
    try:
        shutil.copy2(DOCKERFILE, context / "Dockerfile")
        shutil.copytree(HOST_PROJECT, context / "host", ignore=shutil.ignore_patterns("_build", "deps"))
        if sources is not None:
            shutil.copytree(sources.root, context / "sources", ignore=_IGNORED, symlinks=True)
        else:
            (context / "sources").mkdir()
        shutil.copytree(wheels, context / "wheels")
        if bridge_wheels is not None:
            shutil.copytree(bridge_wheels, context / "bridge-wheels")
        else:
            (context / "bridge-wheels").mkdir()
        log: list[str] = []
        for chunk in client.api.build(path=str(context), tag=tag, network_mode="host", rm=True, forcerm=True,
                                      decode=True, buildargs={"BASE_IMAGE": base, "SNAKEPIT_VERSION": version}):
            log += [line for line in str(chunk.get("stream", "")).splitlines() if line.strip()]
            if "error" in chunk:
                tail = "\n".join(log[-40:])
                raise BuildFailed(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    _remove_older(client, tag)
    return tag


def _remove_older(client: Any, keep: str) -> None:
    """Each host image is about a gigabyte: earlier builds of the same version and kind go once a new one exists."""
    import docker.errors

    prefix = keep.rsplit("-", 1)[0] + "-"
    for old in client.images.list(name=IMAGE_REPOSITORY):
        tags = [t for t in old.tags if t.startswith(prefix) and t != keep]
        for stale in tags:
            with contextlib.suppress(docker.errors.APIError):  # in use by a running container: left alone
                client.images.remove(stale)
