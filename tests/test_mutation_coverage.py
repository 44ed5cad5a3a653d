"""Every MUST and SHOULD clause has a mutant that breaks it, or a recorded reason why none can (no worker runs).

fixtures/mutants/catalogue.json lists the mutants (targets, blast radius), `not_worker_clauses` (clauses that
judge the emulated Elixir side or the harness, which no worker defect can influence) and `unfailable_clauses`
(clauses a worker influences but whose check cannot come out FAIL as the suite is written). The clauses
accepted without a mutant are printed, so the gap stays visible.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli
from contract_tests.clause import Clause, Level

MUTANT_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "mutants"
CATALOGUE: dict[str, Any] = json.loads((MUTANT_DIR / "catalogue.json").read_text())
MUTANTS: list[dict[str, Any]] = CATALOGUE["mutants"]
EXEMPT: dict[str, str] = {**CATALOGUE.get("not_worker_clauses", {}), **CATALOGUE.get("unfailable_clauses", {})}


@pytest.fixture(scope="module")
def registry() -> dict[str, Clause]:
    return cli.load_clauses()


def test_every_must_and_should_clause_has_a_mutant_or_a_reason(
    registry: dict[str, Clause], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ensure each MUST/SHOULD clause is targeted by a mutant or listed, with a reason, as impossible to target."""
    targeted = {target for mutant in MUTANTS for target in mutant["targets"]}
    judged = sorted(cid for cid, c in registry.items() if c.level in (Level.MUST, Level.SHOULD))
    uncovered = [cid for cid in judged if cid not in targeted and cid not in EXEMPT]
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
    assert not set(CATALOGUE.get("not_worker_clauses", {})) & set(CATALOGUE.get("unfailable_clauses", {}))


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m['name']}-{'+'.join(m['profiles'])}" for m in MUTANTS])
def test_mutant_entry_is_well_formed(mutant: dict[str, Any], registry: dict[str, Clause]) -> None:
    """Ensure a mutant's script exists, its targets are clauses of its profiles, its blast radius matches clauses."""
    assert (MUTANT_DIR / f"{mutant['name']}.py").is_file(), mutant["name"]
    assert mutant["targets"], mutant
    assert mutant["profiles"] and set(mutant["profiles"]) <= {"snakepit-0.6", "snakepit-0.13"}, mutant
    for target in mutant["targets"]:
        assert target in registry, f"{mutant['name']}: unknown target {target}"
        assert registry[target].profiles & set(mutant["profiles"]), f"{mutant['name']}: {target} fits no profile"
    for glob in mutant.get("blast_radius", []):
        assert fnmatch.filter(registry, glob), f"{mutant['name']}: blast radius {glob!r} matches no clause"
        assert glob not in mutant["targets"], f"{mutant['name']}: {glob} is a target, not blast radius"
    assert float(mutant.get("timeout_scale", 1)) > 0


def test_entries_are_unique() -> None:
    """Ensure no mutant is listed twice for the same profiles (ids name the results)."""
    ids = [f"{m['name']}-{'+'.join(m['profiles'])}" for m in MUTANTS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_mutant_script_is_catalogued() -> None:
    """Ensure no mutant script is left out of the catalogue (helpers start with an underscore)."""
    scripts = {p.stem for p in MUTANT_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "score"}
    assert scripts == {m["name"] for m in MUTANTS}, scripts ^ {m["name"] for m in MUTANTS}
