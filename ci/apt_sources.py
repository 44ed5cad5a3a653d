"""The Debian mirror this machine already uses, read from its apt sources (never a hard-coded host)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "SNAKEPIT_CONTRACT_DEBIAN_MIRROR"


class NoMirror(RuntimeError):
    """The machine's apt sources name no Debian main archive."""


@dataclass(frozen=True)
class AptSource:
    """One apt source entry, whichever file format it came from."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    """Entries of a `.sources` file (deb822 stanzas; `Enabled: no` entries are left out)."""
    entries: list[AptSource] = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        entries.append(
            AptSource(
                types=tuple(stanza.get("types", "").split()),
                uris=tuple(uri.rstrip("/") for uri in stanza.get("uris", "").split()),
                suites=tuple(stanza.get("suites", "").split()),
                components=tuple(stanza.get("components", "").split()),
                origin=origin,
            )
        )
    return entries


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    """Entries of a classic `sources.list` (`deb [options] URI SUITE COMPONENT...`)."""
    entries: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        words = rest.split()
        if len(words) < 2:
            continue
        entries.append(AptSource((kind,), (words[0].rstrip("/"),), (words[1],), tuple(words[2:]), origin))
    return entries


def machine_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every entry apt itself reads: sources.list, then sources.list.d/*.list and *.sources in name order."""
    entries: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        entries += parse_one_line(main_list.read_text(encoding="utf-8"), str(main_list))
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.glob("*")) if parts.is_dir() else []:
        if path.suffix == ".list":
            entries += parse_one_line(path.read_text(encoding="utf-8"), str(path))
        elif path.suffix == ".sources":
            entries += parse_deb822(path.read_text(encoding="utf-8"), str(path))
    return entries


def is_main_archive(source: AptSource) -> bool:
    """A binary source for a release's own suite (not -updates, -security, -backports) with the main component."""
    return (
        "deb" in source.types
        and "main" in source.components
        and any("-" not in suite and "/" not in suite for suite in source.suites)
        and bool(source.uris)
    )


def debian_mirror(sources: Iterable[AptSource], env: Mapping[str, str] = os.environ) -> str:
    """The mirror URI to build base images from: the override variable, else the first main archive."""
    override = env.get(MIRROR_ENV, "").strip()
    if override:
        return override.rstrip("/")
    sources = list(sources)
    for source in sources:
        if is_main_archive(source):
            return source.uris[0]
    read = ", ".join(sorted({source.origin for source in sources})) or "no source files"
    raise NoMirror(f"no Debian main archive in the machine's apt sources ({read}); set {MIRROR_ENV}=URI")
