"""Debian's Docker engine and mmdebstrap, installed if missing, without letting the distro service start.

The docker.io package would start the distribution's own daemon (with its default bridge network, which this
workplace forbids); a policy-rc.d that exits 101 keeps every service from starting during the install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Program looked for on PATH -> the Debian package that provides it.
REQUIRED: Mapping[str, str] = {"dockerd": "docker.io", "docker": "docker.io", "mmdebstrap": "mmdebstrap"}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
DENY_ALL_SERVICES = "#!/bin/sh\n# snakepit-contract ci/packages.py: no service starts during this install\nexit 101\n"

Runner = Callable[[Sequence[str], Mapping[str, str]], None]


def missing_packages(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The packages to install: those whose program is not on PATH, each named once."""
    return sorted({package for program, package in REQUIRED.items() if which(program) is None})


def apt_commands(packages: Sequence[str]) -> list[list[str]]:
    return [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ]


def install(packages: Sequence[str], policy: Path = POLICY_RC_D, run: Runner | None = None) -> None:
    """Install packages with every service start denied; the policy file is removed after, if we wrote it."""
    if not packages:
        return
    runner = run or _run
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ours = not policy.exists()
    if ours:
        policy.write_text(DENY_ALL_SERVICES, encoding="utf-8")
        policy.chmod(0o755)
    try:
        for command in apt_commands(packages):
            runner(command, env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def _run(command: Sequence[str], env: Mapping[str, str]) -> None:
    subprocess.run(list(command), env=dict(env), check=True, stdout=subprocess.DEVNULL)
