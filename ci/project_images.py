"""The project's images, built without a registry and without network from inside the build beyond the mirror.

Every Python wheel comes from a wheelhouse made on the host for the image's Python and platform: the
project's own wheel (from a clean copy of the working tree) plus the worker's runtime requirements as
pyproject.toml states them, then `pip install --no-index` inside the image.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ci.base_images import image_name as base_image_name
from ci.daemon import RUN_LABEL, EngineDir, docker_env

REPO = Path(__file__).resolve().parent.parent
# Not part of the project's source: caches, build output, reports (as in .gitignore), plus VCS and node modules.
NOT_SOURCE = (".git", ".tox", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache",
              ".pytest_cache", "node_modules", "conformance-report", "bench-report", ".coverage*")  # fmt: skip
# Zip timestamps from a fixed date: the same source gives the same wheel, so docker's layer cache holds.
REPRODUCIBLE_EPOCH = "315532800"
# Set by each Dockerfile on every stage (value: the image's repository).
IMAGE_LABEL = "snakepit-contract.image"


@dataclass(frozen=True)
class ProjectImage:
    """An image of the project: where its Dockerfile lives and what Python its base suite ships."""

    repository: str
    dockerfile_dir: Path
    base_suite: str
    python: str
    glibc: tuple[int, int]
    requirements: tuple[str, ...]

    @property
    def latest(self) -> str:
        return f"{self.repository}:latest"


# Debian bookworm: python3 3.11 (the project's minimum, and cp311 like the hosts), glibc 2.36.
REFERENCE_WORKER = ProjectImage(
    repository="snakepit-contract/reference-worker",
    dockerfile_dir=REPO / "ci" / "images" / "reference-worker",
    base_suite="bookworm",
    python="3.11",
    glibc=(2, 36),
    requirements=("grpcio", "protobuf"),
)
IMAGES = (REFERENCE_WORKER,)


def project_version(pyproject: Path = REPO / "pyproject.toml") -> str:
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


def runtime_requirements(names: Iterable[str], pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The project's own requirement strings for the named distributions (versions stay in one place)."""
    wanted = {_canonical(name) for name in names}
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    found = [str(spec) for spec in dependencies if _distribution(str(spec)) in wanted]
    missing = wanted - {_distribution(spec) for spec in found}
    if missing:
        raise ValueError(f"pyproject.toml does not list {', '.join(sorted(missing))} in [project].dependencies")
    return found


def _distribution(requirement: str) -> str:
    return _canonical(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_platforms(glibc: tuple[int, int], machine: str) -> list[str]:
    """Every manylinux tag a glibc of this version accepts, newest first."""
    major, minor = glibc
    if major != 2 or minor < 17:
        raise ValueError(f"unsupported glibc {major}.{minor}")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def pip_download_argv(image: ProjectImage, dest: Path, requirements: Sequence[str], machine: str) -> list[str]:
    """Binary wheels for the image's interpreter and platform, whatever the host runs; pip itself included."""
    abi = "cp" + image.python.replace(".", "")
    platforms = [arg for tag in wheel_platforms(image.glibc, machine) for arg in ("--platform", tag)]
    return [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), "--only-binary=:all:",
        "--python-version", image.python, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none", *platforms,
        "pip", *requirements,
    ]  # fmt: skip


def make_context(image: ProjectImage, workdir: Path, machine: str = platform.machine()) -> Path:
    """A docker build context: the image's Dockerfile directory plus wheelhouse/ with every wheel it needs."""
    context = workdir / "context"
    shutil.copytree(image.dockerfile_dir, context)
    wheelhouse = context / "wheelhouse"
    wheelhouse.mkdir()
    requirements = runtime_requirements(image.requirements)
    (wheelhouse / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    subprocess.run(pip_download_argv(image, wheelhouse, requirements, machine), check=True)
    source = workdir / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse), str(source)],
        env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH}, check=True,
    )  # fmt: skip
    return context


def build(image: ProjectImage, engine: EngineDir) -> None:
    """Build and tag IMAGE:latest and IMAGE:<project version>, then check the worker starts in it."""
    version = project_version()
    with tempfile.TemporaryDirectory(prefix="snakepit-contract-image-") as workdir:
        context = make_context(image, Path(workdir))
        argv = [
            "docker", "build", "--network", "host", "--rm", "--force-rm",
            "--build-arg", f"BASE={base_image_name(image.base_suite)}",
            "--label", f"snakepit-contract.version={version}",
            "-t", image.latest, "-t", f"{image.repository}:{version}", str(context),
        ]  # fmt: skip
        done = subprocess.run(argv, env=docker_env(engine), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise RuntimeError(f"docker build {image.latest} failed (exit {done.returncode}):\n" + "\n".join(tail))
    # The previous build's image and this build's intermediate stage: untagged, labelled, no longer needed.
    subprocess.run(
        ["docker", "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}={image.repository}"],
        env=docker_env(engine), capture_output=True, check=True,
    )  # fmt: skip
    smoke = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--label", f"{RUN_LABEL}=image-check", image.latest, "--help"],
        env=docker_env(engine), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if smoke.returncode != 0:
        raise RuntimeError(f"{image.latest} does not start its worker: {(smoke.stdout + smoke.stderr).strip()[-800:]}")
