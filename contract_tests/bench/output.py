"""bench.json (schema_version 1) and the human table, both built from a BenchRun."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from contract_tests.bench.measure import LOWER_IS_BETTER, UNITS
from contract_tests.bench.runner import WORKER, BenchRun
from contract_tests.bench.stats import ratio, spread

SCHEMA_VERSION = 1
FILE_NAME = "bench.json"


def _target_doc(run: BenchRun, name: str) -> dict[str, Any]:
    samples = run.samples[name]
    summary = {}
    for figure in UNITS:
        values = [s.figures[figure] for s in samples if figure in s.figures]
        if values:
            summary[figure] = spread(values)
    skipped: dict[str, str] = {}
    for sample in samples:
        for figure, reason in sample.skipped.items():
            skipped.setdefault(figure, reason)
    target = next(t for t in run.targets if t.name == name)
    return {"command": list(target.command), **({"image": target.image} if target.image else {}), "summary": summary,
            "skipped": skipped, "samples": [s.figures for s in samples]}


def build(run: BenchRun) -> dict[str, Any]:
    """The bench.json document: settings, machine, every target's samples and summary, ratios."""
    targets = {t.name: _target_doc(run, t.name) for t in run.targets}
    baselines = [t.name for t in run.targets if t.name != WORKER]
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, doc in targets.items():
        ratios[name] = {
            figure: {base: ratio(stat["median"], targets[base]["summary"].get(figure, {}).get("median"))
                     for base in baselines}
            for figure, stat in doc["summary"].items()
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "profile": run.profile,
        "settings": vars(run.settings),
        "units": dict(UNITS),
        "lower_is_better": sorted(LOWER_IS_BETTER),
        "baselines": baselines,
        "targets": targets,
        "ratios": ratios,
    }


def write(doc: dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / FILE_NAME
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _cell(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "-"
    if stat["n"] == 1:
        return _number(stat["median"])
    return f"{_number(stat['median'])} ({_number(stat['min'])}-{_number(stat['max'])})"


def table(doc: dict[str, Any]) -> str:
    """Figure | worker median (min-max) | each baseline | worker / baseline ratio per baseline."""
    baselines: list[str] = doc["baselines"]
    worker = doc["targets"][WORKER]
    header = ["figure", "unit", WORKER, *baselines, *(f"x {b}" for b in baselines)]
    rows = [header]
    for figure, unit in doc["units"].items():
        if figure in worker["skipped"]:
            rows.append([figure, unit, f"skipped: {worker['skipped'][figure]}"])
            continue
        ratios = doc["ratios"][WORKER].get(figure, {})
        rows.append([figure, unit, _cell(worker["summary"].get(figure)),
                     *(_cell(doc["targets"][b]["summary"].get(figure)) for b in baselines),
                     *("-" if ratios.get(b) is None else f"{ratios[b]:.2f}" for b in baselines)])
    widths = [max(len(r[i]) for r in rows if i < len(r) and (len(r) > 3 or i < 2)) for i in range(len(header))]
    lines = []
    for row in rows:
        if len(row) == 3:
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
        else:
            cells = (cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    note = (f"medians of {doc['settings']['repeat']} repetitions (min-max); ratio = worker / baseline, "
            f"run {doc['created']} with profile {doc['profile']}")
    return "\n".join([*lines, note])
