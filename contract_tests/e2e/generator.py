"""Generated pool programs: scenario files no one wrote, for `snakepit-contract explore` (docs/explore.md).

A program is a scenario (fixtures/scenarios/scenario.schema.json) drawn step by step by a hypothesis strategy
that keeps a small model of what the step has done so far (which sessions exist, which worker holds which
program, which calls are pending), so every program is valid by construction: an `await` follows its
`execute_async`, a crash names a call that reached a worker still alive, `leftovers` follows `stop_pool`.

The model also writes expectations, but only where both sides are deterministic; where it cannot know (a call
that may have been queued records no session, a session's worker after a crash) it writes none. Expectations
only make steps pass or fail: explore compares the two sides' step results, so a wrong guess fails on both sides
alike and is no finding. Every step is tagged with a clause, so a failed expectation never ends the program.

What is never generated, and why (both sides must run it deterministically):
* clock jumps near a TTL: the real store's clock is Snakepit's monotonic clock, which real time moves on
  during the run; jumps are 30 s (a whole program's jumps stay far below the 1000 s TTL) or 5000 s (past every
  TTL, the global programs' 3600 s included). Whole seconds only: the Elixir runner rounds.
* the store's own sweep timer: Snakepit's fires 60 s after each scenario's start; a program runs seconds.
* `max_sessions`: quotas differ by release by design (SESSION-007), not by accident.
* program steps (`store_program` ...) where the release has no session programs (they do not exist there),
  strict affinity where the release has none, per-call affinity at releases without strict modes.
* calls on a fresh pool: Snakepit 0.13.0 queues them, and a queued call records no session affinity (found by
  explore, docs/e2e.md); every program starts with `wait_idle`.
* `crash_worker` while calls are pending, of a call made before the last crash (its worker may be gone), or
  `contract.spawn_child` (a process a worker starts is CLEANUP-002's own scenario).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from contract_tests.contract.profiles import Profile

Program = dict[str, Any]
Step = dict[str, Any]

SESSIONS = ("s1", "s2", "s3")
PROGRAM_NAMES = ("p1", "p2")
TTL_S = 1000
SHORT_JUMP_S, LONG_JUMP_S = 30, 5000
SLEEP_S = 0.3
MAX_PENDING = 2
MIN_STEPS, MAX_STEPS = 3, 14

# The clause each step is tagged with: what a failure of that step would say about the pool.
CLAUSES = {
    "create_session": "SESSION-001", "get_session": "SESSION-002", "update_metadata": "SESSION-003",
    "delete_session": "SESSION-004", "advance_clock": "SESSION-005", "sweep": "SESSION-005",
    "worker_heartbeat": "SESSION-006", "stats": "SESSION-009", "store_worker_session": "SESSION-010",
    "store_program": "PROGRAM-001", "get_program": "PROGRAM-001", "store_global_program": "PROGRAM-003",
    "get_global_program": "PROGRAM-003", "execute": "AFFINITY-001", "wait_idle": "AFFINITY-001",
    "execute_async": "AFFINITY-002", "await": "AFFINITY-002", "crash_worker": "AFFINITY-005",
    "cleanup_session_on_workers": "CLEANUP-008", "stop_pool": "CLEANUP-001", "leftovers": "CLEANUP-001",
}
# Calls of the worker-side program tools are judged by the program clauses.
TOOL_CLAUSES = {"contract.program.store": "PROGRAM-004", "contract.program.run": "PROGRAM-004",
                "contract.program.drop": "PROGRAM-004"}
CALL_TOOLS = ("contract.whoami", "contract.echo", "contract.program.store", "contract.program.run",
              "contract.program.drop")
STORE_PROGRAM_OPS = ("store_program", "get_program", "store_global_program", "get_global_program")


def step_kind(step: Mapping[str, Any]) -> str:
    """The kind a step counts as in coverage: its op, and for calls whether and how they carry a session."""
    op = str(step["op"])
    if op not in ("execute", "execute_async"):
        return op
    if step.get("in_session"):
        return f"{op}/in_session"
    return f"{op}/session" if "session" in step else op


def step_kinds(profile: Profile) -> set[str]:
    """Every kind the generator can produce for this release."""
    kinds = set(CLAUSES) - set(() if profile.session_programs else STORE_PROGRAM_OPS)
    kinds |= {f"{op}/{how}" for op in ("execute", "execute_async") for how in ("session", "in_session")}
    return kinds


@dataclass
class _Known:
    """What the model knows of one session in the store; None fields where it cannot know."""

    exists: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    stale: bool = False  # untouched since a jump past its TTL: the next sweep removes it
    programs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Model:
    """The generator's picture of the pool and the store after the steps drawn so far."""

    size: int
    affinity: str
    store_programs: bool
    strict: bool
    sessions: dict[str, _Known | None] = field(default_factory=lambda: {s: _Known() for s in SESSIONS})
    counts_known: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    globals_: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    # With one worker, the programs it holds (session -> name -> source, and global); None after it was lost.
    worker_programs: dict[str, dict[str, Any]] | None = field(default_factory=dict)
    worker_globals: dict[str, Any] | None = field(default_factory=dict)
    home: dict[str, str] = field(default_factory=dict)  # session -> the id of a call whose worker it sticks to
    lost: set[str] = field(default_factory=set)  # sessions whose recorded worker may be gone
    idle: bool = False  # every worker free and checked in: the next call is a direct checkout
    pending: list[str] = field(default_factory=list)
    crashable: list[str] = field(default_factory=list)
    calls: int = 0
    steps: list[Step] = field(default_factory=list)

    def forget_session(self, session: str) -> None:
        self.sessions[session] = None
        self.counts_known = False

    def all_known(self) -> bool:
        return self.counts_known and all(k is not None for k in self.sessions.values())


