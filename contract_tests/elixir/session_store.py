"""In-memory copy of Snakepit's Elixir SessionStore, the state behind the BridgeServer's session RPCs."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# Elixir defaults: session_default_ttl 3600 s, session_cleanup_interval 60 000 ms,
# session_max_sessions 10 000 (snakepit: session-quota).
DEFAULT_TTL_S = 3600.0
DEFAULT_SWEEP_INTERVAL_S = 60.0
DEFAULT_MAX_SESSIONS = 10_000


class SessionStoreError(Exception):
    """A `{:error, reason}` from the Elixir store; `reason` is the atom's text (what the RPCs report)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class SessionQuotaExceeded(SessionStoreError):
    """`{:error, :session_quota_exceeded}`: the store holds `max_sessions` sessions (snakepit: session-quota)."""

    def __init__(self, max_sessions: int) -> None:
        super().__init__("session_quota_exceeded", f"session_quota_exceeded (max_sessions={max_sessions})")
        self.max_sessions = max_sessions


class InvalidSession(SessionStoreError, ValueError):
    """`Session.validate/1` failed, e.g. `:invalid_id` for an empty id (snakepit: session-store)."""


class SessionNotFound(SessionStoreError, KeyError):
    """`{:error, :not_found}`."""

    def __init__(self, session_id: str) -> None:
        super().__init__("not_found", f"session not found: {session_id!r}")
        self.session_id = session_id

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class SessionUpdateFailed(SessionStoreError):
    """`{:error, {:update_failed, error}}`: the update function raised (snakepit: session-store)."""


@dataclass
class Session:
    """`%Snakepit.Bridge.Session{}` (snakepit: session-store); times come from the store's (monotonic) clock."""

    id: str
    created_at: float
    last_accessed: float
    last_worker_id: str | None = None
    ttl: float = DEFAULT_TTL_S
    programs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"program_count": 0})

    def expired(self, now: float) -> bool:
        """Elixir's `Session.expired?/2`: strictly `last_accessed + ttl < now` (snakepit: session-store)."""
        return self.last_accessed + self.ttl < now


def _copy(session: Session) -> Session:
    """Hand out snapshots, like Elixir's immutable values, so callers never race the store."""
    return dataclasses.replace(
        session, programs=dict(session.programs), metadata=dict(session.metadata), stats=dict(session.stats)
    )


def _validate(session: Session) -> None:
    """Mirror `Session.validate/1` so bad input fails the way Elixir's store fails."""
    if not isinstance(session, Session):
        raise InvalidSession("not_a_session")
    if not isinstance(session.id, str) or session.id == "":
        raise InvalidSession("invalid_id")
    if not isinstance(session.programs, dict):
        raise InvalidSession("invalid_programs")
    if not isinstance(session.metadata, dict):
        raise InvalidSession("invalid_metadata")
    if not isinstance(session.ttl, int | float) or session.ttl < 0:
        raise InvalidSession("invalid_ttl")
    if session.last_accessed < session.created_at:
        raise InvalidSession("invalid_timestamps")
    if session.last_worker_id is not None and not isinstance(session.last_worker_id, str):
        raise InvalidSession("invalid_last_worker_id")


