"""snakepit-contract: run the conformance suite against a worker, list its clauses, or explain one.

A thin layer over pytest: `run` builds one pytest invocation of the clause
modules with the suite's own ini file; the plugin writes the report and the
exit status is the report's verdict (docs/report.md): 0 conformant at the
chosen level, 1 not conformant, 2 no verdict (the harness failed, the run
was interrupted or clauses could not run), 3 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import pytest

from contract_tests import clauses
from contract_tests.bench import command as bench_command
from contract_tests.contract.clause import REGISTRY, TESTS, Clause, Level
from contract_tests.contract.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    RULES,
    Profile,
    distinct_rule_sets,
    explain_condition,
    release_span,
    select_releases,
    span_text,
)
from contract_tests.contract.snakepit_sources import (
    ENTRIES,
    SourcesUnavailable,
    check_citations,
    directory_reader,
    git_reader,
)
from contract_tests.driver import worker_coverage
from contract_tests.e2e import command as e2e_command
from contract_tests.e2e import explore_command
from contract_tests.elixir.scenarios import describe_steps, load_scenario
from contract_tests.errors import (
    EXIT_CONFORMANT,
    EXIT_HARNESS,
    EXIT_NOT_CONFORMANT,
    EXIT_USAGE,
    UsageProblem,
    WorkerUnreachable,
)
from contract_tests.judging.settings import DEFAULT_WORKER_CMD, Settings, _validate_worker_address
from contract_tests.judging.verdicts import REPORT, REPORT_WRITE_ERROR
from contract_tests.report import matrix
from contract_tests.report.extras import ReportExtras, ReportInputError, load_bench, load_mutation_score
from contract_tests.report.model import LEVELS, RunReport, matches, plan
from contract_tests.report.terminal import Progress

_SCENARIO_CALL = re.compile(r"""run_scenario\(["']([^"']+)["']\)""")
SUITE_INI = Path(__file__).with_name("suite.ini")


def load_clauses() -> dict[str, Clause]:
    """Import every clause module so the registry is complete; no worker is started."""
    for module in pkgutil.iter_modules(clauses.__path__):
        importlib.import_module(f"{clauses.__name__}.{module.name}")
    return dict(sorted(REGISTRY.items()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snakepit-contract", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the suite against a worker and write a report")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--worker-cmd", help="Worker command, shell-quoted (default: the reference worker)")
    target.add_argument("--worker-image", help="Worker container image: each worker runs in its own container "
                                               "(host network, the engine at DOCKER_HOST; docs/worker-image.md)")
    target.add_argument("--worker-address", help="Attach to a worker already running at HOST:PORT")
    _release_options(run)
    run.add_argument("--level", choices=sorted(LEVELS), default="must",
                     help="Levels that decide the verdict; the others are reported as warnings (default: must)")
    run.add_argument("--only", help="Comma-separated clause id globs to run")
    run.add_argument("--skip", help="Comma-separated clause id globs to leave out")
    run.add_argument("--baseline", type=Path, help="TOML file of the worker's expected failures")
    run.add_argument("--mutation-score", type=Path,
                     help="mutation-score.json of the mutants tier, embedded in the report (informational)")
    run.add_argument("--worker-coverage", action="store_true",
                     help="Run a Python worker under coverage.py and write which of its lines the suite exercised "
                          "(REPORT_DIR/worker-coverage: coverage.json, html/); needs coverage in the worker's Python")
    run.add_argument("--bench-results", type=Path,
                     help="bench.json of `snakepit-contract bench`, embedded in the report (informational)")
    run.add_argument("--timeout-scale", help="Multiply contract deadlines (slow machines)")
    run.add_argument("-n", "--numprocesses", default=str(default_processes()),
                     help="Parallel pytest-xdist workers (default 4 per core, 2 to 8; 0 = none)")
    run.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                     help="Where the five report files go (default: ./conformance-report)")
    run.add_argument("--list", action="store_true", help="Dry run: list the clauses this run would judge")
    run.add_argument("pytest_args", nargs="*", help="Extra pytest arguments, after --")
    e2e_command.add_arguments(run)
    listing = sub.add_parser("list", help="List the clauses without starting a worker")
    listing.add_argument("--profile", help="Only clauses of this profile: snakepit-0.6, snakepit-0.13 or all "
                                           "(default: all)")
    listing.add_argument("--snakepit-version", help="Show which clauses apply to this release (X.Y.Z) and why")
    merging = sub.add_parser("merge", help="Merge per-release report directories into one compatibility matrix")
    merging.add_argument("--snakepit-version", required=True,
                         help="The releases of the matrix, e.g. 0.6.0..0.13.0; each is judged by a merged run of a "
                              "release with the same rules")
    merging.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                         help="Where the matrix report goes (default: ./conformance-report)")
    merging.add_argument("runs", nargs="+", type=Path, help="Report directories of `run --snakepit-version X.Y.Z`")
    planning = sub.add_parser("releases", help="The distinct rule sets of some releases: which release runs for each")
    planning.add_argument("--snakepit-version", default="..", help="Releases (default: all, 0.6.0..0.13.0)")
    planning.add_argument("--json", action="store_true", help="Print only the releases to run, as a JSON list (CI)")
    explain = sub.add_parser("explain", help="Print a clause's requirement, its checks and how to reproduce it")
    explain.add_argument("clause", help="Clause id, e.g. PROC-010")
    explain.add_argument("--worker-cmd", help="Worker command to put in the reproduce line")
    check = sub.add_parser("sources-check", help="Confirm every cited line range of Snakepit's source still holds "
                                                 "the cited code (docs/snakepit/README.md)")
    check.add_argument("--snakepit-repo", type=Path, help="A git checkout or git directory of Snakepit with its tags")
    check.add_argument("--snakepit-sources", type=Path,
                       help="A sources directory laid out as DIR/<version>/snakepit/ (docs/e2e.md)")
    bench_command.add_parser(sub)
    explore_command.add_parser(sub)
    return parser


def _release_options(command: argparse.ArgumentParser) -> None:
    releases = command.add_mutually_exclusive_group()
    releases.add_argument("--profile", help="snakepit-0.6 (= release 0.6.0), snakepit-0.13 (= 0.13.0) or all (both)")
    releases.add_argument("--snakepit-version",
                          help="Snakepit release(s) whose rules judge the worker: X.Y.Z (0.6.0 … 0.13.0) or "
                               "comma-separated (default: the newest release); a range FIRST..LAST writes a "
                               "compatibility matrix, one run per distinct rule set")


def _selection(args: argparse.Namespace) -> str:
    """The releases asked for, as one text for select_releases and the pytest option."""
    return str(args.snakepit_version or args.profile or DEFAULT_PROFILE)


def _releases(value: str) -> list[Profile]:
    try:
        return list(select_releases(value))
    except ValueError as err:
        raise UsageProblem(str(err)) from None


def default_processes() -> int:
    """Most checks wait (readiness, grace periods, heartbeat deadlines), so several share a core: 4 per core
    (on 2 cores, 8 processes ran the suite faster than 6 in three runs of each, alternated: docs/bench.md)."""
    return min(8, max(2, 4 * (os.cpu_count() or 1)))


def _profiles(value: str) -> list[str]:
    return [p.name for p in _releases(value)]


def _globs(value: str | None) -> tuple[str, ...]:
    return tuple(g.strip() for g in (value or "").split(",") if g.strip())


def _check_globs(args: argparse.Namespace, registry: dict[str, Clause]) -> None:
    for option in ("only", "skip"):
        for glob in _globs(getattr(args, option)):
            if not any(matches(cid, (glob,), ()) for cid in registry):
                raise UsageProblem(f"--{option} {glob!r} matches no clause (see `snakepit-contract list`)")


def _area_counts(found: Sequence[Clause]) -> str:
    counts = Counter((c.area, c.level.value) for c in found)
    return ", ".join(
        f"{area} " + "/".join(f"{counts[area, lvl.value]} {lvl.value}" for lvl in Level if counts[area, lvl.value])
        for area in sorted({c.area for c in found}))


def _dry_run(args: argparse.Namespace, out: TextIO) -> int:
    chosen = plan(load_clauses().values(), _profiles(_selection(args)), _globs(args.only), _globs(args.skip))
    judged = LEVELS[args.level]
    for found, profile in chosen.pairs:
        role = "selfchk" if not found.judges_worker else "judged" if found.level in judged else "warning"
        print(f"{found.id:<13} {found.level.value:<6} {profile:<14} {role:<8} {found.requirement}", file=out)
    unique = list({c.id: c for c, _ in chosen.pairs}.values())
    print(f"Would run {len(chosen.pairs)} clause-profile checks of {len(unique)} clauses ({_area_counts(unique)}); "
          f"{sum(c.level in judged and c.judges_worker for c, _ in chosen.pairs)} judged at level {args.level}; "
          f"{chosen.not_selected} not selected, {chosen.not_applicable} not applicable to a profile", file=out)
    return EXIT_CONFORMANT


class _Capture:
    """Hands the plugin's report back to the CLI once pytest is done, and whether writing it failed."""

    def __init__(self) -> None:
        self.report: RunReport | None = None
        self.write_error: str | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.report = session.config.stash.get(REPORT, None)
        self.write_error = session.config.stash.get(REPORT_WRITE_ERROR, None)


