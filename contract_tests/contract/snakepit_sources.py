"""Our record of what Snakepit does, with the source lines that show it (snakepit_sources.toml).

Every clause rests on entries of this record by anchor (catalogue.toml `rests_on`). An entry says, per
range of releases, what Snakepit does and where: tag, file and line range, and a short snippet those
lines contain, so `sources-check` can confirm each citation against Snakepit's tagged sources. The
Markdown under docs/snakepit/ is generated from the same data (`python -m contract_tests.contract.snakepit_sources`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from contract_tests.contract import profiles

SOURCES_PATH = Path(__file__).with_name("snakepit_sources.toml")
REPOSITORY = "https://github.com/nshkrdotcom/snakepit"
DOCS_DIR = "docs/snakepit"
_ANCHOR = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_LINES = re.compile(r"^(\d+)-(\d+)$")


class SourcesDataError(ValueError):
    """snakepit_sources.toml is malformed; names the entry and the problem."""


def version_key(version: str) -> tuple[int, int, int]:
    """The release order of the rules table (profiles.version_key), with this module's error."""
    try:
        return profiles.version_key(version)
    except profiles.RulesError as err:
        raise SourcesDataError(str(err)) from None


@dataclass(frozen=True)
class Citation:
    """Lines first..last of `path` at `tag` in Snakepit's repository; they contain `contains`."""

    tag: str
    path: str
    first: int
    last: int
    contains: str

    @property
    def url(self) -> str:
        return f"{REPOSITORY}/blob/{self.tag}/{self.path}#L{self.first}-L{self.last}"

    @property
    def where(self) -> str:
        return f"{self.tag}:{self.path}:{self.first}-{self.last}"


@dataclass(frozen=True)
class Era:
    """What Snakepit does from release `since` through `until` (None: through the newest release)."""

    since: str
    until: str | None
    summary: str
    citations: tuple[Citation, ...]

    @property
    def releases(self) -> str:
        if self.until is None:
            return f"{self.since} and later"
        return self.since if self.until == self.since else f"{self.since} to {self.until}"


@dataclass(frozen=True)
class Entry:
    """One behaviour of Snakepit the kit relies on."""

    anchor: str
    title: str
    eras: tuple[Era, ...]

    @property
    def doc(self) -> str:
        return f"{DOCS_DIR}/{self.anchor}.md"

    @property
    def citations(self) -> tuple[Citation, ...]:
        return tuple(c for era in self.eras for c in era.citations)


def _citation(anchor: str, raw: Mapping[str, object], since: str, until: str | None) -> Citation:
    try:
        tag, path, lines, contains = (str(raw[k]) for k in ("tag", "path", "lines", "contains"))
    except KeyError as err:
        raise SourcesDataError(f"{anchor}: a citation needs tag, path, lines and contains ({err} missing)") from None
    match = _LINES.match(lines)
    if not tag.startswith("v") or not match or not contains.strip():
        raise SourcesDataError(f"{anchor}: citation {tag}:{path}:{lines} needs a vX.Y.Z tag, lines A-B and a snippet")
    first, last = int(match.group(1)), int(match.group(2))
    if not 0 < first <= last:
        raise SourcesDataError(f"{anchor}: citation {tag}:{path}:{lines} has an empty line range")
    cited = version_key(tag[1:])
    if cited < version_key(since) or (until is not None and cited > version_key(until)):
        raise SourcesDataError(f"{anchor}: citation at {tag} lies outside its releases {since} to {until or 'newest'}")
    return Citation(tag, path, first, last, contains)


def _entry(anchor: str, raw: Mapping[str, object]) -> Entry:
    if not _ANCHOR.match(anchor):
        raise SourcesDataError(f"{anchor!r}: anchors are lower-case words joined by '-'")
    eras_raw = raw.get("eras")
    if not isinstance(raw.get("title"), str) or not isinstance(eras_raw, list) or not eras_raw:
        raise SourcesDataError(f"{anchor}: needs a title and one or more [[{anchor}.eras]]")
    eras = []
    for era in eras_raw:
        since, until = str(era.get("since", "")), era.get("until")
        version_key(since)
        if until is not None and version_key(str(until)) < version_key(since):
            raise SourcesDataError(f"{anchor}: era {since} to {until} ends before it starts")
        cites = era.get("cite", [])
        if not str(era.get("summary", "")).strip() or not cites:
            raise SourcesDataError(f"{anchor}: era from {since} needs a summary and one or more citations")
        eras.append(Era(since, None if until is None else str(until), " ".join(str(era["summary"]).split()),
                        tuple(_citation(anchor, c, since, None if until is None else str(until)) for c in cites)))
    return Entry(anchor, str(raw["title"]), tuple(eras))