class SessionStore:
    """Thread-safe session table with Snakepit's semantics: idempotent create, touch-on-read, TTL sweep.

    Time is read from `clock` (seconds) so tests can advance a fake clock instead of sleeping.
    Unlike Elixir, times are not truncated to whole seconds.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        default_ttl_s: float = DEFAULT_TTL_S,
        max_sessions: int | None = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if max_sessions is not None and max_sessions <= 0:
            raise ValueError("max_sessions must be positive or None (unlimited)")
        self._clock = clock
        self.default_ttl_s = default_ttl_s
        # None = `:infinity`; v0.6.0 had no quota at all (quotas arrived in v0.6.6, snakepit: session-quota).
        self.max_sessions = max_sessions
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._stats = {"sessions_created": 0, "sessions_deleted": 0, "sessions_expired": 0, "cleanup_runs": 0,
                       "global_programs_stored": 0, "global_programs_deleted": 0, "global_programs_expired": 0}
        # v0.6.0: global programs live 3600 s from when they were stored (snakepit: program-storage).
        self.global_program_ttl_s = DEFAULT_TTL_S
        self._global_programs: dict[str, tuple[Any, float]] = {}
        self._sweeper: threading.Thread | None = None
        self._sweeper_stop = threading.Event()

    def now(self) -> float:
        """The store's clock, exposed so callers can reason about expiry in the same time base."""
        return self._clock()

    def _check_quota(self) -> None:
        # Elixir counts every row in the table, expired-but-unswept ones included (snakepit: session-quota).
        if self.max_sessions is not None and len(self._sessions) >= self.max_sessions:
            raise SessionQuotaExceeded(self.max_sessions)

    def create_session(
        self, session_id: str, metadata: dict[str, str] | None = None, ttl: float | None = None
    ) -> Session:
        """`create_session/2`: returns the existing session unchanged (metadata not merged) if the id exists.

        As in Snakepit >= 0.6.7 the quota is checked *before* the existence check, so at quota even
        re-creating an existing id raises `SessionQuotaExceeded` (snakepit: session-quota).
        """
        with self._lock:
            now = self._clock()
            session = Session(
                id=session_id,
                created_at=now,
                last_accessed=now,
                ttl=self.default_ttl_s if ttl is None else ttl,
                metadata=dict(metadata or {}),
            )
            _validate(session)
            self._check_quota()
            existing = self._sessions.get(session_id)
            if existing is not None:
                logger.debug("session %s already exists - reusing", session_id)
                return _copy(existing)
            self._sessions[session_id] = session
            self._stats["sessions_created"] += 1
            logger.debug("created session %s (ttl=%s)", session_id, session.ttl)
            return _copy(session)

    def get_session(self, session_id: str) -> Session | None:
        """`get_session/1`: touches `last_accessed`, so every read extends the session's life (snakepit: session-store).

        Expiry is not checked here: as in Elixir, an expired session is returned (and revived by
        the touch) until a sweep removes it.
        """
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            session.last_accessed = max(session.last_accessed, self._clock())
            return _copy(session)

    def peek_session(self, session_id: str) -> Session | None:
        """Read without touching (Elixir's `session_exists?/1` also does not touch); for assertions."""
        with self._lock:
            session = self._sessions.get(session_id)
            return None if session is None else _copy(session)

    def session_exists(self, session_id: str) -> bool:
        """`session_exists?/1`: no touch."""
        with self._lock:
            return session_id in self._sessions

    def list_sessions(self) -> list[str]:
        """`list_sessions/0`."""
        with self._lock:
            return list(self._sessions)

    def update_session(self, session_id: str, fn: Callable[[Session], Session]) -> Session:
        """`update_session/2`: apply `fn` to a copy, validate, touch and store it atomically."""
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                raise SessionNotFound(session_id)
            try:
                updated = fn(_copy(current))
            except Exception as exc:
                logger.error("error updating session %s: %r", session_id, exc)
                raise SessionUpdateFailed("update_failed", f"update_failed: {exc!r}") from exc
            _validate(updated)
            stored = _copy(updated)
            stored.last_accessed = max(stored.last_accessed, self._clock())
            self._sessions[session_id] = stored
            return _copy(stored)

    def delete_session(self, session_id: str) -> None:
        """`delete_session/1`: idempotent; Elixir counts `sessions_deleted` even when nothing was there."""
        with self._lock:
            self._sessions.pop(session_id, None)
            self._stats["sessions_deleted"] += 1

    def store_worker_session(self, session_id: str, worker_id: str) -> None:
        """Affinity upsert: set `last_worker_id` and touch; create the session (quota-checked) if missing."""
        with self._lock:
            session = self._sessions.get(session_id)
            now = self._clock()
            if session is not None:
                session.last_worker_id = worker_id
                session.last_accessed = max(session.last_accessed, now)
                return
            session = Session(
                id=session_id,
                created_at=now,
                last_accessed=now,
                ttl=self.default_ttl_s,
                last_worker_id=worker_id,
            )
            _validate(session)
            self._check_quota()
            self._sessions[session_id] = session
            self._stats["sessions_created"] += 1

    # -- programs: the v0.6.0 ... v0.7.1 API, removed in v0.7.2 (snakepit: program-storage) -----------------
    def store_program(self, session_id: str, program_id: str, data: Any) -> None:
        """`store_program/3` (and `update_program/3`, its alias): via update_session, so it touches."""

        def put(session: Session) -> Session:
            if program_id not in session.programs:
                session.stats["program_count"] = session.stats.get("program_count", 0) + 1
            session.programs[program_id] = data
            return session

        self.update_session(session_id, put)

    update_program = store_program

    def get_program(self, session_id: str, program_id: str) -> Any:
        """`get_program/2`: through get_session (touches); SessionNotFound for a missing session or program."""
        session = self.get_session(session_id)
        if session is None or program_id not in session.programs:
            raise SessionNotFound(f"{session_id}/{program_id}")
        return session.programs[program_id]

    def store_global_program(self, program_id: str, data: Any) -> None:
        """`store_global_program/2`: a separate table of {id, data, stored_at}, with its own TTL."""
        with self._lock:
            self._global_programs[program_id] = (data, self._clock())
            self._stats["global_programs_stored"] += 1

    def get_global_program(self, program_id: str) -> Any:
        """`get_global_program/1`: reading does not refresh a global program's age."""
        with self._lock:
            if program_id not in self._global_programs:
                raise SessionNotFound(program_id)
            return self._global_programs[program_id][0]

    def delete_global_program(self, program_id: str) -> None:
        """`delete_global_program/1`: idempotent, always counted."""
        with self._lock:
            self._global_programs.pop(program_id, None)
            self._stats["global_programs_deleted"] += 1

    def sweep(self) -> int:
        """One cleanup run: delete sessions with `last_accessed + ttl < now`; returns how many went.

        Global programs older than their TTL go in the same run (v0.6.0 session_store.ex, cleanup timer).
        """
        with self._lock:
            now = self._clock()
            expired = [sid for sid, s in self._sessions.items() if s.expired(now)]
            for sid in expired:
                del self._sessions[sid]
            old = [pid for pid, (_, stored_at) in self._global_programs.items()
                   if stored_at < now - self.global_program_ttl_s]
            for pid in old:
                del self._global_programs[pid]
            self._stats["global_programs_expired"] += len(old)
            self._stats["sessions_expired"] += len(expired)
            self._stats["cleanup_runs"] += 1
        if expired:
            logger.debug("swept %d expired sessions", len(expired))
        return len(expired)

    def stats(self) -> dict[str, int]:
        """`get_stats/0` counters plus `current_sessions` (ETS memory/table info has no equivalent)."""
        with self._lock:
            return {**self._stats, "current_sessions": len(self._sessions)}

    def start_sweeper(self, interval_s: float = DEFAULT_SWEEP_INTERVAL_S) -> None:
        """Sweep every `interval_s` seconds of real time in a daemon thread, like Elixir's 60 s timer."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        with self._lock:
            if self._sweeper is not None and self._sweeper.is_alive():
                return
            self._sweeper_stop.clear()
            stop = self._sweeper_stop

            def run() -> None:
                while not stop.wait(interval_s):
                    try:
                        self.sweep()
                    except Exception:  # keep sweeping, as the GenServer timer would
                        logger.exception("session sweep failed")

            self._sweeper = threading.Thread(target=run, name="session-sweeper", daemon=True)
            self._sweeper.start()

    def stop_sweeper(self) -> None:
        """Stop the sweeper thread, if any (idempotent)."""
        with self._lock:
            thread, self._sweeper = self._sweeper, None
            self._sweeper_stop.set()
        if thread is not None:
            thread.join(timeout=5)