def _unreachable(args: argparse.Namespace) -> str | None:
    """Why the worker at --worker-address cannot be judged (its handshake Ping fails), before any check runs."""
    from contract_tests.judging.plugin import reach  # the plugin's own handshake, so both judge reachability alike

    try:
        address = _validate_worker_address(args.worker_address, "--worker-address")
        scale = float(args.timeout_scale) if args.timeout_scale else 1.0
    except (pytest.UsageError, ValueError):
        return None  # a bad value: the suite's own validation says what is wrong, as a usage error
    for release in _releases(_selection(args)):
        try:
            reach(str(address), release, timeout_s=10 * scale).close()
        except WorkerUnreachable as err:
            return str(err)
    return None


def _start_worker_coverage(args: argparse.Namespace) -> tuple[str, Path] | None:
    """With --worker-coverage: a fresh data folder that every launch of this run measures into."""
    if not args.worker_coverage:
        return None
    if args.worker_image or args.worker_address:
        raise UsageProblem("--worker-coverage runs the worker itself: use it with --worker-cmd (or the default)")
    command = shlex.split(args.worker_cmd) if args.worker_cmd else list(DEFAULT_WORKER_CMD)
    folder = Path(args.report_dir).resolve() / "worker-coverage" / "data"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        worker_coverage.prepare(command, folder)
    except worker_coverage.WorkerCoverageError as err:
        raise UsageProblem(str(err)) from None
    os.environ[worker_coverage.WORKER_COVERAGE_ENV] = str(folder)
    return command[0], folder


