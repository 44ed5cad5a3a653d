"""`snakepit-contract explore`: generated pool programs on the emulator and on real Snakepit, every difference
shrunk to a scenario file (docs/explore.md).

Both sides run every program; their results are compared clause by clause (PASS, FAIL, ABORTED) and step by
step (PASS, FAIL, RAISED, NOT-REACHED). Real Snakepit runs all of a batch in one container and one BEAM. A
program whose results differ is shrunk by delta debugging over its steps, each round's candidates of every
such program run as one batch (one container run), and written under fixtures/scenarios/found/ with both
sides' traces on its steps.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contract_tests.contract.profiles import Profile, get_profile
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.e2e import image, live
from contract_tests.e2e.compare import ABORTED, FAIL, PASS, snakepit_side
from contract_tests.e2e.tier import find_sources, for_release
from contract_tests.elixir.scenarios import ScenarioRunner
from contract_tests.errors import ContractViolation
from contract_tests.judging.settings import DEFAULT_WORKER_CMD

Program = dict[str, Any]
RAISED, NOT_REACHED = "RAISED", "NOT-REACHED"
# Real Snakepit's container run: its start, and a bound per program that no program of MAX_STEPS comes near.
_RUN_BASE_S, _RUN_PER_PROGRAM_S = 180.0, 40.0
_STEP_MARK = re.compile(r"\bstep (\d+) ")


class ExploreError(Exception):
    """Real Snakepit could not run a batch (no image, no run_end): the exploration cannot judge anything."""


@dataclass
class Result:
    """One side's outcome of one program: the verdict per clause, the outcome per step, what each failed step
    saw (by step number) and the rest of the evidence."""

    clauses: dict[str, str]
    steps: list[str]
    notes: dict[int, str] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return tuple(sorted(self.clauses.items())), tuple(self.steps)

    def as_json(self) -> dict[str, Any]:
        return {"clauses": self.clauses, "steps": self.steps, "notes": {str(k): v for k, v in self.notes.items()},
                "trace": self.trace}


@dataclass
class Outcome:
    """Both sides of one program."""

    program: Program
    snakepit: Result
    emulator: Result

    @property
    def differs(self) -> bool:
        return self.snakepit.key() != self.emulator.key()


# -- each side ------------------------------------------------------------------------------------------------
def snakepit_result(program: Mapping[str, Any], events: list[dict[str, Any]]) -> Result:
    """What real Snakepit's result lines say of this program, step by step."""
    side = snakepit_side(program, events)
    steps = [NOT_REACHED] * len(program["steps"])
    notes: dict[int, str] = {}
    for event in events:
        if event.get("scenario") != program["name"] or event.get("event") != "step":
            continue
        index = int(event["index"])
        if event.get("passed"):
            steps[index - 1] = PASS
            continue
        steps[index - 1] = RAISED if "error" in event else FAIL
        notes[index] = (f"raised {str(event['error'])[:300]}" if "error" in event
                        else f"expected {event.get('expected')}; actual {event.get('actual')}")
        if event.get("observed"):
            notes[index] += f" (observed: {event['observed']})"
    return Result(side.clauses, steps, notes, side.trace)


def emulator_result(program: Mapping[str, Any], profile: Profile, timeout_scale: float = 1.0) -> Result:
    """The program through the pool emulator with the reference worker, step by step."""
    clauses = list(program["clauses"])
    runner: ScenarioRunner | None = None

    def make_spec() -> WorkerSpec:
        assert runner is not None
        return WorkerSpec(command=tuple(DEFAULT_WORKER_CMD), profile=profile,
                          elixir_address=runner.host.elixir_address_for_worker, timeout_scale=timeout_scale)

    runner = ScenarioRunner(program, profile, make_spec, timeout_scale)
    aborted: str | None = None
    try:
        violations = runner.run()
    except ContractViolation as violation:
        aborted, violations = f"aborted: {violation}", {}
    except Exception as err:  # the emulator itself failed: as visible as an aborted run
        aborted, violations = f"emulator error: {type(err).__name__}: {err}", {}
    found = [str(v) for vs in violations.values() for v in vs]
    notes: dict[int, str] = {}
    for text in found + ([aborted] if aborted else []):
        mark = _STEP_MARK.search(text)
        if mark:
            notes[int(mark.group(1))] = text.split("\n", 1)[-1][:600]
    steps = []
    for index in range(1, len(program["steps"]) + 1):
        if index > runner.reached:
            steps.append(NOT_REACHED)
        elif index in runner.failed_steps:
            steps.append(FAIL)
        elif aborted and index == runner.reached:
            steps.append(RAISED)
            notes.setdefault(index, aborted[:600])
        else:
            steps.append(PASS)
    if aborted:
        return Result({c: ABORTED for c in clauses}, steps, notes, [*found, aborted])
    return Result({c: FAIL if violations.get(c) else PASS for c in clauses}, steps, notes, found)


