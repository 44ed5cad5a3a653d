"""Self-test of the packaging: every package in the source tree ships in the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_for_the_wheel() -> None:
    """Ensure a new subpackage cannot be forgotten in pyproject's explicit package list."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("contract_tests", "reference_worker")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, found - listed


def test_data_the_package_reads_ships_in_the_wheel() -> None:
    """Ensure the catalogue and the record of Snakepit's behaviour are package data, so `explain` works installed."""
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = {p for p in (ROOT / "contract_tests").rglob("*") if p.suffix in {".toml", ".ini"}}
    missing = {p for p in data if p.name not in shipped[".".join(p.parent.relative_to(ROOT).parts)]}
    assert not missing, missing