def _pytest_argv(args: argparse.Namespace) -> list[str]:
    argv = ["-c", str(SUITE_INI), "--rootdir", str(SUITE_INI.parent), "--pyargs", clauses.__name__,
            # -q -rN: the progress lines and the plugin's verdict replace pytest's dots and short summary.
            "-q", "-rN", "--snakepit-version" if args.snakepit_version else "--profile", _selection(args),
            "--level", args.level, "-n", args.numprocesses,
            "--report-dir", str(args.report_dir)]
    if args.numprocesses != "0":
        # The plugin groups the checks of a shared worker and orders the work (longest waits first).
        argv += ["--dist", "loadgroup", "--no-loadscope-reorder"]
    for option in ("worker_cmd", "worker_image", "worker_address", "only", "skip", "timeout_scale", "baseline"):
        if getattr(args, option) is not None:
            argv += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return argv + list(args.pytest_args)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.e2e:
        return e2e_command.run(args, out)
    _releases(_selection(args))
    _check_globs(args, load_clauses())
    try:
        extras = ReportExtras(
            mutation_score=load_mutation_score(args.mutation_score) if args.mutation_score else None,
            bench=load_bench(args.bench_results) if args.bench_results else None)
    except ReportInputError as problem:
        raise UsageProblem(str(problem)) from None
    if args.list:
        return _dry_run(args, out)
    if args.snakepit_version and ".." in args.snakepit_version:
        return _matrix(args, out)
    if args.worker_address is not None and (why := _unreachable(args)) is not None:
        print(f"snakepit-contract: no verdict (exit {EXIT_HARNESS}): {why}; is the worker running and serving "
              "snakepit.bridge.BridgeService there?", file=out)
        return EXIT_HARNESS
    measured = _start_worker_coverage(args)
    capture = _Capture()
    try:
        code = pytest.main(_pytest_argv(args), plugins=[capture, Progress(), extras])
    finally:
        os.environ.pop(worker_coverage.WORKER_COVERAGE_ENV, None)
    if measured is not None:
        try:
            print(worker_coverage.report(measured[0], measured[1], Path(args.report_dir) / "worker-coverage"), file=out)
        except worker_coverage.WorkerCoverageError as err:
            print(f"snakepit-contract: worker coverage not reported: {err}", file=out)
    if capture.report is None:
        return EXIT_USAGE if code == pytest.ExitCode.USAGE_ERROR else EXIT_HARNESS
    verdict = capture.report.verdict()
    if capture.write_error is not None:  # judged, but nobody can read the judgement: no verdict
        print(f"snakepit-contract: no verdict (exit {EXIT_HARNESS}): the run was {verdict.name.replace('_', ' ')}, "
              f"but {capture.write_error}", file=out)
        return EXIT_HARNESS
    # pytest's last line counts tests; the last word belongs to the verdict.
    print(f"snakepit-contract: {verdict.name.replace('_', ' ')} (exit {verdict.value}); "
          f"report in {args.report_dir}", file=out)
    return verdict.value


