"""Release rules: what one Snakepit release does toward its workers, resolved once from releases.toml.

releases.toml lists every release 0.6.0 … 0.13.0 and, per behaviour, a since/until table whose rows name
the entries of docs/snakepit/ they rest on. `rules_for(release)` folds the table into one immutable
`Profile` that every module reads; this is the only module that parses a version string.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

RELEASES_PATH = Path(__file__).with_name("releases.toml")


class Readiness(Enum):
    """How Snakepit learns that a worker listens (docs/snakepit: readiness-line, readiness-file)."""

    READY_LINE = "GRPC_READY line on merged stdout/stderr"
    READY_FILE = "port written to SNAKEPIT_READY_FILE"


_READINESS_VALUES = {"ready-line": Readiness.READY_LINE, "ready-file": Readiness.READY_FILE}


@dataclass(frozen=True)
class Profile:
    """Behaviour of one Snakepit release toward its workers; every field is a rule of releases.toml."""

    name: str  # report label: the alias for 0.6.0 and 0.13.0, snakepit-X.Y.Z for the others
    snakepit_version: str
    readiness: Readiness
    readiness_timer_resets_on_output: bool  # the ready-line wait restarts on every output chunk
    readiness_timeout_s: float
    shutdown_grace_s: float  # SIGTERM, then SIGKILL after this many seconds
    elixir_host: str  # host part of --elixir-address
    fixed_session_id: str | None  # "default_session" on the wire, or None: the worker's own session
    sends_instance_flags: bool
    sets_process_group_env: bool
    sets_log_level_env: bool  # SNAKEPIT_LOG_LEVEL=error in the worker's environment
    sets_python_env: bool  # SNAKEPIT_PYTHON (the interpreter) in the worker's environment
    initializes_worker_session: bool
    opens_telemetry_stream: bool
    telemetry_open_timeout_s: float  # inf: opened with timeout :infinity
    heartbeat: bool
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    json_errors: bool  # application errors: JSON object with type/message, else plain text
    non_ok_execute_status_crashes: bool  # a non-OK ExecuteTool status crashes the GRPCWorker
    delivers_final_chunk: bool  # else final-chunk data is dropped and chunk data decoded strictly
    binary_result: bool
    correlation_header: bool
    strict_elixir_parameters: bool  # BridgeServer: strict JSON parameters
    validates_tool_names: bool
    streaming_forwarding: bool
    session_quota: bool
    session_programs: bool  # the SessionStore keeps programs per session and globally
    strict_affinity: bool  # strict affinity modes, and the kit's second Pool generation (docs/pool.md)
    queue_timeout_s: float
    reconcile_interval_s: float  # inf: no pool reconciliation
    health_check_timeout_s: float

    def rule_values(self) -> tuple[Any, ...]:
        """Every rule's value: releases with equal tuples are judged identically."""
        return tuple(getattr(self, name) for name in RULE_NAMES)


RULE_NAMES = tuple(f.name for f in dataclasses.fields(Profile) if f.name not in ("name", "snakepit_version"))


class RulesError(ValueError):
    """releases.toml is malformed, or a release, range or rule expression is unknown."""


