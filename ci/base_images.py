"""Debian base images without a registry: mmdebstrap from the machine's mirror, piped into `docker import`.

Each root filesystem tarball is cached under <cache>/rootfs/<suite>-<recipe>.tar, where <recipe> hashes
everything that shapes it (mirror, options, the apt config file); the image carries the same hash as a label,
so a changed recipe rebuilds and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.daemon import EngineDir, docker_env

CACHE_DIR_ENV = "SNAKEPIT_CONTRACT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("/var/cache/snakepit-contract")
SUITES = ("bookworm", "trixie")
RECIPE_LABEL = "snakepit-contract.rootfs"
APT_DOCKER_CLEAN = Path(__file__).parent / "images" / "base" / "docker-clean"
# Debian's "slim" trimming: no manuals, translations or documentation (copyright files stay).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
)


def image_name(suite: str) -> str:
    return f"snakepit-contract/base:{suite}"


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def mmdebstrap_argv(suite: str, mirror: str, output: Path, apt_config: Path = APT_DOCKER_CLEAN) -> list[str]:
    """A minimal, merged-/usr root filesystem as a tarball, with apt told to keep no caches."""
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=tar",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        f"--customize-hook=upload {apt_config} /etc/apt/apt.conf.d/docker-clean",
        # The package caches apt made while bootstrapping predate that config.
        '--customize-hook=rm -f "$1"/var/cache/apt/*.bin',
        suite,
        str(output),
        f"deb {mirror} {suite} main",
    ]


def recipe_hash(suite: str, mirror: str, apt_config: Path = APT_DOCKER_CLEAN) -> str:
    """Changes whenever the tarball would come out differently (the output path is not part of it)."""
    recipe = [*mmdebstrap_argv(suite, mirror, Path("-"), apt_config), apt_config.read_text(encoding="utf-8")]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BaseImage:
    """One suite's base image and where its tarball is cached."""

    suite: str
    mirror: str
    cache: Path

    @property
    def name(self) -> str:
        return image_name(self.suite)

    @property
    def recipe(self) -> str:
        return recipe_hash(self.suite, self.mirror)

    @property
    def tarball(self) -> Path:
        return self.cache / "rootfs" / f"{self.suite}-{self.recipe}.tar"


def ensure(image: BaseImage, engine: EngineDir) -> str:
    """Make sure the engine has the image from this recipe; returns what was done."""
    if _image_recipe(image.name, engine) == image.recipe:
        return "present"
    action = "imported the cached tarball"
    if not image.tarball.is_file():
        _build_tarball(image)
        action = "built the tarball with mmdebstrap and imported it"
    subprocess.run(
        ["docker", "import", "-c", f"LABEL {RECIPE_LABEL}={image.recipe}", "-c", 'CMD ["/bin/bash"]',
         str(image.tarball), image.name],
        env=docker_env(engine), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return action


def _build_tarball(image: BaseImage) -> None:
    image.tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = image.tarball.with_suffix(".partial.tar")
    try:
        done = subprocess.run(mmdebstrap_argv(image.suite, image.mirror, partial), capture_output=True, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-10:]
            raise RuntimeError(f"mmdebstrap {image.suite} failed (exit {done.returncode}):\n" + "\n".join(tail))
        partial.replace(image.tarball)
    finally:
        partial.unlink(missing_ok=True)


def _image_recipe(name: str, engine: EngineDir) -> str | None:
    probe = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', name],
        env=docker_env(engine), capture_output=True, text=True, check=False,
    )  # fmt: skip
    return probe.stdout.strip() if probe.returncode == 0 else None
