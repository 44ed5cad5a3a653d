"""JSON text in `Any.value`, both ways: the only value encoding on Snakepit's wire (contract §3)."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

from google.protobuf import any_pb2

from .errors import ToolError

# Snakepit ignores the type_url; StringValue is what it sends itself.
STRING_VALUE_URL = "type.googleapis.com/google.protobuf.StringValue"


# Nesting every parameter may have: far below Python's recursion limit at the decoder's stack depth, so deeper
# JSON is refused by this limit, as an application error, and never reaches the decoder's RecursionError.
MAX_DEPTH = 512
_OPENERS = (ord("["), ord("{"))

# Built once: json.dumps/loads with non-default options construct a codec on every call. NaN and Infinity are
# decoded (Jason, which encodes every parameter Snakepit sends, cannot produce them); the encoder refuses them in
# a result (allow_nan off), which makes that call an application error.
_DECODER = json.JSONDecoder()
_SCAN: Callable[[str, int], tuple[Any, int]] = vars(_DECODER)["scan_once"]  # the scanner decode() calls
_WHITESPACE = " \t\n\r"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Printable ASCII but the quote and the backslash: a string of only these is its own JSON text between quotes.
_PLAIN = bytes(b for b in range(0x20, 0x80) if b not in b'"\\')
_LONG_TEXT = 1 << 16


def _encode_str(text: str) -> str:
    """encode_basestring, with a shortcut for long text that needs no escape (one scan in C, 4x faster)."""
    if len(text) >= _LONG_TEXT and text.isascii() and not text.encode("ascii").translate(None, _PLAIN):
        return '"' + text + '"'
    return encode_basestring(text)


# The C encoder JSONEncoder.encode would build on every call, built once (sort_keys, skipkeys, allow_nan off).
# No circular-reference markers: results are built from decoded JSON, which cannot refer to itself. CPython's json
# always has it, and the worker runs on CPython only: grpcio supports no other interpreter (grpc/grpc#4221).
_C_MAKE_ENCODER: Any = vars(json.encoder)["c_make_encoder"]
_C_ENCODE: Callable[[Any, int], tuple[str, ...]] = \
    _C_MAKE_ENCODER(None, _ENCODER.default, _encode_str, None, ":", ",", False, False, False)


def decode_params(parameters: Mapping[str, any_pb2.Any]) -> dict[str, Any]:
    """Every `Any.value` is UTF-8 JSON text, whatever its type_url (snakepit: parameter-encoding)."""
    decoded: dict[str, Any] = {}
    for key in parameters:  # not .items(): the map's items view is Python code, iterating keys is not
        text = parameters[key].value
        if len(text) >= _LONG_TEXT and (plain := _plain_string(text)) is not None:
            decoded[key] = plain
            continue
        if _too_deep(text):
            raise ToolError("InvalidParameters",
                            f"parameter {key!r} nests JSON arrays/objects deeper than {MAX_DEPTH} levels, "
                            "the most this worker accepts")
        try:
            decoded[key] = _decode(text.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
            raise ToolError("InvalidParameters", f"parameter {key!r} is not UTF-8 JSON text: {exc}") from None
    return decoded


def _plain_string(text: bytes) -> str | None:
    """The value of a JSON string of printable ASCII without escapes, read by one scan in C; else None."""
    if text[:1] != b'"' or text[-1:] != b'"':
        return None
    inner = text[1:-1]
    return None if inner.translate(None, _PLAIN) else inner.decode("ascii")


def _decode(text: str) -> Any:
    """_DECODER.decode without its whitespace handling in Python when none surrounds the value (the usual case).

    Same scanner, same result; anything else (whitespace around, not JSON, text after the value) goes through
    decode(), which raises the usual error."""
    if text and text[0] not in _WHITESPACE and text[-1] not in _WHITESPACE:
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


def _too_deep(text: bytes) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH in the JSON text (brackets in strings do not count).

    Brackets are counted in C first; only text with more opening brackets than the limit is walked byte by byte."""
    if len(text) <= MAX_DEPTH or (text.find(b"[") < 0 and text.find(b"{") < 0):  # find is memchr: cheap
        return False
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
    return "".join(_C_ENCODE(value, 0)).encode()


def json_any(value: Any) -> any_pb2.Any:
    """Wrap a value the way Snakepit does: compact JSON text in `Any.value`, StringValue type_url."""
    return any_pb2.Any(type_url=STRING_VALUE_URL, value=encode_json(value))