@dataclass
class Sides:
    """How to run a batch of programs on each side: real Snakepit (one container run) and the emulator."""

    snakepit: Callable[[list[Program]], list[dict[str, Any]]]
    emulator: Callable[[Program], Result]


def run_batch(programs: list[Program], sides: Sides, progress: Callable[[str], None]) -> list[Outcome]:
    """Both sides of every program: the container run in this thread, the emulator alongside in another (it
    finishes the program it is in when this thread is interrupted, and starts no other)."""
    emulated: dict[str, Result] = {}
    stop = threading.Event()

    def emulate() -> None:
        for number, program in enumerate(programs, 1):
            if stop.is_set():
                return
            emulated[program["name"]] = sides.emulator(program)
            if number % 25 == 0:
                progress(f"emulator: {number}/{len(programs)} programs")

    worker = threading.Thread(target=emulate, name="explore-emulator", daemon=True)
    worker.start()
    try:
        events = sides.snakepit(programs)
    except BaseException:  # Ctrl-C or a failed run: the emulator starts no further program
        stop.set()
        raise
    finally:
        worker.join()
    return [Outcome(p, snakepit_result(p, events), emulated[p["name"]]) for p in programs]


def live_side(version: str, sources_dir: Path | None, progress: Callable[[str], None]
              ) -> Callable[[list[Program]], list[dict[str, Any]]]:
    """Real Snakepit at `version`, the reference worker: the host image built (or reused) once, then one container
    run per batch."""
    try:
        sources = find_sources(version, sources_dir)
        progress(f"the host image of Snakepit {version} (built once, then reused)")
        tag = image.build(image.engine(), version, sources)
    except image.NotAvailable as why:
        raise ExploreError(f"NOT-RUN: {why}") from None
    except image.BuildFailed as failed:
        raise ExploreError(f"ERROR: the host image did not build\n{failed}") from None
    profile = get_profile(version)

    def run(programs: list[Program]) -> list[dict[str, Any]]:
        progress(f"real Snakepit {version}: {len(programs)} programs in one container")
        run = live.run(tag, [for_release(p, profile) for p in programs], live.reference(),
                       timeout_s=_RUN_BASE_S + _RUN_PER_PROGRAM_S * len(programs))
        if not run.finished:
            raise ExploreError(f"ERROR: real Snakepit printed no run_end line (container exit status "
                               f"{run.exit_status})\n{run.log_tail()}")
        return run.events

    return run