def _tagged(step: Step) -> Step:
    clause = TOOL_CLAUSES.get(str(step.get("tool")), CLAUSES[step["op"]])
    return {**step, "clause": clause}


def _metadata(min_size: int = 0) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(["k", "role"]), st.sampled_from(["v1", "v2"]), min_size=min_size,
                           max_size=2)


def _data() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(["v1", "v2"]), st.fixed_dictionaries({"w": st.integers(0, 3)}))


# -- the session store ---------------------------------------------------------------------------------------
def _create_session(draw: st.DrawFn, m: _Model) -> Step:
    session, metadata = draw(st.sampled_from(SESSIONS)), draw(_metadata())
    known = m.sessions[session]
    if known is None:
        m.sessions[session] = None
    elif not known.exists:
        m.sessions[session] = _Known(exists=True, metadata=dict(metadata))
        m.counts["sessions_created"] += 1
    elif known.stale:  # whether re-creating touches it is for the sides to show; the model does not guess
        m.forget_session(session)
    step: Step = {"op": "create_session", "session": session, "expect": {"ok": True}}
    return {**step, "metadata": metadata} if metadata else step


def _touch(m: _Model, session: str) -> None:
    known = m.sessions[session]
    if known is not None and known.exists:
        known.stale = False


def _get_session(draw: st.DrawFn, m: _Model) -> Step:
    session = draw(st.sampled_from(SESSIONS))
    known = m.sessions[session]
    step: Step = {"op": "get_session", "session": session}
    if known is not None:
        step["expect"] = {"exists": known.exists, **({"metadata": dict(known.metadata)} if known.exists else {})}
    _touch(m, session)
    return step


def _update_metadata(draw: st.DrawFn, m: _Model) -> Step | None:
    present = [s for s, k in m.sessions.items() if k is not None and k.exists]
    if not present:
        return None
    session = draw(st.sampled_from(present))
    metadata = draw(_metadata(min_size=1))
    known = m.sessions[session]
    assert known is not None
    known.metadata.update(metadata)
    _touch(m, session)
    return {"op": "update_metadata", "session": session, "metadata": metadata}


def _delete_session(draw: st.DrawFn, m: _Model) -> Step:
    session = draw(st.sampled_from(SESSIONS))
    m.sessions[session] = _Known()  # deleting is idempotent: afterwards it is gone, whatever it was
    m.counts["sessions_deleted"] += 1
    m.home.pop(session, None)
    m.lost.discard(session)
    return {"op": "delete_session", "session": session, "expect": {"ok": True}}


def _advance_clock(draw: st.DrawFn, m: _Model) -> Step:
    seconds = draw(st.sampled_from([SHORT_JUMP_S, LONG_JUMP_S]))
    if seconds == LONG_JUMP_S:
        for known in m.sessions.values():
            if known is not None and known.exists:
                known.stale = True
        m.globals_ = {name: (data, True) for name, (data, _) in m.globals_.items()}
    return {"op": "advance_clock", "seconds": seconds}


def _sweep(draw: st.DrawFn, m: _Model) -> Step:
    step: Step = {"op": "sweep"}
    if m.all_known():
        expired = [s for s, k in m.sessions.items() if k is not None and k.exists and k.stale]
        step["expect"] = {"expired": len(expired)}
        m.counts["sessions_expired"] += len(expired)
        for session in expired:
            m.sessions[session] = _Known()
            m.home.pop(session, None)
    else:
        m.counts_known = False
        for session, known in m.sessions.items():
            if known is not None and known.stale:
                m.sessions[session] = None
    m.counts["cleanup_runs"] += 1
    m.globals_ = {name: value for name, value in m.globals_.items() if not value[1]}
    return step


