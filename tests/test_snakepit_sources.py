"""Self-tests of our record of Snakepit's behaviour (contract_tests/contract/snakepit_sources.toml, docs/snakepit/).

Every clause rests on entries that exist, every anchor cited anywhere exists, the generated docs are up to date,
nothing in the repository points at a document outside it, and `sources-check` confirms the citations against
Snakepit's tagged sources when they are at hand (and fails on a wrong line range).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from contract_tests import cli
from contract_tests.contract.clause import load_catalogue
from contract_tests.contract.snakepit_sources import (
    DOCS_DIR,
    ENTRIES,
    Citation,
    Entry,
    Era,
    SourcesDataError,
    check_citations,
    clauses_by_anchor,
    directory_reader,
    git_reader,
    load_entries,
    render_docs,
)

ROOT = Path(__file__).resolve().parents[1]
# Snakepit's git repository with every tag: $SNAKEPIT_REPO_DIR, else where the kit's build machine keeps it.
# CI machines may have neither; the test that needs it is then reported NOT-RUN (a skip with the reason).
MIRROR = Path(os.environ.get("SNAKEPIT_REPO_DIR", "/work/.mirror/nshkrdotcom+snakepit/repo"))
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".ini", ".json", ".yml", ".yaml", ".sh", ".cfg", ".txt", ".html", ".exs",
                  ".ex", ".js", ".mjs", ".ts", ".go", ".rs"}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    return [f for f in files if f.is_file() and (f.suffix in _TEXT_SUFFIXES or f.name in {"Dockerfile", "run"})]


def test_every_clause_rests_on_entries_that_exist() -> None:
    """Ensure each clause names one or more anchors and every one is an entry of the record."""
    for clause in load_catalogue().values():
        assert clause.rests_on, clause.id
        missing = [a for a in clause.rests_on if a not in ENTRIES]
        assert not missing, f"{clause.id} rests on unknown entries {missing}"


def test_every_anchor_cited_in_the_repository_exists() -> None:
    """Ensure links into docs/snakepit/ and anchors named by data files (the rules table too) all exist."""
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        cited = set(_LINK.findall(text)) - {"README"}
        cited |= {a.strip() for group in _IN_CODE.findall(text) for a in group.split(",")} - {"..."}
        if path.suffix == ".toml" and path.name != "snakepit_sources.toml":
            cited |= _anchors_in_toml(tomllib.loads(text))
        unknown = cited - set(ENTRIES)
        assert not unknown, f"{path.relative_to(ROOT)} cites unknown docs/snakepit entries {sorted(unknown)}"


# A link to an entry's page, from the repository root or from docs/; and the short form code comments use.
_LINK = re.compile(r"snakepit/([a-z0-9-]+)\.md")
_IN_CODE = re.compile(r"\(snakepit: ([a-z0-9, .-]+)\)")


def _anchors_in_toml(data: object) -> set[str]:
    """Values of keys that name entries (`rests_on`, `anchor`, `anchors`, `behaviour`), at any depth."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key in {"rests_on", "anchors"} and isinstance(value, list):
                found |= {str(v) for v in value}
            elif key in {"anchor", "behaviour"} and isinstance(value, str):
                found.add(value)
            else:
                found |= _anchors_in_toml(value)
    elif isinstance(data, list):
        for item in data:
            found |= _anchors_in_toml(item)
    return found


# Citations of a document that is not in this repository: the background notes this kit was first written from,
# a path outside the checkout, or section numbers ("§2.7", "facts §3") of such a document. The only numbered
# document here is docs/contract.md (sections "## 1." ... "## N.", no subsections): a "§N" is one of its
# sections only in a file that names docs/contract.md (or "contract §"), and N is one of them.
_OUTSIDE = re.compile(r"\.\./shared|/work/shared|snakepit-facts|facts §")
_SECTION = re.compile(r"§\s?(\d+)(\.\d)?")
_CONTRACT_SECTIONS = {m.group(1) for m in re.finditer(r"^## (\d+)\.", (ROOT / "docs" / "contract.md").read_text(
    encoding="utf-8"), re.MULTILINE)}


