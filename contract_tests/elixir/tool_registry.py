"""In-memory copy of Snakepit's Elixir ToolRegistry: per-session local (Elixir) and remote (worker) tools."""

from __future__ import annotations

import logging
import math
import re
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

logger = logging.getLogger(__name__)

# Handler of a local ("Elixir") tool: JSON-decoded parameters, binary parameters -> result.
ToolHandler = Callable[[dict[str, Any], dict[str, bytes]], Any]

# Snakepit >= 0.6.6 limits (snakepit: tool-registration).
MAX_TOOL_NAME_BYTES = 64
TOOL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*")
MAX_METADATA_ENTRIES = 32
MAX_METADATA_BYTES = 4_096


class Atom(str):
    """An Elixir atom, so `inspect_term` renders `:name` rather than a quoted string."""


def _inspect_str(text: str) -> str:
    """Elixir's `inspect/1` of a binary: escaped and quoted, or `<<...>>` when not printable."""
    escapes = {
        '"': '\\"',
        "\\": "\\\\",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\b": "\\b",
        "\f": "\\f",
        "\x1b": "\\e",
        "\x7f": "\\d",
        "\x07": "\\a",
    }

    def printable(ch: str) -> bool:
        cp = ord(ch)
        return (
            ch in escapes
            or 0x20 <= cp <= 0x7E
            or 0xA0 <= cp <= 0xD7FF
            or 0xE000 <= cp <= 0xFFFD
            or 0x10000 <= cp <= 0x10FFFF
        )

    if not all(printable(ch) for ch in text):
        return _binary_literal(text.encode("utf-8", "surrogatepass"))
    return '"' + "".join(escapes.get(ch, ch) for ch in text).replace("#{", "\\#{") + '"'


def _binary_literal(data: bytes) -> str:
    return "<<" + ", ".join(str(b) for b in data) + ">>"


def _inspect_bytes(data: bytes) -> str:
    try:
        return _inspect_str(data.decode("utf-8"))
    except UnicodeDecodeError:
        return _binary_literal(data)


