"""Where Snakepit's sources come from: a directory given by the user, or the documented cache path.

Layout of a sources directory for one Snakepit version (docs/e2e.md):

    DIR/snakepit/        Snakepit itself at that version (its mix.exs names the version)
    DIR/deps/<app>/      one directory per dependency in Snakepit's mix.lock, at the locked version
    DIR/deps/hex/        Hex's own source: Mix asks for the Hex SCM even for unused optional dependencies

DIR may also hold one such directory per version (DIR/0.6.0/, DIR/0.13.0/).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The releases the tier builds, oldest first: one on each side of every change in what Snakepit does toward
# its workers that the scenarios can see (docs/e2e.md). The newest is the one the default tox env runs.
VERSIONS = ("0.6.0", "0.7.7", "0.8.0", "0.8.1", "0.10.1", "0.13.0")
NEWEST = VERSIONS[-1]
SOURCES_ENV = "SNAKEPIT_SOURCES_DIR"
# Sources left here are found without any option, so a machine that has them runs the tier in CI.
CACHE_ROOT = Path("/var/cache/snakepit-contract/snakepit-sources")
_VERSION_LINE = re.compile(r'@version\s+"([^"]+)"')


class SourcesMissing(Exception):
    """No usable sources directory for the version; the message lists every place looked at and why."""


@dataclass(frozen=True)
class Sources:
    """A sources directory that has Snakepit at the wanted version and a deps/ directory."""

    root: Path
    version: str
    found_via: str

    def dependencies(self) -> list[str]:
        return sorted(p.name for p in (self.root / "deps").iterdir() if p.is_dir() and p.name != "hex")


def snakepit_version_of(mix_exs: Path) -> str | None:
    match = _VERSION_LINE.search(mix_exs.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def _problem(root: Path, version: str) -> str | None:
    """Why `root` is not a sources directory for `version`, or None when it is one."""
    mix_exs = root / "snakepit" / "mix.exs"
    if not mix_exs.is_file():
        return f"{root}: no snakepit/mix.exs"
    found = snakepit_version_of(mix_exs)
    if found != version:
        return f"{root}: snakepit/mix.exs is version {found}, not {version}"
    if not (root / "deps").is_dir():
        return f"{root}: no deps/ directory"
    if not (root / "deps" / "hex" / "mix.exs").is_file():
        return f"{root}: no deps/hex (Hex's source; Mix needs the Hex SCM even offline)"
    return None


def locate(version: str, given: Path | None = None, env: Mapping[str, str] | None = None,
           cache_root: Path | None = None) -> Sources:
    """The first usable directory among --snakepit-sources, $SNAKEPIT_SOURCES_DIR and the cache path."""
    if version not in VERSIONS:
        raise ValueError(f"unknown Snakepit version {version!r}; known: {', '.join(VERSIONS)}")
    env = os.environ if env is None else env
    places = [(given, "--snakepit-sources"), (Path(env[SOURCES_ENV]) if env.get(SOURCES_ENV) else None, SOURCES_ENV),
              (cache_root or CACHE_ROOT, "the cache path")]
    problems = []
    for base, via in places:
        if base is None:
            problems.append(f"{via} not set")
            continue
        roots = [root for root in (base / version, base) if (root / "snakepit" / "mix.exs").is_file()]
        for root in roots:
            if _problem(root, version) is None:
                return Sources(root=root, version=version, found_via=via)
        problems.append(f"{via}: {_problem(roots[0] if roots else base / version, version)}")
    raise SourcesMissing(f"no Snakepit {version} sources ({'; '.join(problems)})")
