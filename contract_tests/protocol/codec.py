"""Encode requests and decode replies exactly as Snakepit's Elixir client does.

Parameters travel as JSON text inside `Any.value` under the StringValue
type_url (snakepit: parameter-encoding); results are JSON in `Any.value` with the type_url
ignored (snakepit: result-encoding); application errors are parsed the way v0.13's
PythonTranslation does, or kept as text for v0.6 (snakepit: error-format).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import any_pb2

from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb

STRING_VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"


def encode_json(value: Any) -> bytes:
    """JSON text as Elixir's Jason.encode! writes it: compact, UTF-8, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_parameters(
    params: Mapping[str, Any], type_url: str = STRING_VALUE_TYPE_URL
) -> dict[str, any_pb2.Any]:
    """Each parameter becomes Any{type_url, value = JSON text}."""
    return {str(k): any_pb2.Any(type_url=type_url, value=encode_json(v)) for k, v in params.items()}


@dataclass(frozen=True)
class ToolError:
    """An application error as the caller of Snakepit would see it."""

    raw: str
    type: str | None
    message: str | None

    @property
    def structured(self) -> bool:
        return self.type is not None


def parse_error(error_message: str, json_errors: bool) -> ToolError:
    """Parse error_message like v0.13's PythonTranslation, or keep v0.6's plain text."""
    if json_errors:
        try:
            body = json.loads(error_message)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("type"), str) and isinstance(body.get("message"), str):
            return ToolError(raw=error_message, type=body["type"], message=body["message"])
    return ToolError(raw=error_message, type=None, message=None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Jason, like RFC 8259, has no NaN or Infinity; Python's json module would accept them.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant)


def strict_json_loads(data: bytes) -> Any:
    """Decode UTF-8 JSON text the way Elixir's Jason does; raise ValueError otherwise."""
    return _STRICT.decode(data.decode("utf-8"))


def decode_json_bytes(data: bytes) -> Any:
    """Decode JSON like Jason.decode: on failure return the raw bytes (Snakepit's fallback)."""
    try:
        return strict_json_loads(data)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return data


def is_json(data: bytes) -> bool:
    """True when data is UTF-8 JSON text that Jason would accept."""
    try:
        strict_json_loads(data)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ToolReply:
    """An ExecuteToolResponse decoded the way the caller of Snakepit would get it."""

    response: pb.ExecuteToolResponse
    value: Any
    binary: bytes | None
    error: ToolError | None

    @property
    def ok(self) -> bool:
        return self.response.success


def decode_reply(response: pb.ExecuteToolResponse, json_errors: bool) -> ToolReply:
    """Success: JSON result (or {:binary, bytes, metadata}); failure: the parsed error."""
    if not response.success:
        return ToolReply(response, None, None, parse_error(response.error_message, json_errors))
    value = decode_json_bytes(response.result.value) if response.HasField("result") else None
    binary = response.binary_result or None
    return ToolReply(response, value, binary, None)