def inspect_term(value: Any) -> str:
    """Render a Python value the way Elixir's `inspect/1` renders the matching term.

    Snakepit puts `inspect(reason)` into `error_message` fields, so the emulator needs the same
    text (e.g. `{:duplicate_tool, "name"}`, snakepit: tool-registration). Approximate for floats.
    """
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Atom):
        text = str(value)
        return ":" + text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_@]*[?!]?", text) else ":" + _inspect_str(text)
    if isinstance(value, str):
        return _inspect_str(value)
    if isinstance(value, bytes | bytearray):
        return _inspect_bytes(bytes(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "{" + ", ".join(inspect_term(v) for v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inspect_term(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "%{" + ", ".join(f"{inspect_term(k)} => {inspect_term(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _etf_size(value: Any) -> int:
    """Byte size of `:erlang.term_to_binary/1` without the version byte (strings count as binaries)."""
    if value is None or isinstance(value, bool | Atom):
        text = "nil" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        return 2 + len(text.encode())  # SMALL_ATOM_UTF8_EXT
    if isinstance(value, str):
        return 5 + len(value.encode("utf-8", "surrogatepass"))  # BINARY_EXT
    if isinstance(value, bytes | bytearray):
        return 5 + len(value)
    if isinstance(value, int):
        if 0 <= value <= 255:
            return 2
        if -(2**31) <= value < 2**31:
            return 5
        return 3 + math.ceil(abs(value).bit_length() / 8)
    if isinstance(value, float):
        return 1 + struct.calcsize(">d")
    if isinstance(value, tuple):
        return (2 if len(value) < 256 else 5) + sum(_etf_size(v) for v in value)
    if isinstance(value, list):
        return 1 if not value else 5 + sum(_etf_size(v) for v in value) + 1
    if isinstance(value, Mapping):
        return 5 + sum(_etf_size(k) + _etf_size(v) for k, v in value.items())
    return 5 + len(repr(value).encode())


def term_to_binary_size(value: Any) -> int:
    """`byte_size(:erlang.term_to_binary(value))`: exact for maps of strings, close for other terms."""
    return 1 + _etf_size(value)


class ToolKind(Enum):
    """`InternalToolSpec.type`."""

    LOCAL = "local"
    REMOTE = "remote"


class ToolRegistrationError(Exception):
    """A registration rejected by the registry; `message` is the Elixir `inspect(reason)` text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RemoteToolSpec:
    """One `ToolRegistration` of a RegisterTools request, as BridgeServer hands it to the registry."""

    name: str
    description: str = ""
    # BridgeServer adds "supports_streaming" => "true"|"false" before validation (snakepit: tool-registration).
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Opaque to the registry (ParameterSpec messages for remote tools).
    parameters: Sequence[Any] = ()


@dataclass(frozen=True)
class RegisteredTool:
    """`%Snakepit.Bridge.InternalToolSpec{}`."""

    name: str
    kind: ToolKind
    description: str = ""
    parameters: Sequence[Any] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    worker_id: str | None = None
    handler: ToolHandler | None = None
    exposed_to_python: bool = False

    @property
    def supports_streaming(self) -> bool:
        """BridgeServer's `tool_supports_streaming?/1`: metadata true / "true" / "1" / 1."""
        return self.metadata.get("supports_streaming") in (True, "true", "1", 1)


class ToolRegistry:
    """Thread-safe tool table keyed by (session id, name).

    `validate=True` is Snakepit >= 0.6.8 (names and metadata checked, `insert_new`, whole batch
    rejected on a duplicate); `validate=False` is v0.6.0 (no checks, later registrations overwrite).
    Tools registered with `session_id=None` are "global": they behave as if registered in every
    session (the real registry only has per-session entries; the emulator uses this for the tools
    it exposes to every worker).
    """

    def __init__(self, validate: bool) -> None:
        self.validate = validate
        self._lock = threading.RLock()
        self._tools: dict[str | None, dict[str, RegisteredTool]] = {}

    # -- validation (HEAD:tool_registry.ex `validate_tool_name/1`, `validate_metadata/1`) --

    def _normalize_name(self, name: str) -> str:
        if not self.validate:
            return name
        trimmed = name.strip()
        if trimmed == "":
            raise ToolRegistrationError(inspect_term((Atom("invalid_tool_name"), Atom("empty"))))
        if len(trimmed.encode("utf-8", "surrogatepass")) > MAX_TOOL_NAME_BYTES:
            raise ToolRegistrationError(inspect_term((Atom("invalid_tool_name"), Atom("too_long"))))
        if not TOOL_NAME_PATTERN.fullmatch(trimmed):
            raise ToolRegistrationError(inspect_term((Atom("invalid_tool_name"), Atom("invalid_format"))))
        return trimmed

    def _check_metadata(self, metadata: Mapping[str, Any]) -> None:
        if not self.validate:
            return
        if len(metadata) > MAX_METADATA_ENTRIES:
            raise ToolRegistrationError(inspect_term((Atom("invalid_metadata"), Atom("too_many_entries"))))
        if term_to_binary_size(dict(metadata)) > MAX_METADATA_BYTES:
            raise ToolRegistrationError(inspect_term((Atom("invalid_metadata"), Atom("too_large"))))

    def _exists(self, session_id: str | None, name: str) -> bool:
        return name in self._tools.get(session_id, {}) or name in self._tools.get(None, {})

    # -- registration --

    def register(self, session_id: str, tools: Iterable[RemoteToolSpec], worker_id: str) -> dict[str, str]:
        """`register_tools/2` as RegisterTools uses it; returns BridgeServer's `tool_ids` map.

        With validation the batch is all-or-nothing: the first invalid spec, duplicate within the
        batch, or name already registered in the session rejects everything (snakepit: tool-registration).
        """
        specs: list[RegisteredTool] = []
        seen: set[str] = set()
        for spec in tools:
            name = self._normalize_name(spec.name)
            self._check_metadata(spec.metadata)
            if self.validate and name in seen:
                raise ToolRegistrationError(inspect_term((Atom("duplicate_tool"), name)))
            seen.add(name)
            specs.append(
                RegisteredTool(
                    name=name,
                    kind=ToolKind.REMOTE,
                    description=spec.description,
                    parameters=tuple(spec.parameters),
                    metadata=dict(spec.metadata),
                    worker_id=worker_id,
                )
            )
        with self._lock:
            if self.validate:
                for tool in specs:
                    if self._exists(session_id, tool.name):
                        raise ToolRegistrationError(inspect_term((Atom("duplicate_tool"), tool.name)))
            table = self._tools.setdefault(session_id, {})
            for tool in specs:
                table[tool.name] = tool
        logger.debug("registered %d tools for session %s (worker %s)", len(specs), session_id, worker_id)
        return {tool.name: f"{session_id}:{tool.name}" for tool in specs}

    def register_elixir_tool(
        self,
        session_id: str | None,
        name: str,
        handler: ToolHandler,
        *,
        description: str = "",
        parameters: Sequence[Mapping[str, Any]] = (),
        metadata: Mapping[str, Any] | None = None,
        exposed_to_python: bool = True,
    ) -> RegisteredTool:
        """`register_elixir_tool/4`: a local tool; `session_id=None` registers it for every session.

        As in Elixir, the tool's metadata also carries `description`, `exposed_to_python` and
        `parameters`, which is what GetExposedElixirTools turns into `ToolSpec.metadata`.
        """
        full_metadata: dict[str, Any] = {
            "description": description,
            "exposed_to_python": exposed_to_python,
            "parameters": [dict(p) for p in parameters],
            **(metadata or {}),
        }
        normalized = self._normalize_name(name)
        self._check_metadata(full_metadata)
        tool = RegisteredTool(
            name=normalized,
            kind=ToolKind.LOCAL,
            description=description,
            parameters=tuple(dict(p) for p in parameters),
            metadata=full_metadata,
            handler=handler,
            exposed_to_python=exposed_to_python,
        )
        with self._lock:
            if self.validate and self._exists(session_id, normalized):
                raise ToolRegistrationError(inspect_term((Atom("duplicate_tool"), normalized)))
            self._tools.setdefault(session_id, {})[normalized] = tool
        return tool

    def unregister(self, session_id: str | None, name: str) -> bool:
        """Remove one entry (test helper; Elixir has no single-tool delete)."""
        with self._lock:
            return self._tools.get(session_id, {}).pop(name, None) is not None

    # -- lookup --

    def get_tool(self, session_id: str, name: str) -> RegisteredTool | None:
        """`get_tool/2`: the session's entry, else a global one."""
        with self._lock:
            tool = self._tools.get(session_id, {}).get(name)
            return tool if tool is not None else self._tools.get(None, {}).get(name)

    def list_tools(self, session_id: str) -> list[RegisteredTool]:
        """`list_tools/1`: global tools first, shadowed by the session's own entries."""
        with self._lock:
            merged = {**self._tools.get(None, {}), **self._tools.get(session_id, {})}
        return list(merged.values())

    def list_exposed_elixir_tools(self, session_id: str) -> list[RegisteredTool]:
        """`list_exposed_elixir_tools/1`: local tools with `exposed_to_python` set."""
        return [t for t in self.list_tools(session_id) if t.kind is ToolKind.LOCAL and t.exposed_to_python]

    def cleanup_session(self, session_id: str) -> int:
        """`cleanup_session/1`; note CleanupSession never calls it (snakepit: cleanup-session)."""
        with self._lock:
            return len(self._tools.pop(session_id, {}))