def load_entries(path: Path = SOURCES_PATH) -> dict[str, Entry]:
    """Parse and validate the record; raise SourcesDataError on the first problem."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {anchor: _entry(anchor, raw) for anchor, raw in data.items()}


ENTRIES: dict[str, Entry] = load_entries()


# -- checking the citations against Snakepit's tagged sources ---------------------------------------------------------

# A reader of one file at one tag: its text, or None when that tag or file is not at hand.
Reader = Callable[[str, str], "str | None"]


class SourcesUnavailable(Exception):
    """The given place holds no Snakepit sources to check against."""


def git_reader(repo: Path) -> Reader:
    """Read files at tags from a git checkout or bare git directory."""
    probe = subprocess.run(["git", "-C", str(repo), "tag", "--list", "v*"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        raise SourcesUnavailable(f"{repo}: not a git repository with vX.Y.Z tags ({probe.stderr.strip() or 'none'})")
    tags = set(probe.stdout.split())

    def read(tag: str, path: str) -> str | None:
        if tag not in tags:
            return None
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{tag}:{path}"], capture_output=True, check=False)
        return shown.stdout.decode("utf-8", "replace") if shown.returncode == 0 else ""

    return read


def directory_reader(root: Path) -> Reader:
    """Read files from an E2E sources directory: ROOT/<version>/snakepit/<path> (docs/e2e.md)."""
    versions = {p.name for p in root.iterdir() if (p / "snakepit").is_dir()} if root.is_dir() else set()
    if not versions:
        raise SourcesUnavailable(f"{root}: no <version>/snakepit/ directories")

    def read(tag: str, path: str) -> str | None:
        if tag[1:] not in versions:
            return None
        file = root / tag[1:] / "snakepit" / path
        return file.read_text(encoding="utf-8", errors="replace") if file.is_file() else ""

    return read


@dataclass(frozen=True)
class CheckResult:
    problems: tuple[str, ...]
    checked: int
    unavailable: int


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def check_citations(entries: Iterable[Entry], readers: Iterable[Reader]) -> CheckResult:
    """Confirm each citation's lines contain its snippet, at the first reader that has its tag."""
    problems, checked, unavailable = [], 0, 0
    chain = tuple(readers)
    for entry in entries:
        for cite in entry.citations:
            text = next((t for t in (read(cite.tag, cite.path) for read in chain) if t is not None), None)
            if text is None:
                unavailable += 1
                continue
            checked += 1
            lines = text.splitlines()
            if not lines:
                problems.append(f"FAIL {entry.anchor}: {cite.tag}:{cite.path} does not exist at that tag")
            elif cite.last > len(lines):
                problems.append(f"FAIL {entry.anchor}: {cite.where} is past the end of the file ({len(lines)} lines)")
            elif _squeezed(cite.contains) not in _squeezed("\n".join(lines[cite.first - 1:cite.last])):
                problems.append(f"FAIL {entry.anchor}: {cite.where} does not contain {cite.contains!r}")
    return CheckResult(tuple(problems), checked, unavailable)


# -- the generated Markdown under docs/snakepit/ ----------------------------------------------------------------------

_GENERATED = ("<!-- Generated from contract_tests/contract/snakepit_sources.toml by"
              " `python -m contract_tests.contract.snakepit_sources`; edit the data, not this file. -->")


def _index(entries: Mapping[str, Entry], clauses_by_anchor: Mapping[str, list[str]]) -> str:
    rows = "\n".join(f"| [{e.anchor}]({e.anchor}.md) | {e.title} | {', '.join(c.releases for c in e.eras)} | "
                     f"{', '.join(clauses_by_anchor.get(e.anchor, [])) or 'none'} |" for e in entries.values())
    return f"""# What Snakepit does, with its sources

{_GENERATED}

The kit's clauses rest on these entries: each says, per range of Snakepit releases, what Snakepit does and
where in Snakepit's source that happens (tag, file, line range, and a link to that file at that tag). The
words are ours; the data is `contract_tests/contract/snakepit_sources.toml`, shipped in the package, so
`snakepit-contract explain CLAUSE` prints the entries a clause rests on from an installed kit, and the
reports link them for every clause that did not pass.

## Checking the citations

Each citation names a short snippet its lines contain. With Snakepit's sources at hand,

```
snakepit-contract sources-check --snakepit-repo DIR        # a git checkout or git directory with the vX.Y.Z tags
snakepit-contract sources-check --snakepit-sources DIR     # the E2E tier's sources directory: DIR/<version>/snakepit/
```

confirms every cited line range at its tag still contains its snippet (whitespace runs compare as one
space). It prints one line per citation that fails, with what was expected, and exits 1 on any; 0 when all
hold; 2 (NOT-RUN, with the reason) when no sources are given or none of the cited tags is there. Citations
at tags the sources lack are counted and left unchecked.

## Entries

| entry | behaviour | releases | clauses resting on it |
|---|---|---|---|
{rows}
"""


def _lines(cite: Citation) -> str:
    return f"line {cite.first}" if cite.first == cite.last else f"lines {cite.first}-{cite.last}"


def _page(entry: Entry, clauses: list[str]) -> str:
    parts = [f"# {entry.title}", "", _GENERATED, "",
             f"Anchor `{entry.anchor}`. Clauses resting on it: {', '.join(clauses) or 'none'}.", ""]
    for era in entry.eras:
        parts += [f"## Snakepit {era.releases}", "", era.summary, "", "Where:", ""]
        parts += [f"- [`{c.tag}` `{c.path}` {_lines(c)}]({c.url}) (contains `{c.contains}`)" for c in era.citations]
        parts.append("")
    return "\n".join(parts)


def render_docs(entries: Mapping[str, Entry], clauses_by_anchor: Mapping[str, list[str]]) -> dict[str, str]:
    """File name under docs/snakepit/ → its content."""
    pages = {f"{a}.md": _page(e, clauses_by_anchor.get(a, [])) for a, e in entries.items()}
    return {"README.md": _index(entries, clauses_by_anchor), **pages}


def clauses_by_anchor() -> dict[str, list[str]]:
    from contract_tests.contract.clause import load_catalogue

    found: dict[str, list[str]] = {}
    for clause in load_catalogue().values():
        for anchor in clause.rests_on:
            found.setdefault(anchor, []).append(clause.id)
    return found


def main(argv: list[str] | None = None) -> int:
    """Write docs/snakepit/ from the data (run from the repository root)."""
    target = Path(argv[0] if argv else DOCS_DIR)
    target.mkdir(parents=True, exist_ok=True)
    pages = render_docs(ENTRIES, clauses_by_anchor())
    for stale in set(p.name for p in target.glob("*.md")) - set(pages):
        (target / stale).unlink()
    for name, text in pages.items():
        (target / name).write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {len(pages)} files to {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
