"""Self-tests of the report's informational inputs: the mutation score and a bench run, embedded and rendered.

The mutation score is built by fixtures/mutants/score.py from meta-test results in the shape the tier records;
tests/data/bench.json is the output of a short real `snakepit-contract bench` run (docs/bench.md), committed.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contract_tests import cli, errors
from contract_tests.report import html, json_report, markdown
from contract_tests.report.extras import ReportInputError, load_bench, load_mutation_score
from contract_tests.report.model import RunReport

ROOT = Path(__file__).resolve().parent.parent
BENCH_FILE = ROOT / "tests" / "data" / "bench.json"
_spec = importlib.util.spec_from_file_location("mutant_score", ROOT / "fixtures" / "mutants" / "score.py")
assert _spec is not None and _spec.loader is not None
score: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score)
# The report holding every outcome that tests/test_report_outputs.py renders (imported by path: tests/ is no package).
_outputs_spec = importlib.util.spec_from_file_location("report_outputs", ROOT / "tests" / "test_report_outputs.py")
assert _outputs_spec is not None and _outputs_spec.loader is not None
_outputs: Any = importlib.util.module_from_spec(_outputs_spec)
_outputs_spec.loader.exec_module(_outputs)
sample_report: Callable[[], RunReport] = _outputs.sample_report


def _score_file(tmp_path: Path, missed: str | None = None) -> Path:
    """mutation-score.json for results where every mutant was caught, except `missed`."""
    results = [{"id": score.entry_id(m), "caught": score.entry_id(m) != missed, "missed": [], "unexpected": []}
               for m in score.load_catalogue()["mutants"]]
    out = tmp_path / "scored"
    results_dir = tmp_path / "results"
    results_dir.mkdir(parents=True)
    for result in results:
        (results_dir / f"{result['id']}.json").write_text(json.dumps(result))
    score.write_score(results_dir, out)
    return out / str(score.SCORE_FILE)


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_report.load_schema(), format_checker=jsonschema.FormatChecker())


def test_mutation_score_is_embedded_as_metadata_and_shown_in_every_report(tmp_path: Path) -> None:
    """Ensure the tier's score file becomes metadata.mutation_score (schema-valid) and a line in .md and .html."""
    missed = score.entry_id(score.load_catalogue()["mutants"][0])
    found = load_mutation_score(_score_file(tmp_path, missed=missed))
    total = len(score.load_catalogue()["mutants"])
    assert (found["caught"], found["total"]) == (total - 1, total)
    assert {"worker", "host"} <= set(found["kinds"])
    assert found["areas"]["PROC"]["caught"] == found["areas"]["PROC"]["total"] - 1
    report = sample_report()
    report.mutation_score = found
    document = json.loads(json_report.render(report))
    _validator().validate(document)
    assert document["metadata"]["mutation_score"]["caught"] == total - 1
    outcomes = {m["id"]: m["outcome"] for m in document["metadata"]["mutation_score"]["mutants"]}
    assert outcomes[missed] == "missed" and list(outcomes.values()).count("caught") == total - 1
    line = f"{total - 1}/{total} mutants caught"
    assert f"| Mutation score | {line}" in markdown.render(report)
    assert f"<tr><th>Mutation score</th><td>{line}" in html.render(report)
    assert report.verdict() == sample_report().verdict()  # informational only


def test_report_without_extras_says_null() -> None:
    """Ensure a run given neither file still has the keys, as null, so readers need no guesswork."""
    document = json.loads(json_report.render(sample_report()))
    _validator().validate(document)
    assert document["metadata"] == {"mutation_score": None} and document["bench"] is None
    assert "Mutation score" not in markdown.render(sample_report())
    assert "Benchmark" not in markdown.render(sample_report()) and "bench-table" not in html.render(sample_report())


def test_bench_results_are_an_informational_section_with_ratios() -> None:
    """Ensure a real bench.json becomes the `bench` key (no samples) and a table of figures and ratios."""
    raw = json.loads(BENCH_FILE.read_text())
    bench = load_bench(BENCH_FILE)
    report = sample_report()
    report.bench = bench
    document = json.loads(json_report.render(report))
    _validator().validate(document)
    assert set(document["bench"]["targets"]) == set(raw["targets"])
    assert "samples" not in document["bench"]["targets"]["worker"]
    assert document["verdict"] == json.loads(json_report.render(sample_report()))["verdict"]
    text = markdown.render(report)
    baseline = raw["baselines"][0]
    assert "## Benchmark (informational)" in text and f"| worker / {baseline} |" in text
    ratio = raw["ratios"]["worker"]["calls_per_s"][baseline]
    row = next(line for line in text.splitlines() if line.startswith("| calls_per_s |"))
    assert f"| {ratio:.2f} |" in row or f"| {ratio:.2f}" in row
    page = html.render(report)
    assert "<table id='bench-table'>" in page and f"<th>worker / {baseline}</th>" in page


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"caught": 1, "total": 1}', "schema_version None is not 1"),
])
def test_bad_input_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    """Ensure a file that is not what the option wants is refused with the reason, for both options."""
    path = tmp_path / "input.json"
    path.write_text(content)
    for load in (load_mutation_score, load_bench):
        with pytest.raises(ReportInputError, match=message):
            load(path)


def test_inconsistent_mutation_score_is_refused(tmp_path: Path) -> None:
    """Ensure counts that do not add up are caught, not embedded."""
    path = _score_file(tmp_path)
    doc = json.loads(path.read_text())
    doc["caught"] = doc["total"] + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportInputError, match="cannot exceed total"):
        load_mutation_score(path)
    doc = {**json.loads(_score_file(tmp_path / "again").read_text()), "mutants": []}
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportInputError, match="'mutants' must list each"):
        load_mutation_score(path)


@pytest.mark.parametrize("option", ["--mutation-score", "--bench-results"])
def test_cli_refuses_a_bad_file_before_starting_anything(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ensure `run` exits with the usage-error status and names the file, starting no worker."""
    missing = tmp_path / "absent.json"
    assert cli.main(["run", option, str(missing), "--report-dir", str(tmp_path / "r")], out=io.StringIO()) \
        == errors.EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "r").exists()