def _stats(draw: st.DrawFn, m: _Model) -> Step:
    step: Step = {"op": "stats"}
    if m.all_known():
        current = sum(1 for k in m.sessions.values() if k is not None and k.exists)
        step["expect"] = {key: m.counts[key] for key in
                          ("sessions_created", "sessions_deleted", "sessions_expired", "cleanup_runs")}
        step["expect"]["current_sessions"] = current
    return step


def _worker_heartbeat(draw: st.DrawFn, m: _Model) -> Step:
    session = draw(st.sampled_from(SESSIONS))
    known = m.sessions[session]
    step: Step = {"op": "worker_heartbeat", "session": session}
    if known is not None:
        step["expect"] = {"session_valid": known.exists}
        if known.exists and known.stale:  # whether a heartbeat touches is what SESSION-006 asks both sides
            m.forget_session(session)
    return step


def _store_worker_session(draw: st.DrawFn, m: _Model) -> Step:
    session = draw(st.sampled_from(SESSIONS))
    known = m.sessions[session]
    if known is not None and not known.exists:
        m.sessions[session] = _Known(exists=True)
        m.counts["sessions_created"] += 1
    _touch(m, session)
    m.home.pop(session, None)
    m.lost.add(session)
    return {"op": "store_worker_session", "session": session, "worker_id": "gone_worker"}


def _cleanup_session(draw: st.DrawFn, m: _Model) -> Step:
    session = draw(st.sampled_from(SESSIONS))
    if m.worker_programs is not None:
        m.worker_programs.pop(session, None)
    return {"op": "cleanup_session_on_workers", "session": session, "expect": {"ok": True}}


def _store_program(draw: st.DrawFn, m: _Model) -> Step | None:
    present = [s for s, k in m.sessions.items() if k is not None and k.exists]
    if not present:
        return None
    session, name, data = draw(st.sampled_from(present)), draw(st.sampled_from(PROGRAM_NAMES)), draw(_data())
    known = m.sessions[session]
    assert known is not None
    known.programs[name] = data
    _touch(m, session)
    return {"op": "store_program", "session": session, "program": name, "data": data}


def _get_program(draw: st.DrawFn, m: _Model) -> Step:
    session, name = draw(st.sampled_from(SESSIONS)), draw(st.sampled_from(PROGRAM_NAMES))
    known = m.sessions[session]
    step: Step = {"op": "get_program", "session": session, "program": name}
    if known is not None:
        found = known.exists and name in known.programs
        step["expect"] = {"data": known.programs[name]} if found else {"missing": True}
    _touch(m, session)
    return step


def _store_global_program(draw: st.DrawFn, m: _Model) -> Step:
    name, data = draw(st.sampled_from(PROGRAM_NAMES)), draw(_data())
    m.globals_[name] = (data, False)
    return {"op": "store_global_program", "program": name, "data": data}


def _get_global_program(draw: st.DrawFn, m: _Model) -> Step:
    name = draw(st.sampled_from(PROGRAM_NAMES))
    found = m.globals_.get(name)
    return {"op": "get_global_program", "program": name,
            "expect": {"data": found[0]} if found is not None else {"missing": True}}