# -- shrinking ------------------------------------------------------------------------------------------------
def repair(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What is left of a program after steps were removed, made valid again: an await or a crash whose call is
    gone goes, a routing expectation naming a removed call goes, leftovers without stop_pool go."""
    kept: list[dict[str, Any]] = []
    sync_ids: set[str] = set()
    async_ids: set[str] = set()
    stopped = False
    for original in steps:
        step = {**original}
        op = step["op"]
        if (op == "await" and step["of"] not in async_ids) or (op == "crash_worker" and step["of"] not in sync_ids):
            continue
        if op == "leftovers" and not stopped:
            continue
        if "expect" in step and op in ("execute", "await"):
            expect = {k: v for k, v in step["expect"].items()
                      if k not in ("same_worker_as", "different_worker_than") or v in sync_ids}
            step["expect"] = expect
            if not expect:
                del step["expect"]
        if op == "await":
            async_ids.discard(step["of"])
        if op == "execute" and "id" in step:
            sync_ids.add(step["id"])
        if op == "execute_async":
            async_ids.add(step["id"])
        stopped = stopped or op == "stop_pool"
        kept.append(step)
    return kept


def without(program: Mapping[str, Any], start: int, stop: int, name: str) -> Program | None:
    """The program with steps[start:stop] removed and repaired; None when nothing changed or nothing is left."""
    from contract_tests.e2e.generator import finish

    steps = repair([*program["steps"][:start], *program["steps"][stop:]])
    if not steps or steps == program["steps"]:
        return None
    return finish(name, program["pool"], steps, program["description"])


@dataclass
class Shrinking:
    """One differing program being shrunk: the smallest version still differing, and the chunk size to try."""

    original: Outcome
    smallest: Outcome
    chunk: int
    reproduced: bool = True
    done: bool = False
    rounds: int = 0


def shrink(outcomes: list[Outcome], run: Callable[[list[Program]], list[Outcome]],
           max_rounds: int = 12, progress: Callable[[str], None] = lambda _: None) -> list[Shrinking]:
    """Delta debugging over steps (complements of chunks, halving the chunk when none still differs), all the
    differing programs' candidates of a round run as one batch. The first batch re-runs the originals: one
    that no longer differs is a race, reported as not reproduced and not shrunk."""
    work = [Shrinking(o, o, max(1, len(o.program["steps"]) // 2)) for o in outcomes]
    rerun = run([{**o.program, "name": f"{o.program['name']}-again"} for o in outcomes])
    for state, again in zip(work, rerun, strict=True):
        state.reproduced = again.differs
        state.done = not again.differs
    for round_number in range(1, max_rounds + 1):
        batch: list[tuple[Shrinking, Program]] = []
        for number, state in enumerate(work):
            if state.done:
                continue
            steps = state.smallest.program["steps"]
            for start in range(0, len(steps), state.chunk):
                name = f"explore/shrink-{round_number}-{number}-{start}"
                candidate = without(state.smallest.program, start, start + state.chunk, name)
                if candidate is not None:
                    batch.append((state, candidate))
        if not batch:
            break
        progress(f"shrinking, round {round_number}: {len(batch)} candidates")
        results = run([candidate for _, candidate in batch])
        for state in work:
            if state.done:
                continue
            state.rounds = round_number
            smaller = next((r for (owner, _), r in zip(batch, results, strict=True) if owner is state and r.differs),
                           None)
            if smaller is not None:
                state.smallest = smaller
                state.chunk = max(1, min(state.chunk, len(smaller.program["steps"]) // 2))
            elif state.chunk > 1:
                state.chunk //= 2
            else:
                state.done = True
    return work


# -- coverage, findings, report -------------------------------------------------------------------------------
def coverage(programs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the programs exercised: steps, kinds, and pairs of consecutive kinds (interleavings)."""
    from contract_tests.e2e.generator import step_kind

    kinds: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for program in programs:
        sequence = [step_kind(s) for s in program["steps"]]
        kinds.update(sequence)
        pairs.update(f"{a} -> {b}" for a, b in itertools.pairwise(sequence))
    return {"programs": len(programs), "steps": sum(kinds.values()), "step_kinds": dict(sorted(kinds.items())),
            "interleavings": dict(sorted(pairs.items()))}


def found_scenario(state: Shrinking, version: str, name: str) -> Program:
    """The shrunk program as a scenario file: each step that differs carries both sides' result in its note."""
    smallest = state.smallest
    steps = []
    for index, step in enumerate(smallest.program["steps"], 1):
        real, emulated = smallest.snakepit.steps[index - 1], smallest.emulator.steps[index - 1]
        if real != emulated or index in smallest.snakepit.notes or index in smallest.emulator.notes:
            real_note = smallest.snakepit.notes.get(index, "")
            emulated_note = smallest.emulator.notes.get(index, "")
            step = {**step, "note": f"real Snakepit {version}: {real}{' - ' + real_note if real_note else ''}"
                                    f" | emulator: {emulated}{' - ' + emulated_note if emulated_note else ''}"}
        steps.append(step)
    verdicts = ", ".join(f"{c} snakepit={smallest.snakepit.clauses.get(c)} emulator={smallest.emulator.clauses.get(c)}"
                         for c in smallest.program["clauses"])
    return {**smallest.program, "name": name, "steps": steps,
            "description": f"Found by snakepit-contract explore at Snakepit {version} (from "
                           f"{state.original.program['name']}, {len(state.original.program['steps'])} steps, shrunk "
                           f"in {state.rounds} rounds): {verdicts}."}


def _found_name(version: str, program_name: str) -> str:
    return "found/" + f"{version}-{program_name.rsplit('/', 1)[-1]}".replace(".", "-").lower()


@dataclass
class Exploration:
    version: str
    seed: int
    programs: list[Program]
    outcomes: list[Outcome]
    shrunk: list[Shrinking]
    found_files: list[Path]
    seconds: float

    def step_results(self) -> dict[str, dict[str, int]]:
        """How the steps came out on each side: a run where nothing passes explores nothing."""
        return {"snakepit": dict(Counter(r for o in self.outcomes for r in o.snakepit.steps)),
                "emulator": dict(Counter(r for o in self.outcomes for r in o.emulator.steps))}

    def as_json(self) -> dict[str, Any]:
        return {
            "snakepit_version": self.version, "seed": self.seed, "seconds": round(self.seconds, 1),
            **coverage(self.programs), "step_results": self.step_results(),
            "agree": sum(1 for o in self.outcomes if not o.differs),
            "divergences": [
                {"program": s.original.program["name"], "reproduced": s.reproduced,
                 "original": {"scenario": s.original.program, "snakepit": s.original.snakepit.as_json(),
                              "emulator": s.original.emulator.as_json()},
                 "shrunk": {"scenario": s.smallest.program, "snakepit": s.smallest.snakepit.as_json(),
                            "emulator": s.smallest.emulator.as_json()} if s.reproduced else None}
                for s in self.shrunk],
            "found_files": [str(p) for p in self.found_files],
        }


def explore(version: str, count: int, seed: int, sides: Sides, found_dir: Path,
            progress: Callable[[str], None], max_rounds: int = 12) -> Exploration:
    """Generate, run both sides, shrink what differs and write it down."""
    from contract_tests.e2e.generator import generate

    started = time.monotonic()
    programs = generate(get_profile(version), count, seed)
    progress(f"{len(programs)} programs generated (seed {seed})")
    outcomes = run_batch(programs, sides, progress)
    differing = [o for o in outcomes if o.differs]
    shrunk = shrink(differing, lambda batch: run_batch(batch, sides, progress), max_rounds, progress) \
        if differing else []
    files = []
    for state in shrunk:
        if not state.reproduced:
            continue
        name = _found_name(version, state.original.program["name"])
        path = found_dir / f"{name.removeprefix('found/')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found_scenario(state, version, name), indent=2) + "\n", encoding="utf-8")
        files.append(path)
    return Exploration(version, seed, programs, outcomes, shrunk, files, time.monotonic() - started)


def summary(result: Exploration, out: TextIO) -> None:
    """The terminal report: what was explored, then each divergence with both sides, step by step."""
    cover = coverage(result.programs)
    print(f"explore: Snakepit {result.version}, seed {result.seed}: {cover['programs']} programs, {cover['steps']} "
          f"steps, {len(cover['step_kinds'])} step kinds, {len(cover['interleavings'])} interleavings "
          f"(pairs of consecutive kinds), {result.seconds:.0f} s", file=out)
    print("  step kinds: " + ", ".join(f"{k} {n}" for k, n in cover["step_kinds"].items()), file=out)
    for label, counts in result.step_results().items():
        print(f"  {label} steps: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())), file=out)
    reproduced = [s for s in result.shrunk if s.reproduced]
    print(f"  {sum(1 for o in result.outcomes if not o.differs)} agree, {len(result.shrunk)} differ "
          f"({len(reproduced)} reproduced and shrunk, {len(result.shrunk) - len(reproduced)} not reproduced)",
          file=out)
    for state in result.shrunk:
        smallest = state.smallest
        status = (f"shrunk to {len(smallest.program['steps'])} steps" if state.reproduced
                  else "NOT reproduced on a re-run (a race)")
        print(f"divergence: {state.original.program['name']} ({len(state.original.program['steps'])} steps), "
              f"{status}", file=out)
        for index, step in enumerate(smallest.program["steps"], 1):
            real, emulated = smallest.snakepit.steps[index - 1], smallest.emulator.steps[index - 1]
            args = {k: v for k, v in step.items() if k not in ("op", "clause", "note")}
            mark = "  <-- differs" if real != emulated else ""
            print(f"  {index:>3}. {step['op']} {json.dumps(args)}  snakepit={real} emulator={emulated}{mark}",
                  file=out)
            for label, outcome in (("snakepit", smallest.snakepit), ("emulator", smallest.emulator)):
                if index in outcome.notes:
                    print(f"         {label}: {outcome.notes[index]}".replace("\n", " "), file=out)
    for path in result.found_files:
        print(f"explore: wrote {path}", file=out)


def write_json(result: Exploration, report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"explore-{result.version}-seed{result.seed}.json"
    path.write_text(json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8")
    return path