def _cites_outside(path: Path, text: str, line: str) -> bool:
    if _OUTSIDE.search(line):
        return True
    names_contract = path.name == "contract.md" or "contract.md" in text or "contract §" in text
    return any(m.group(2) or m.group(1) not in _CONTRACT_SECTIONS or not names_contract
               for m in _SECTION.finditer(line))


def test_nothing_refers_to_a_document_outside_the_repository() -> None:
    """Ensure every citation in code, data and docs points into the repository (docs/snakepit/) or at Snakepit."""
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in _tracked_text_files() if path.resolve() != Path(__file__).resolve()
                 for text in [path.read_text(encoding="utf-8", errors="replace")]
                 for number, line in enumerate(text.splitlines(), 1)
                 if _cites_outside(path, text, line)]
    assert not offenders, "citations of documents outside the repository:\n" + "\n".join(offenders)


def test_generated_docs_are_up_to_date() -> None:
    """Ensure docs/snakepit/ is exactly what `python -m contract_tests.contract.snakepit_sources` writes."""
    expected = render_docs(ENTRIES, clauses_by_anchor())
    docs = ROOT / DOCS_DIR
    assert sorted(p.name for p in docs.glob("*.md")) == sorted(expected), "regenerate docs/snakepit/"
    for name, text in expected.items():
        assert (docs / name).read_text(encoding="utf-8") == text, \
            f"{DOCS_DIR}/{name} is stale: run `python -m contract_tests.contract.snakepit_sources`"


def test_each_entry_covers_its_releases_without_gaps() -> None:
    """Ensure each entry's eras run from 0.6.0 on, in order, and only the last is open-ended."""
    for entry in ENTRIES.values():
        assert entry.eras[0].since == "0.6.0", entry.anchor
        assert all(era.until is not None for era in entry.eras[:-1]), entry.anchor
        assert entry.eras[-1].until is None, f"{entry.anchor}: the newest era must be open-ended"


@pytest.mark.parametrize(
    ("era", "problem"),
    [
        ('since = "0.6.0"\nsummary = "x"\ncite = [{tag = "v0.9.0", path = "a", lines = "1-2", contains = "x"}]\n'
         'until = "0.8.0"', "outside its releases"),
        ('since = "0.6.0"\nsummary = "x"\ncite = [{tag = "v0.6.0", path = "a", lines = "2-1", contains = "x"}]',
         "empty line range"),
        ('since = "0.6.0"\nsummary = "x"\ncite = [{tag = "v0.6.0", path = "a", lines = "7", contains = "x"}]',
         "lines A-B"),
        ('since = "0.6.0"\nsummary = "x"\ncite = [{tag = "v0.6.0", path = "a", lines = "1-2"}]', "contains"),
        ('since = "0.6.0"\nsummary = "x"\ncite = []', "one or more citations"),
    ],
)
def test_malformed_record_is_rejected_with_the_entry_named(tmp_path: Path, era: str, problem: str) -> None:
    """Ensure mistakes in the record are caught at load time with a message naming the entry."""
    path = tmp_path / "sources.toml"
    path.write_text(f'[some-entry]\ntitle = "t"\n[[some-entry.eras]]\n{era}\n')
    with pytest.raises(SourcesDataError, match=re.escape(problem)):
        load_entries(path)


