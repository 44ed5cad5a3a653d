"""The e2e tier end to end: find what it needs, run real Snakepit, compare with the emulator, summarise.

A tier that cannot run says NOT-RUN and why (no sources and no Hex, no engine, no base image, no wheels);
one that could not finish says ERROR with the evidence. Neither is ever reported as passing.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contract_tests.contract.clause import REGISTRY
from contract_tests.contract.profiles import Profile, get_profile
from contract_tests.e2e import image, live
from contract_tests.e2e.compare import (
    AGREE,
    DIVERGE,
    KNOWN,
    NOT_RUN,
    UNJUDGED,
    Comparison,
    compare,
    emulator_side,
    snakepit_side,
)
from contract_tests.e2e.sources import Sources, SourcesMissing, locate
from contract_tests.elixir.scenarios import expectation, load_scenario, scenario_applies, scenario_names
from contract_tests.report.baseline import load_baseline

RAN, ERROR = "RAN", "ERROR"


@dataclass
class TierResult:
    version: str
    worker: str
    status: str
    reason: str = ""
    origin: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    evidence: str = ""

    def counts(self) -> Counter[str]:
        return Counter(c.status for c in self.comparisons)

    def as_json(self) -> dict[str, Any]:
        return {"snakepit_version": self.version, "worker": self.worker, "status": self.status,
                "reason": self.reason, "snakepit_from": self.origin, "counts": dict(self.counts()),
                "scenarios": [c.as_json() for c in self.comparisons], "evidence": self.evidence}


def _hex_enabled() -> bool:
    return os.environ.get(image.HEX_ENV, "") in {"1", "true", "yes"}


def find_sources(version: str, given: Path | None) -> Sources | None:
    """The sources to build from; None means Hex (only when enabled); NotAvailable otherwise."""
    try:
        return locate(version, given)
    except SourcesMissing as missing:
        if _hex_enabled():
            return None
        raise image.NotAvailable(f"{missing}; and Hex is not enabled (set {image.HEX_ENV}=1 where the package "
                                 "registry is reachable)") from None


def _selection(version: str, worker: live.Worker) -> tuple[list[str], list[Comparison]]:
    """Scenarios that apply to this release's rules; those needing contract tools the worker lacks are NOT-RUN."""
    chosen, skipped = [], []
    for name in scenario_names():
        scenario = load_scenario(name)
        if not scenario_applies(scenario, get_profile(version)):
            continue
        needed = scenario.get("requires_tools", [])
        if needed and not worker.contract_tools:
            skipped.append(Comparison(name, NOT_RUN, f"needs contract tools ({', '.join(needed)}) that the "
                                                     f"{worker.name} worker does not implement"))
        else:
            chosen.append(name)
    return chosen, skipped


def known_failures(worker: live.Worker, version: str, profile: Profile) -> dict[str, str]:
    """The worker's documented failures at this release, by clause: its baseline `<version>.toml`, if any."""
    path = worker.baselines / f"{version}.toml" if worker.baselines else None
    if path is None or not path.is_file():
        return {}
    return {e.clause: e.reason for e in load_baseline(path, REGISTRY).entries if e.profile in (None, profile.name)}


def for_release(scenario: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """The scenario as the Elixir runner reads it: each step's expectation resolved for this release, as the
    emulator resolves it, so the runner needs no knowledge of which release expects what."""
    steps = []
    for step in scenario["steps"]:
        resolved = {key: value for key, value in step.items() if key != "expect_when"}
        expect = expectation(step, profile)
        if expect:
            resolved["expect"] = expect
        steps.append(resolved)
    return {**scenario, "steps": steps}


def run_tier(version: str, worker_name: str = "reference", sources_dir: Path | None = None,
             timeout_scale: float = 1.0) -> TierResult:
    """Everything the tier does for one Snakepit version and one worker."""
    worker = live.WORKERS[worker_name]()
    result = TierResult(version, worker_name, NOT_RUN)
    try:
        sources = find_sources(version, sources_dir)
        result.origin = f"sources {sources.root} (via {sources.found_via})" if sources else "Hex"
        client = image.engine()
        tag = image.build(client, version, sources, image.bridge_wheels(version) if worker.name == "snakepit-bridge"
                          else None)
    except image.NotAvailable as why:
        result.reason = str(why)
        return result
    except image.BuildFailed as failed:
        result.status, result.reason, result.evidence = ERROR, "the host image did not build", str(failed)
        return result
    names, result.comparisons = _selection(version, worker)
    profile = get_profile(version)
    run = live.run(tag, [for_release(load_scenario(name), profile) for name in names], worker)
    if not run.finished:
        result.status = ERROR
        result.reason = f"real Snakepit printed no run_end line (container exit status {run.exit_status})"
        result.evidence = run.log_tail()
        return result
    result.status = RAN
    known = known_failures(worker, version, profile)
    for name in names:
        scenario = load_scenario(name)
        result.comparisons.append(compare(scenario, snakepit_side(scenario, run.events),
                                          functools.partial(emulator_side, scenario, profile, timeout_scale), known))
    result.comparisons.sort(key=lambda c: c.scenario)
    return result


def summary(result: TierResult, out: TextIO) -> None:
    """The human summary: one line per scenario, then each divergence with both traces."""
    head = f"e2e: Snakepit {result.version}, worker {result.worker}"
    if result.status != RAN:
        print(f"{head}: {result.status}: {result.reason}", file=out)
        if result.evidence:
            print(result.evidence, file=out)
        return
    print(f"{head} (Snakepit from {result.origin})", file=out)
    for c in result.comparisons:
        sides = "" if c.snakepit is None or c.emulator is None else "  " + ", ".join(
            f"{clause} snakepit={c.snakepit.clauses[clause]} emulator={c.emulator.clauses[clause]}"
            for clause in c.snakepit.clauses)
        print(f"  {c.status:<8} {c.scenario}{sides}{'  (' + c.reason + ')' if c.reason else ''}", file=out)
    for c in result.comparisons:
        if c.status in (DIVERGE, UNJUDGED) and c.snakepit is not None and c.emulator is not None:
            print(f"finding: {c.scenario} {'diverges' if c.status == DIVERGE else 'was not judged'}", file=out)
            for label, side in (("real Snakepit", c.snakepit), ("emulator", c.emulator)):
                print(f"  {label}: {side.clauses}", file=out)
                for line in side.trace:
                    print("    " + line.replace("\n", "\n    "), file=out)
    counts = result.counts()
    print(f"e2e: Snakepit {result.version}, worker {result.worker}: {len(result.comparisons)} scenarios, "
          f"{counts[AGREE]} agree, {counts[DIVERGE]} diverge, {counts[UNJUDGED]} unjudged, {counts[NOT_RUN]} not run, "
          f"{counts[KNOWN]} known worker failures",
          file=out)


def write_json(result: TierResult, report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"e2e-{result.version}-{result.worker}.json"
    path.write_text(json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8")
    return path
