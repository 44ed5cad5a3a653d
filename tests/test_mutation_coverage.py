"""Every MUST and SHOULD clause has a mutant of the right kind that breaks it, or a recorded reason why none can.

fixtures/mutants/catalogue.json lists the mutants (kind, targets, blast radius) and `unfailable_clauses`
(clauses a worker influences but whose check cannot come out FAIL as the suite is written). A clause with
subject worker needs a worker mutant; one with subject host (an emulator self-check) needs a host mutant,
a plugin that breaks the emulated Elixir side. The clauses accepted without a mutant are printed, so the gap
stays visible. No worker runs here.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli
from contract_tests.contract.clause import Clause, Level

MUTANT_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "mutants"
_spec = importlib.util.spec_from_file_location("mutant_score", MUTANT_DIR / "score.py")
assert _spec is not None and _spec.loader is not None
score: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score)
CATALOGUE: dict[str, Any] = json.loads((MUTANT_DIR / "catalogue.json").read_text())
MUTANTS: list[dict[str, Any]] = CATALOGUE["mutants"]
EXEMPT: dict[str, str] = CATALOGUE.get("unfailable_clauses", {})


@pytest.fixture(scope="module")
def registry() -> dict[str, Clause]:
    return cli.load_clauses()


def test_every_must_and_should_clause_has_a_mutant_or_a_reason(
    registry: dict[str, Clause], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ensure each MUST/SHOULD clause is targeted by a mutant or listed, with a reason, as impossible to target."""
    targeted = {(target, score.kind(mutant)) for mutant in MUTANTS for target in mutant["targets"]}
    judged = sorted(cid for cid, c in registry.items() if c.level in (Level.MUST, Level.SHOULD))
    uncovered = [f"{cid} (needs a {registry[cid].subject} mutant)" for cid in judged
                 if (cid, registry[cid].subject) not in targeted and cid not in EXEMPT]
    assert not uncovered, f"MUST/SHOULD clauses with no mutant and no recorded reason: {uncovered}"
    with capsys.disabled():
        print(f"\n{len(judged) - len(EXEMPT)}/{len(judged)} MUST/SHOULD clauses have a mutant; without one:")  # noqa: T201
        for cid in sorted(EXEMPT):
            print(f"  {cid}: {EXEMPT[cid]}")  # noqa: T201


def test_exempt_clauses_are_real_untargeted_and_explained(registry: dict[str, Clause]) -> None:
    """Ensure a clause listed as impossible to target exists, has a reason, and really has no mutant."""
    targeted = {target for mutant in MUTANTS for target in mutant["targets"]}
    for cid, reason in EXEMPT.items():
        assert cid in registry, cid
        assert reason.strip(), cid
        assert cid not in targeted, f"{cid} is listed as impossible to target, yet a mutant targets it"
    assert set(CATALOGUE) == {"_comment", "mutants", "unfailable_clauses"}, "unknown catalogue sections"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[score.entry_id(m) for m in MUTANTS])
def test_mutant_entry_is_well_formed(mutant: dict[str, Any], registry: dict[str, Clause]) -> None:
    """Ensure a mutant's script exists, its targets are clauses of its profiles, its blast radius matches clauses."""
    assert score.script(mutant).is_file(), mutant["name"]
    assert mutant["targets"], mutant
    assert score.kind(mutant) in ("worker", "host"), mutant
    assert score.language(mutant) in ("python", "node"), mutant
    assert score.kind(mutant) == "worker" or score.language(mutant) == "python", f"{mutant['name']}: host is Python"
    assert mutant["profiles"] and set(mutant["profiles"]) <= {"snakepit-0.6", "snakepit-0.13"}, mutant
    for target in mutant["targets"]:
        assert target in registry, f"{mutant['name']}: unknown target {target}"
        assert registry[target].profiles & set(mutant["profiles"]), f"{mutant['name']}: {target} fits no profile"
        # A broken emulator proves nothing about a worker check, nor a broken worker about a self-check.
        subject, kind = registry[target].subject, score.kind(mutant)
        assert subject == kind, f"{mutant['name']}: a {kind} mutant targets {target}, whose subject is {subject}"
    for glob in mutant.get("blast_radius", []):
        assert fnmatch.filter(registry, glob), f"{mutant['name']}: blast radius {glob!r} matches no clause"
        assert glob not in mutant["targets"], f"{mutant['name']}: {glob} is a target, not blast radius"
    assert float(mutant.get("timeout_scale", 1)) > 0


def test_entries_are_unique() -> None:
    """Ensure no mutant is listed twice for the same profiles (ids name the results)."""
    ids = [score.entry_id(m) for m in MUTANTS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_mutant_script_is_catalogued() -> None:
    """Ensure no mutant script or host plugin is left out of the catalogue (helpers start with an underscore)."""
    found = [*MUTANT_DIR.glob("*.py"), *(MUTANT_DIR / "host").glob("*.py"), *(MUTANT_DIR / "node").glob("*.js")]
    scripts = {p for p in found
               if not p.stem.startswith("_") and p.stem != "score"}
    assert scripts == {score.script(m) for m in MUTANTS}, scripts ^ {score.script(m) for m in MUTANTS}
