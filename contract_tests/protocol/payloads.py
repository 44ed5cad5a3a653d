"""Language-neutral payloads shipped in fixtures/payloads (read by every runner)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from contract_tests.datafiles import data_dir

PAYLOAD_DIR = data_dir() / "payloads"


@cache
def json_values() -> dict[str, Any]:
    """Named JSON values, each of which must round-trip with its type preserved."""
    values: dict[str, Any] = json.loads((PAYLOAD_DIR / "json_values.json").read_text())
    values.pop("_comment")
    return values


@cache
def catalogue_cases() -> list[dict[str, Any]]:
    """How the contract tools answer beside their main use: invalid parameters, defaults, the less used tools."""
    cases: list[dict[str, Any]] = json.loads((PAYLOAD_DIR / "catalogue_cases.json").read_text())["cases"]
    return cases
