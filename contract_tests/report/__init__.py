"""Conformance reports: the verdict model, baselines, and the files written to --report-dir."""

from __future__ import annotations

from pathlib import Path

from contract_tests.report import badge, html, json_report, junit, markdown
from contract_tests.report.model import RunReport

OUTPUTS = ("conformance.json", "conformance.md", "junit.xml", "conformance.html", "badge.svg")


def write_all(report: RunReport, directory: Path) -> list[Path]:
    """Write the five outputs, plus each failing worker's output under workers/; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "conformance.json": json_report.render(report),
        "conformance.md": markdown.render(report),
        "junit.xml": junit.render(report),
        "conformance.html": html.render(report),
        "badge.svg": badge.render(report),
    }
    written = []
    for name, text in texts.items():
        (directory / name).write_text(text, encoding="utf-8")
        written.append(directory / name)
    for result in report.results:
        for name, text in result.logs.items():
            path = directory / "workers" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
