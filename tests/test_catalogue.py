"""Self-tests of the clause catalogue (contract_tests/contract/catalogue.toml) and its traceability."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract_tests import cli
from contract_tests.contract.clause import TESTS, CatalogueError, load_catalogue


def test_every_clause_has_a_test_and_every_test_a_clause() -> None:
    """Ensure traceability both ways: catalogue clauses are checked, clause tests name catalogue clauses."""
    registry = cli.load_clauses()
    assert sorted(registry) == sorted(TESTS), set(registry) ^ set(TESTS)


def test_requirement_sentences_are_one_line_and_rest_on_entries() -> None:
    """Ensure each clause reads as one sentence and rests on at least one docs/snakepit/ entry."""
    for found in load_catalogue().values():
        assert found.requirement.endswith(".") and "\n" not in found.requirement, found.id
        assert found.rests_on, found.id


P = "[clauses.PROC-001]\n"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('[clauses.PROC-1]\nlevel="MUST"', "AREA-NNN"),
        ('[clauses.ZZZ-001]\nlevel="MUST"', "not listed in [areas]"),
        (P + 'level="OUGHT"\napplies="always"\nrequirement="x"\nrests_on=["a"]', "MUST/SHOULD"),
        (P + 'level="MUST"\napplies="heartbeats"\nrequirement="x MUST"\nrests_on=["a"]', "heartbeats"),
        (P + 'level="MUST"\napplies="always"\nrequirement="x SHOULD"\nrests_on=["a"]', "say MUST"),
        (P + 'level="MUST"\napplies="always"\nrequirement="x MUST"\nrests_on=[]', "rests_on"),
        (P + 'level="MUST"\napplies="always"\nrequirement="x MUST"\nrests_on="x"', "rests_on"),
    ],
)
def test_malformed_catalogue_is_rejected_with_the_clause_named(tmp_path: Path, entry: str, problem: str) -> None:
    """Ensure catalogue mistakes are caught at load time with a message naming the clause."""
    path = tmp_path / "catalogue.toml"
    path.write_text('[areas]\nPROC = "Process"\n\n' + entry + "\n")
    with pytest.raises(CatalogueError, match=re.escape(problem)):
        load_catalogue(path)
