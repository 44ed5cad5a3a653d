"""Where the language-neutral data lives: fixtures/ in a checkout, contract_tests/data in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The folder holding payloads/ and scenarios/ (the same files either way, see pyproject.toml)."""
    checkout = _HERE.parent / "fixtures"
    return checkout if (checkout / "scenarios").is_dir() else _HERE / "data"