def _matrix(args: argparse.Namespace, out: TextIO) -> int:
    """One run per distinct rule set of the range, each in DIR/releases/X.Y.Z, then the merged matrix in DIR."""
    releases = _releases(args.snakepit_version)
    groups = distinct_rule_sets(releases)
    print(f"snakepit-contract: {len(releases)} releases, {len(groups)} distinct rule sets: "
          + "; ".join(f"{g[-1].snakepit_version} for {span_text(release_span(g))}" for g in groups), file=out)
    passthrough = [arg for option in ("worker_cmd", "worker_image", "worker_address", "only", "skip", "timeout_scale",
                                      "baseline", "mutation_score", "bench_results")
                   if getattr(args, option) is not None
                   for arg in (f"--{option.replace('_', '-')}", str(getattr(args, option)))]
    run_dirs = []
    for release in matrix.representatives(releases):
        run_dir = args.report_dir / "releases" / release.snakepit_version
        print(f"snakepit-contract: judging at Snakepit {release.snakepit_version} -> {run_dir}", file=out, flush=True)
        code = subprocess.call([sys.executable, "-m", "contract_tests.cli", "run", "--snakepit-version",
                                release.snakepit_version, "--level", args.level, "-n", args.numprocesses,
                                "--report-dir", str(run_dir), *passthrough, *args.pytest_args])
        if code == EXIT_USAGE or not (run_dir / "conformance.json").is_file():
            print(f"snakepit-contract: the run at {release.snakepit_version} wrote no report (exit {code})", file=out)
            return EXIT_USAGE if code == EXIT_USAGE else EXIT_HARNESS
        run_dirs.append(run_dir)
    return _write_matrix(releases, run_dirs, args.report_dir, out)


