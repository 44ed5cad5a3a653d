"""Informational inputs a run can embed in its report: the suite's mutation score and a bench run.

Neither is a clause nor touches the verdict. `snakepit-contract run --mutation-score FILE` takes the
mutation-score.json the mutants tier writes (fixtures/mutants/score.py); `--bench-results FILE` takes the
bench.json `snakepit-contract bench` writes (contract_tests/bench/output.py). Both are checked here before
any worker starts, so a wrong file is a usage error naming what is wrong, not a broken report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MUTATION_SCORE_VERSION = 1
BENCH_VERSION = 1


class ReportInputError(ValueError):
    """A --mutation-score or --bench-results file that cannot be embedded; the message says why."""


@dataclass(frozen=True)
class ReportExtras:
    """What the CLI hands the report plugin: the validated documents, or None."""

    mutation_score: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[EXTRAS] = self


EXTRAS = pytest.StashKey[ReportExtras]()


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ReportInputError(f"cannot read {what} file {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportInputError(f"{what} file {path} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ReportInputError(f"{what} file {path} holds a JSON {type(doc).__name__}, not an object")
    return doc


def _count(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ReportInputError(f"{where}: {key!r} must be a count (a non-negative integer), not {value!r}")
    return value


def _tally(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise ReportInputError(f"{where}: expected {{caught, total, precise}}, got {row!r}")
    caught, total, precise = (_count(row, k, where) for k in ("caught", "total", "precise"))
    if caught > total or precise > total:
        raise ReportInputError(f"{where}: caught {caught} and precise {precise} cannot exceed total {total}")


def load_mutation_score(path: Path) -> dict[str, Any]:
    """mutation-score.json as written by fixtures/mutants/score.py (schema_version 1), checked field by field."""
    doc = _read(path, "mutation score")
    where = f"mutation score {path}"
    if doc.get("schema_version") != MUTATION_SCORE_VERSION:
        raise ReportInputError(f"{where}: schema_version {doc.get('schema_version')!r} is not "
                               f"{MUTATION_SCORE_VERSION}; write it with fixtures/mutants/score.py (tox -e mutants)")
    for key in ("suite_version", "date"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ReportInputError(f"{where}: {key!r} must be a non-empty string")
    _tally({**doc, "precise": 0}, where)
    score = doc.get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
        raise ReportInputError(f"{where}: 'score' must be a fraction between 0 and 1, not {score!r}")
    if not isinstance(doc.get("complete"), bool):
        raise ReportInputError(f"{where}: 'complete' must be true or false")
    for group in ("areas", "kinds"):
        rows = doc.get(group)
        if not isinstance(rows, dict) or not rows:
            raise ReportInputError(f"{where}: {group!r} must be a non-empty object of tallies")
        for name, row in rows.items():
            _tally(row, f"{where}, {group}.{name}")
        if sum(r["total"] for r in rows.values()) != doc["total"]:
            raise ReportInputError(f"{where}: the {group} totals do not add up to total {doc['total']}")
    languages = doc.get("languages", {})  # absent from scores written before mutants came in two languages
    if not isinstance(languages, dict):
        raise ReportInputError(f"{where}: 'languages' must be an object of tallies")
    for name, row in languages.items():
        _tally(row, f"{where}, languages.{name}")
    mutants = doc.get("mutants")
    if not isinstance(mutants, list) or len(mutants) != doc["total"] or not all(
            isinstance(m, dict) and isinstance(m.get("id"), str) and m.get("outcome") in ("caught", "missed", "not run")
            for m in mutants):
        raise ReportInputError(f"{where}: 'mutants' must list each of the {doc['total']} mutants with its id and "
                               "outcome (caught, missed or not run)")
    return {**{key: doc[key] for key in ("schema_version", "suite_version", "date", "caught", "total", "score",
                                         "complete", "areas", "kinds", "mutants")}, "languages": languages}


def _finite(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))


def load_bench(path: Path) -> dict[str, Any]:
    """bench.json as written by `snakepit-contract bench` (schema_version 1), checked where the report reads it."""
    doc = _read(path, "bench results")
    where = f"bench results {path}"
    if doc.get("schema_version") != BENCH_VERSION:
        raise ReportInputError(f"{where}: schema_version {doc.get('schema_version')!r} is not {BENCH_VERSION}; "
                               "write it with `snakepit-contract bench`")
    for key, kind in (("created", str), ("profile", str), ("units", dict), ("baselines", list),
                      ("targets", dict), ("ratios", dict), ("settings", dict), ("machine", dict)):
        if not isinstance(doc.get(key), kind):
            raise ReportInputError(f"{where}: {key!r} must be a {kind.__name__}")
    if "worker" not in doc["targets"]:
        raise ReportInputError(f"{where}: no 'worker' target")
    for name in ["worker", *doc["baselines"]]:
        target = doc["targets"].get(name)
        if not isinstance(target, dict) or not isinstance(target.get("summary"), dict) \
                or not isinstance(target.get("skipped"), dict):
            raise ReportInputError(f"{where}: target {name!r} needs a summary and a skipped object")
        for figure, stat in target["summary"].items():
            if not isinstance(stat, dict) or not all(_finite(stat.get(k)) for k in ("median", "min", "max")):
                raise ReportInputError(f"{where}: {name}.{figure} needs numeric median, min and max")
    for figure, by_base in doc["ratios"].get("worker", {}).items():
        if not isinstance(by_base, dict) or not all(_finite(v) for v in by_base.values()):
            raise ReportInputError(f"{where}: ratios of {figure!r} must be numbers or null")
    # The figures and ratios, not the raw samples: the report says how the worker compared, bench.json the rest.
    targets = {name: {k: t.get(k) for k in ("command", "summary", "skipped")} for name, t in doc["targets"].items()}
    keep = ("schema_version", "created", "profile", "machine", "settings", "units", "lower_is_better", "baselines")
    return {**{k: doc.get(k) for k in keep}, "targets": targets, "ratios": doc["ratios"]}


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def bench_table(bench: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and a note for the report's bench section: each figure for the worker and every bare
    baseline (median, min-max), then the worker's ratio to each baseline."""
    baselines: list[str] = bench["baselines"]
    worker = bench["targets"]["worker"]
    lower = set(bench.get("lower_is_better") or ())
    header = ["Figure", "Unit", "worker", *baselines, *(f"worker / {b}" for b in baselines)]
    rows = []
    for figure, unit in bench["units"].items():
        if figure in worker["skipped"]:
            rows.append([figure, unit, f"skipped: {worker['skipped'][figure]}", *[""] * (2 * len(baselines))])
            continue
        if figure not in worker["summary"]:
            continue
        cells = []
        for name in ["worker", *baselines]:
            stat = bench["targets"][name]["summary"].get(figure)
            spread = "" if stat is None or stat.get("n") == 1 else f" ({_figure(stat['min'])}-{_figure(stat['max'])})"
            cells.append("-" if stat is None else _figure(stat["median"]) + spread)
        ratios = bench["ratios"].get("worker", {}).get(figure, {})
        rows.append([f"{figure}{' (lower is better)' if figure in lower else ''}", unit, *cells,
                     *("-" if ratios.get(b) is None else f"{ratios[b]:.2f}" for b in baselines)])
    settings = bench["settings"]
    cpus = bench["machine"].get("cpus", "?")
    note = (f"Medians (min-max when repeated) of {settings.get('repeat', '?')} repetitions, measured by "
            f"`snakepit-contract bench` on {bench['created']} with profile {bench['profile']} ({cpus} CPUs); "
            "ratio = worker / bare baseline measured in the same run. Informational: not a clause, "
            "not part of the verdict.")
    return header, rows, note