def _tiny_snakepit(tmp_path: Path) -> Path:
    """A git repository with one tag, v0.6.0, holding lib/worker.ex of four lines."""
    repo = tmp_path / "snakepit"
    repo.mkdir()
    (repo / "lib").mkdir()
    (repo / "lib" / "worker.ex").write_text("defmodule W do\n  @grace 2000\n  def stop, do: :ok\nend\n")
    env = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for argv in (["init", "-q"], ["add", "."], [*env, "commit", "-qm", "one"], ["tag", "v0.6.0"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)
    return repo


def _entry(lines: tuple[int, int], contains: str = "@grace 2000", tag: str = "v0.6.0") -> Entry:
    cite = Citation(tag, "lib/worker.ex", lines[0], lines[1], contains)
    return Entry("grace", "Grace", (Era("0.6.0", None, "s", (cite,)),))


def test_sources_check_fails_a_wrong_line_range(tmp_path: Path) -> None:
    """Ensure a citation whose lines do not hold its snippet FAILs, naming what was expected; a right one holds."""
    read = git_reader(_tiny_snakepit(tmp_path))
    assert check_citations([_entry((2, 2))], [read]).problems == ()
    wrong = check_citations([_entry((3, 4))], [read])
    assert wrong.problems == ("FAIL grace: v0.6.0:lib/worker.ex:3-4 does not contain '@grace 2000'",)
    past = check_citations([_entry((3, 9))], [read])
    assert "past the end of the file (4 lines)" in past.problems[0]
    gone = check_citations([Entry("grace", "G", (Era("0.6.0", None, "s", (Citation(
        "v0.6.0", "lib/gone.ex", 1, 1, "x"),)),))], [read])
    assert "does not exist at that tag" in gone.problems[0]
    later = check_citations([_entry((2, 2), tag="v0.13.0")], [read])
    assert (later.checked, later.unavailable, later.problems) == (0, 1, ())


def test_sources_check_reads_the_e2e_sources_layout(tmp_path: Path) -> None:
    """Ensure DIR/<version>/snakepit/<path> is read at the matching tag only."""
    (tmp_path / "0.6.0" / "snakepit" / "lib").mkdir(parents=True)
    (tmp_path / "0.6.0" / "snakepit" / "lib" / "worker.ex").write_text("a\n@grace 2000\n")
    read = directory_reader(tmp_path)
    assert check_citations([_entry((2, 2))], [read]).checked == 1
    assert check_citations([_entry((1, 1))], [read]).problems
    assert check_citations([_entry((2, 2), tag="v0.13.0")], [read]).unavailable == 1


def test_sources_check_command_exit_statuses(tmp_path: Path) -> None:
    """Ensure the command says NOT-RUN (2) without sources, and FAILs (1) naming each citation that breaks."""
    out = io.StringIO()
    assert cli.main(["sources-check"], out=out) == 2 and out.getvalue().startswith("NOT-RUN: ")
    out = io.StringIO()
    assert cli.main(["sources-check", "--snakepit-sources", str(tmp_path)], out=out) == 2
    assert "no <version>/snakepit/ directories" in out.getvalue()
    # A Snakepit whose v0.6.0 holds none of the cited files: every v0.6.0 citation fails, the rest are unchecked.
    out = io.StringIO()
    assert cli.main(["sources-check", "--snakepit-repo", str(_tiny_snakepit(tmp_path))], out=out) == 1
    lines = out.getvalue().splitlines()
    v060 = [c for e in ENTRIES.values() for c in e.citations if c.tag == "v0.6.0"]
    assert len([line for line in lines if line.startswith("FAIL ")]) == len(v060)
    assert lines[-1].startswith(f"0/{len(v060)} citations hold; ")


@pytest.mark.skipif(not (MIRROR / "HEAD").exists() and not (MIRROR / ".git").exists(),
                    reason=f"NOT-RUN: Snakepit's repository is not at {MIRROR} (a machine without Snakepit sources)")
def test_every_citation_holds_in_snakepit_tagged_sources() -> None:
    """Ensure every cited line range at its tag in Snakepit's real repository still contains its snippet."""
    out = io.StringIO()
    status = cli.main(["sources-check", "--snakepit-repo", str(MIRROR)], out=out)
    total = sum(len(e.citations) for e in ENTRIES.values())
    assert (status, out.getvalue()) == (0, f"{total}/{total} citations hold\n")