def _write_matrix(releases: Sequence[Profile], run_dirs: Sequence[Path], report_dir: Path, out: TextIO) -> int:
    """Merge the runs into the matrix report; print one line per release and the headline."""
    try:
        doc = matrix.merge(releases, run_dirs, report_dir)
    except matrix.MatrixError as err:
        raise UsageProblem(str(err)) from None
    for row in doc["matrix"]["releases"]:
        areas = " ".join(f"{a}={v}" for a, v in row["areas"].items())
        print(f"  {row['release']:<8} {row['verdict']:<15} {row['passed']:>3}/{row['judged']:<3} {areas}", file=out)
    print(f"snakepit-contract: {doc['matrix']['headline']} (exit {doc['verdict']['exit_status']}); "
          f"matrix in {report_dir}", file=out)
    status: int = doc["verdict"]["exit_status"]
    return status


def _merge(args: argparse.Namespace, out: TextIO) -> int:
    return _write_matrix(_releases(args.snakepit_version), args.runs, args.report_dir, out)


def _plan_releases(args: argparse.Namespace, out: TextIO) -> int:
    """Which release runs for each distinct rule set: a list for people, a JSON list for a CI matrix."""
    groups = distinct_rule_sets(_releases(args.snakepit_version))
    if args.json:
        print(json.dumps([g[-1].snakepit_version for g in groups]), file=out)
        return EXIT_CONFORMANT
    for group in groups:
        print(f"{group[-1].snakepit_version:<8} judges {span_text(release_span(group))}", file=out)
    return EXIT_CONFORMANT


def _list(args: argparse.Namespace, out: TextIO) -> int:
    if args.snakepit_version:
        return _list_release(args, out)
    wanted = _releases(args.profile) if args.profile and args.profile != "all" else list(PROFILES.values())
    chosen = [c for c in load_clauses().values() if any(c.applies_to(p) for p in wanted)]
    for found in chosen:
        profiles = "all" if len(found.profiles) == len(PROFILES) else ",".join(sorted(found.profiles))
        subject = "" if found.judges_worker else f"[{found.subject}] "
        print(f"{found.id:<13} {found.level.value:<6} {profiles:<14} {subject}{found.requirement}", file=out)
    print(f"Total clauses: {len(chosen)} ({_area_counts(chosen)})", file=out)
    return EXIT_CONFORMANT


def _list_release(args: argparse.Namespace, out: TextIO) -> int:
    """Every clause, whether it applies to each release asked for, and the rule that decides it."""
    releases = _releases(args.snakepit_version)
    registry = load_clauses()
    for release in releases:
        applying = [c for c in registry.values() if c.applies_to(release)]
        print(f"Snakepit {release.snakepit_version} ({release.name}): {len(applying)} of {len(registry)} clauses "
              f"apply ({_area_counts(applying)})", file=out)
        for found in registry.values():
            state = "applies" if found.applies_to(release) else "n/a"
            subject = "" if found.judges_worker else f"[{found.subject}] "
            print(f"  {found.id:<13} {found.level.value:<6} {state:<8} {subject}{found.requirement}", file=out)
            if found.applies != "always":
                print(f"  {'':<13} {'':<6} {'':<8} because {explain_condition(found.applies, release)}", file=out)
    return EXIT_CONFORMANT


