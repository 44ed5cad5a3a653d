"""JSON text in `Any.value`, both ways: the only value encoding on Snakepit's wire (contract §3)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2

from reference_worker.errors import ToolError

# Snakepit ignores the type_url; StringValue is what it sends itself.
STRING_VALUE_URL = "type.googleapis.com/google.protobuf.StringValue"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Nesting every parameter may have: far below Python's recursion limit at the decoder's stack depth, so deeper
# JSON is refused by this limit, as an application error, and never reaches the decoder's RecursionError.
MAX_DEPTH = 512
_OPENERS = (ord("["), ord("{"))

# Built once: json.dumps/loads with non-default options construct a codec on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_params(parameters: Mapping[str, any_pb2.Any]) -> dict[str, Any]:
    """Every `Any.value` is UTF-8 JSON text, whatever its type_url (snakepit: parameter-encoding)."""
    decoded: dict[str, Any] = {}
    for key, wrapped in parameters.items():
        if _too_deep(wrapped.value):
            raise ToolError("InvalidParameters",
                            f"parameter {key!r} nests JSON arrays/objects deeper than {MAX_DEPTH} levels, "
                            "the most this worker accepts")
        try:
            decoded[key] = _DECODER.decode(wrapped.value.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
            raise ToolError("InvalidParameters", f"parameter {key!r} is not UTF-8 JSON text: {exc}") from None
    return decoded


def _too_deep(text: bytes) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH in the JSON text (brackets in strings do not count).

    Brackets are counted in C first; only text with more opening brackets than the limit is walked byte by byte."""
    if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; types survive the trip (42 stays 42, None becomes null)."""
    return _ENCODER.encode(value).encode()


def json_any(value: Any) -> any_pb2.Any:
    """Wrap a value the way Snakepit does: compact JSON text in `Any.value`, StringValue type_url."""
    return any_pb2.Any(type_url=STRING_VALUE_URL, value=encode_json(value))