# -- calls through the pool ----------------------------------------------------------------------------------
def _call_params(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    if tool == "contract.echo":
        return {"x": draw(st.integers(0, 9))}
    if tool == "contract.program.store":
        scope = draw(st.sampled_from(["session", "global"]))
        return {"name": draw(st.sampled_from(PROGRAM_NAMES)), "source": draw(st.sampled_from(["a", "b"])),
                **({"scope": "global"} if scope == "global" else {})}
    if tool in ("contract.program.run", "contract.program.drop"):
        return {"name": draw(st.sampled_from(PROGRAM_NAMES))}
    return {}


def _program_expect(m: _Model, session: str, tool: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A worker program's outcome, known only with one worker that has not been lost since the programs went in."""
    if m.size != 1 or m.worker_programs is None or m.worker_globals is None:
        return {}
    mine, name = m.worker_programs.setdefault(session, {}), params["name"]
    if tool == "contract.program.store":
        (m.worker_globals if params.get("scope") == "global" else mine)[name] = params["source"]
        return {"ok": True}
    if tool == "contract.program.drop":
        # Whether dropping a program absent from the scope is an error is the worker's own; both sides run it.
        m.worker_programs = m.worker_globals = None
        return {}
    if name in mine:
        return {"ok": True, "result_fields": {"source": mine[name], "scope": "session"}}
    if name in m.worker_globals:
        return {"ok": True, "result_fields": {"source": m.worker_globals[name], "scope": "global"}}
    return {"ok": False, "error_type": "ProgramNotFound"}


def _routed_session(m: _Model, session: str | None, recorded: str | None, call_id: str) -> None:
    """What a call for a session does to the store: a direct checkout records (and creates) the session with its
    worker (`recorded` is how the model knows it); any other call may or may not have recorded it."""
    if session is None:
        return
    known = m.sessions[session]
    if recorded is not None:
        if known is not None and not known.exists:
            m.sessions[session] = _Known(exists=True)
            m.counts["sessions_created"] += 1
        _touch(m, session)
        m.home[session] = recorded
        m.lost.discard(session)
        return
    m.home.pop(session, None)
    if known is None or not known.exists or known.stale:
        m.forget_session(session)


def _call(draw: st.DrawFn, m: _Model, asynchronous: bool) -> Step | None:
    if asynchronous and len(m.pending) >= MAX_PENDING:
        return None
    session = draw(st.one_of(st.none(), st.sampled_from(SESSIONS)))
    tool = "contract.sleep" if asynchronous else draw(st.sampled_from(CALL_TOOLS if session else CALL_TOOLS[:2]))
    program_tool = tool.startswith("contract.program.")
    in_session = session is not None and (program_tool or draw(st.booleans()))
    m.calls += 1
    call_id = f"{'a' if asynchronous else 'c'}{m.calls}"
    step: Step = {"op": "execute_async" if asynchronous else "execute", "id": call_id, "tool": tool}
    params = {"seconds": SLEEP_S} if asynchronous else _call_params(draw, tool)
    if params:
        step["params"] = params
    if session is not None:
        step["session"] = session
    if in_session:
        step["in_session"] = True
    if m.strict and session is not None and draw(st.booleans()):
        step["affinity"] = draw(st.sampled_from(["hint", "strict_queue", "strict_fail_fast"]))
    mode = step.get("affinity", m.affinity)
    # A direct checkout whose worker the model can name: under strict modes a session whose recorded worker may
    # be gone gets session_worker_unavailable, or not, as each side decides.
    sure = m.idle and not m.pending and not asynchronous and (session is None or mode == "hint"
                                                                or session not in m.lost)
    expect: dict[str, Any] = {}
    if sure:
        expect["ok"] = True
        if program_tool and session is not None:
            expect = _program_expect(m, session, tool, params)
        home = m.home.get(session) if session is not None else None
        if home is not None:
            expect["same_worker_as"] = home
    elif program_tool and m.size == 1:
        m.worker_programs = m.worker_globals = None  # a call whose outcome the model cannot tell
    if expect:
        step["expect"] = expect
    _routed_session(m, session, call_id if sure else None, call_id)
    if sure and not program_tool:
        m.crashable.append(call_id)
    if asynchronous:
        m.pending.append(call_id)
    m.idle = False
    return step


def _execute(draw: st.DrawFn, m: _Model) -> Step | None:
    return _call(draw, m, asynchronous=False)


def _execute_async(draw: st.DrawFn, m: _Model) -> Step | None:
    return _call(draw, m, asynchronous=True)


def _await(draw: st.DrawFn, m: _Model) -> Step | None:
    if not m.pending:
        return None
    call_id = draw(st.sampled_from(m.pending))
    m.pending.remove(call_id)
    m.idle = False
    return {"op": "await", "of": call_id}


def _wait_idle(draw: st.DrawFn, m: _Model) -> Step:
    m.idle = True
    return {"op": "wait_idle"}


def _crash_worker(draw: st.DrawFn, m: _Model) -> list[Step] | None:
    """Crash the worker of a call that reached it; with none at hand, first make one (on an idle pool)."""
    if m.pending:
        return None
    before: list[Step] = []
    if not m.crashable:
        m.calls += 1
        before = [{"op": "wait_idle"},
                  {"op": "execute", "id": f"c{m.calls}", "tool": "contract.whoami", "expect": {"ok": True}}]
        m.crashable.append(f"c{m.calls}")
    call_id = draw(st.sampled_from(m.crashable))
    m.crashable.clear()
    m.home.clear()
    m.lost |= set(SESSIONS)
    m.idle = False
    if m.size == 1:
        m.worker_programs, m.worker_globals = {}, {}
    else:
        m.worker_programs = m.worker_globals = None
    return [*before, {"op": "crash_worker", "of": call_id}]


_Rule = Callable[[st.DrawFn, _Model], Step | list[Step] | None]
RULES: dict[str, _Rule] = {
    "create_session": _create_session, "get_session": _get_session, "update_metadata": _update_metadata,
    "delete_session": _delete_session, "advance_clock": _advance_clock, "sweep": _sweep, "stats": _stats,
    "worker_heartbeat": _worker_heartbeat, "store_worker_session": _store_worker_session,
    "cleanup_session_on_workers": _cleanup_session, "store_program": _store_program, "get_program": _get_program,
    "store_global_program": _store_global_program, "get_global_program": _get_global_program,
    "execute": _execute, "execute_async": _execute_async, "await": _await, "wait_idle": _wait_idle,
    "crash_worker": _crash_worker,
}


# Calls and what makes them knowable (an idle pool) are drawn more often than one store operation each.
WEIGHTS = {"execute": 5, "wait_idle": 3, "execute_async": 2, "await": 2, "crash_worker": 2}


def _rules_for(model: _Model) -> list[str]:
    return [op for op in RULES if model.store_programs or op not in STORE_PROGRAM_OPS
            for _ in range(WEIGHTS.get(op, 1))]


def applies_for(steps: Iterable[Mapping[str, Any]], pool: Mapping[str, Any]) -> str:
    """The release condition a program needs: store programs exist only at some releases, strict modes at others."""
    terms = []
    if any(s["op"] in STORE_PROGRAM_OPS for s in steps):
        terms.append("session_programs")
    if pool.get("affinity", "hint") != "hint" or any(s.get("affinity", "hint") != "hint" for s in steps):
        terms.append("strict_affinity")
    return " and ".join(terms) or "always"


def finish(name: str, pool: Mapping[str, Any], steps: list[Step], description: str) -> Program:
    """A scenario around the steps: clauses from their tags, `applies` from what they use."""
    tagged = [_tagged(s) for s in steps]
    tools = sorted({str(s["tool"]) for s in tagged if "tool" in s})
    return {"schema_version": 1, "name": name, "description": description,
            "clauses": sorted({s["clause"] for s in tagged}), "applies": applies_for(tagged, pool),
            "pool": dict(pool), "requires_tools": tools, "steps": tagged}


@st.composite
def programs(draw: st.DrawFn, profile: Profile, name: str = "explore/program") -> Program:
    """One pool program for this release: a pool, steps drawn one by one over the model, pending calls awaited,
    and sometimes the pool stopped and its leftovers judged."""
    affinities = ["hint", "strict_queue", "strict_fail_fast"] if profile.strict_affinity else ["hint"]
    pool: dict[str, Any] = {"size": draw(st.integers(1, 3)), "session_ttl_s": TTL_S}
    affinity = draw(st.sampled_from(affinities))
    if affinity != "hint":
        pool["affinity"] = affinity
    model = _Model(size=pool["size"], affinity=affinity, store_programs=profile.session_programs,
                   strict=profile.strict_affinity)
    ops = _rules_for(model)
    # A fresh pool queues its first calls at 0.13.0, and a queued call records no session affinity (docs/e2e.md):
    # a Snakepit race the emulator does not play, so every program starts on an idle pool.
    model.steps.append(_wait_idle(draw, model))
    for _ in range(draw(st.integers(MIN_STEPS, MAX_STEPS))):
        drawn = RULES[draw(st.sampled_from(ops))](draw, model)
        model.steps += [drawn] if isinstance(drawn, dict) else drawn or []
    for call_id in list(model.pending):
        model.steps.append({"op": "await", "of": call_id})
    if len(model.steps) == 1 or (draw(st.booleans()) and draw(st.booleans())):
        model.steps += [{"op": "stop_pool"},
                        {"op": "leftovers", "expect": {"no_worker_process": True, "no_ready_file": True}}]
    return finish(name, pool, model.steps, "A generated pool program (snakepit-contract explore).")


def generate(profile: Profile, count: int, seed: int) -> list[Program]:
    """`count` distinct programs, the same ones for the same seed and release, named explore/p<seed>-<n>."""
    found: dict[str, Program] = {}

    # hypothesis may draw a small program twice: it is asked for more than `count` and each is kept once.
    @hypothesis_seed(seed)
    @settings(max_examples=2 * count + 10, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(profile))
    def collect(program: Program) -> None:
        if len(found) < count:
            found.setdefault(json.dumps(program, sort_keys=True), program)

    collect()
    return [{**p, "name": f"explore/p{seed}-{index}"} for index, p in enumerate(found.values(), 1)]