def _checks(clause_id: str) -> list[str]:
    """Each test function of the clause: where it is, what it needs, and its source."""
    lines = []
    for name in TESTS[clause_id]:
        module_name, function_name = name.rsplit(".", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        source, first = inspect.getsourcelines(function)
        where = Path(inspect.getsourcefile(function) or module_name)
        tools = [m.args for m in getattr(function, "pytestmark", []) if m.name == "requires_tools"]
        lines.append(f"  {name}  ({where.parent.name}/{where.name}:{first})")
        if tools:
            lines.append(f"  needs contract tools: {', '.join(t for group in tools for t in group)}")
        lines += [f"    | {line.rstrip()}" for line in source]
        for name in _SCENARIO_CALL.findall("".join(source)):  # a scenario check: its steps are the check
            lines += [f"    {line}" for line in describe_steps(load_scenario(name)).splitlines()]
    return lines


def _rests_on(found: Clause) -> list[str]:
    lines = []
    for anchor in found.rests_on:
        entry = ENTRIES[anchor]
        lines.append(f"  {anchor}: {entry.title}  ({entry.doc})")
        for era in entry.eras:
            lines.append(textwrap.fill(era.summary, width=116, initial_indent=f"    Snakepit {era.releases}: ",
                                       subsequent_indent="      "))
            lines += [f"      {c.tag} {c.path}:{c.first}-{c.last}  {c.url}" for c in era.citations]
    return lines


def _sources_check(args: argparse.Namespace, out: TextIO) -> int:
    readers, problems = [], []
    for given, make in ((args.snakepit_repo, git_reader), (args.snakepit_sources, directory_reader)):
        if given is not None:
            try:
                readers.append(make(given))
            except SourcesUnavailable as missing:
                problems.append(str(missing))
    result = check_citations(ENTRIES.values(), readers)
    if result.checked == 0:
        reason = "; ".join(problems) or "give --snakepit-repo DIR or --snakepit-sources DIR"
        if readers:
            reason = f"none of the cited tags is in the sources given ({result.unavailable} citations)"
        print(f"NOT-RUN: no Snakepit sources to check the citations against: {reason}", file=out)
        return EXIT_HARNESS
    for line in result.problems:
        print(line, file=out)
    skipped = f"; {result.unavailable} at tags the sources lack, not checked" if result.unavailable else ""
    print(f"{result.checked - len(result.problems)}/{result.checked} citations hold{skipped}", file=out)
    return EXIT_NOT_CONFORMANT if result.problems else EXIT_CONFORMANT


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    registry = load_clauses()
    found = registry.get(args.clause.upper())
    if found is None:
        raise UsageProblem(f"no clause {args.clause!r} (see `snakepit-contract list`)")
    worker = tuple(shlex.split(args.worker_cmd)) if args.worker_cmd else tuple(DEFAULT_WORKER_CMD)
    profiles = sorted(found.profiles, key=list(PROFILES).index)
    spans = release_span(p for p in RULES.values() if found.applies_to(p))
    settings = Settings(worker_cmd=worker, profiles=(), timeout_scale=1.0)
    lines = [
        f"{found.id}  {found.level.value}  ({found.area}: {found.area_title})",
        f"Requirement: {found.requirement}",
        f"Applies to:  Snakepit {span_text(spans)}"
        + ("" if found.applies == "always" else f" (where {found.applies}; contract_tests/contract/releases.toml)"),
        "Subject:     " + ("the worker" if found.judges_worker else
                           f"{found.subject}: the suite's emulated Elixir side, a self-check that never decides "
                           "the worker's verdict (the live Elixir tier judges real Snakepit on it)"),
        "Rests on:    what Snakepit does (docs/snakepit/); the contract is explained in docs/contract.md",
        *_rests_on(found),
        f"Judged at:   --level {', '.join(k for k, levels in LEVELS.items() if found.level in levels)}"
        + ("" if found.level is Level.MUST else "; below that a failure is only a warning"),
        "Checked by:",
        *_checks(found.id),
        "Reproduce:",
        *(f"  {settings.repro(found.id, p, found.level)}" for p in profiles),
    ]
    print("\n".join(lines), file=out)
    return EXIT_CONFORMANT


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "run": _run, "list": _list, "explain": _explain, "sources-check": _sources_check, "bench": bench_command.run,
    "merge": _merge, "releases": _plan_releases, "explore": explore_command.run}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_CONFORMANT if exit_.code == 0 else EXIT_USAGE
    try:
        return _COMMANDS[args.command](args, out or sys.stdout)
    except UsageProblem as problem:
        print(f"snakepit-contract: {problem}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