def version_key(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of "X.Y.Z" or "vX.Y.Z"; RulesError otherwise."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version.strip())
    if not match:
        raise RulesError(f"{version!r} is not a release number X.Y.Z")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class RuleRow:
    """One row of a rule's since/until table."""

    since: str
    until: str | None  # the last release this value holds for; None = up to the newest
    value: Any
    proof: str


@dataclass(frozen=True)
class Rule:
    """One behaviour that differs (or may differ) between releases, with its rows and the entries it rests on."""

    name: str
    rests_on: tuple[str, ...]
    rows: tuple[RuleRow, ...]

    def row_for(self, release: str) -> RuleRow:
        key = version_key(release)
        return [row for row in self.rows if version_key(row.since) <= key][-1]


def _convert(name: str, raw: Any) -> Any:
    """A table value as the Profile field holds it."""
    if name == "readiness":
        if raw not in _READINESS_VALUES:
            raise RulesError(f"rule readiness: value {raw!r} is not one of {', '.join(_READINESS_VALUES)}")
        return _READINESS_VALUES[raw]
    if name == "fixed_session_id":
        return str(raw) or None
    field_type = {f.name: f.type for f in dataclasses.fields(Profile)}[name]
    if field_type == "bool" and not isinstance(raw, bool):
        raise RulesError(f"rule {name}: value {raw!r} must be true or false")
    if field_type == "float":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise RulesError(f"rule {name}: value {raw!r} must be a number")
        return float(raw)
    if field_type == "str" and not isinstance(raw, str):
        raise RulesError(f"rule {name}: value {raw!r} must be a string")
    return raw


def _parse_rule(name: str, entry: Mapping[str, Any], releases: tuple[str, ...]) -> Rule:
    if name not in RULE_NAMES:
        raise RulesError(f"rule {name!r} is not a field of Profile ({', '.join(RULE_NAMES)})")
    rests_on = tuple(entry.get("rests_on", ()))
    raw_rows = list(entry.get("values", ()))
    if not rests_on or not raw_rows:
        raise RulesError(f"rule {name}: needs rests_on (docs/snakepit anchors) and values")
    sinces = [str(row.get("since")) for row in raw_rows]
    if sinces[0] != releases[0] or any(s not in releases for s in sinces) or \
            [releases.index(s) for s in sinces] != sorted({releases.index(s) for s in sinces}):
        raise RulesError(f"rule {name}: rows must start at {releases[0]} and name known releases in order: {sinces}")
    rows = []
    for i, row in enumerate(raw_rows):
        if not str(row.get("proof", "")).strip():
            raise RulesError(f"rule {name}: the row since {sinces[i]} needs a proof (tag, file, lines)")
        until = releases[releases.index(sinces[i + 1]) - 1] if i + 1 < len(sinces) else None
        rows.append(RuleRow(sinces[i], until, _convert(name, row.get("value")), str(row["proof"])))
    return Rule(name, rests_on, tuple(rows))


def _label(release: str, aliases: Mapping[str, str]) -> str:
    return next((alias for alias, target in aliases.items() if target == release), f"snakepit-{release}")


@dataclass(frozen=True)
class ReleaseTable:
    """releases.toml, parsed and checked."""

    releases: tuple[str, ...]
    aliases: Mapping[str, str]
    rules: Mapping[str, Rule]

    def rules_for(self, release: str) -> Profile:
        values = {name: rule.row_for(release).value for name, rule in self.rules.items()}
        return Profile(name=_label(release, self.aliases), snakepit_version=release, **values)


def load_release_table(path: Path = RELEASES_PATH) -> ReleaseTable:
    """Parse and check releases.toml; raise RulesError naming the first problem."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    releases = tuple(str(r) for r in data.get("releases", ()))
    if not releases or list(releases) != sorted(set(releases), key=version_key):
        raise RulesError("releases must be a non-empty list of distinct X.Y.Z, oldest first")
    aliases = {str(k): str(v) for k, v in data.get("aliases", {}).items()}
    if any(target not in releases for target in aliases.values()):
        raise RulesError(f"aliases must name known releases: {aliases}")
    rules = {name: _parse_rule(name, entry, releases) for name, entry in data.get("rules", {}).items()}
    missing = [name for name in RULE_NAMES if name not in rules]
    if missing:
        raise RulesError(f"releases.toml has no rule for {', '.join(missing)}")
    return ReleaseTable(releases, aliases, rules)


TABLE = load_release_table()
RELEASES = TABLE.releases
NEWEST = RELEASES[-1]
RULES: dict[str, Profile] = {release: TABLE.rules_for(release) for release in RELEASES}
SNAKEPIT_0_6 = RULES[TABLE.aliases["snakepit-0.6"]]
SNAKEPIT_0_13 = RULES[TABLE.aliases["snakepit-0.13"]]
# The named profiles: what `--profile all` means.
PROFILES: dict[str, Profile] = {p.name: p for p in (SNAKEPIT_0_6, SNAKEPIT_0_13)}
DEFAULT_PROFILE = RULES[NEWEST].name
_BY_LABEL = {p.name: p for p in RULES.values()}


def known_releases() -> str:
    return f"{', '.join(RELEASES)} (or {', '.join(TABLE.aliases)})"


def get_profile(name: str) -> Profile:
    """The rules of one release, named by X.Y.Z, vX.Y.Z, its label or an alias; ValueError lists the known ones."""
    name = name.strip()
    if name in _BY_LABEL:
        return _BY_LABEL[name]
    if name in TABLE.aliases:
        return RULES[TABLE.aliases[name]]
    release = name.removeprefix("snakepit-").removeprefix("v")
    if release in RULES:
        return RULES[release]
    raise ValueError(f"unknown Snakepit release {name!r}; known releases: {known_releases()}")


def select_releases(text: str) -> tuple[Profile, ...]:
    """Comma-separated releases, aliases, ranges FIRST..LAST (inclusive) or `all` (= the named profiles)."""
    chosen: list[Profile] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "all":
            found: Iterable[Profile] = PROFILES.values()
        elif ".." in part:
            first, _, last = part.partition("..")
            low, high = get_profile(first or RELEASES[0]), get_profile(last or NEWEST)
            order = RELEASES.index
            if order(low.snakepit_version) > order(high.snakepit_version):
                raise ValueError(f"empty release range {part!r}: {first} is newer than {last}")
            found = [RULES[r] for r in RELEASES[order(low.snakepit_version):order(high.snakepit_version) + 1]]
        else:
            found = [get_profile(part)]
        chosen += [p for p in found if p not in chosen]
    if not chosen:
        raise ValueError("no Snakepit release given")
    return tuple(sorted(chosen, key=lambda p: RELEASES.index(p.snakepit_version)))


def distinct_rule_sets(profiles: Iterable[Profile]) -> list[tuple[Profile, ...]]:
    """Releases grouped by identical rules, oldest first: one suite run judges each group."""
    groups: dict[tuple[Any, ...], list[Profile]] = {}
    for profile in sorted(profiles, key=lambda p: RELEASES.index(p.snakepit_version)):
        groups.setdefault(profile.rule_values(), []).append(profile)
    return [tuple(group) for group in groups.values()]


def release_span(profiles: Iterable[Profile]) -> list[tuple[str, str]]:
    """Consecutive runs of releases (in RELEASES order) as (first, last) pairs, e.g. for a headline."""
    indices = sorted(RELEASES.index(p.snakepit_version) for p in profiles)
    spans: list[tuple[str, str]] = []
    for i in indices:
        if spans and RELEASES.index(spans[-1][1]) == i - 1:
            spans[-1] = (spans[-1][0], RELEASES[i])
        else:
            spans.append((RELEASES[i], RELEASES[i]))
    return spans


def span_text(spans: Iterable[tuple[str, str]]) -> str:
    """"0.6.3 \u2013 0.13.0", comma-separated runs; "no release" when empty."""
    return ", ".join(a if a == b else f"{a} \u2013 {b}" for a, b in spans) or "no release"


# -- applicability: which releases a clause (or scenario) applies to, as an expression over the rules -------
_TERM = re.compile(r"^(not )?([a-z_]+)(?: = ([A-Za-z0-9._-]+))?$")


def check_condition(text: str) -> None:
    """Raise RulesError unless `text` is `always` or terms `[not ]rule[ = value]` joined by ` and `."""
    if text == "always":
        return
    for term in text.split(" and "):
        match = _TERM.match(term.strip())
        if not match or match.group(2) not in RULE_NAMES:
            raise RulesError(f"condition {text!r}: {term!r} is not `[not ]<rule>[ = <value>]` over the rules "
                             f"of releases.toml")
        if match.group(3) is None and TABLE.rules[match.group(2)].rows[0].value not in (True, False):
            raise RulesError(f"condition {text!r}: rule {match.group(2)} is not true/false; compare it with =")


def _value_text(value: Any) -> str:
    if isinstance(value, Readiness):
        return next(k for k, v in _READINESS_VALUES.items() if v is value)
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return str(value).lower() if isinstance(value, bool) else str(value)


def holds(text: str, profile: Profile) -> bool:
    """Whether the condition (see check_condition) holds for this release's rules."""
    if text == "always":
        return True
    for term in text.split(" and "):
        match = _TERM.match(term.strip())
        if match is None:
            raise RulesError(f"condition {text!r}: cannot read {term!r}")
        negate, rule, wanted = match.groups()
        value = getattr(profile, rule)
        result = _value_text(value) == wanted if wanted is not None else bool(value)
        if result == bool(negate):
            return False
    return True


def explain_condition(text: str, profile: Profile) -> str:
    """Each term with this release's value and the table row it comes from, for `list --snakepit-version`."""
    if text == "always":
        return "every release"
    parts = []
    for term in text.split(" and "):
        match = _TERM.match(term.strip())
        assert match is not None
        rule = TABLE.rules[match.group(2)]
        row = rule.row_for(profile.snakepit_version)
        span = f"{row.since}…{row.until or NEWEST}"
        parts.append(f"{match.group(2)}={_value_text(row.value)} ({span}, {', '.join(rule.rests_on)})")
    return "; ".join(parts)
