"""Self-tests of the Elixir-client encoding in contract_tests.protocol.codec."""

from __future__ import annotations

from google.protobuf import any_pb2

from contract_tests.protocol.codec import STRING_VALUE_TYPE_URL, decode_reply, encode_parameters, parse_error
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb


def test_parameters_are_json_text_under_string_value() -> None:
    """Ensure each parameter is Jason-style JSON text, not a packed StringValue."""
    params = encode_parameters({"s": "hé", "n": 42, "none": None, "obj": {"a": [1, 2]}})
    assert {k: v.type_url for k, v in params.items()} == dict.fromkeys(params, STRING_VALUE_TYPE_URL)
    assert params["s"].value == '"hé"'.encode()
    assert params["n"].value == b"42"
    assert params["none"].value == b"null"
    assert params["obj"].value == b'{"a":[1,2]}'


def test_structured_error_needs_string_type_and_message() -> None:
    """Ensure errors parse like PythonTranslation: only objects with string type and message."""
    good = parse_error('{"type": "KeyError", "message": "k", "context": {}}', json_errors=True)
    assert (good.type, good.message, good.structured) == ("KeyError", "k", True)
    for raw in ('{"type": 1, "message": "k"}', "KeyError: k", '["KeyError", "k"]'):
        assert not parse_error(raw, json_errors=True).structured
    assert not parse_error('{"type": "KeyError", "message": "k"}', json_errors=False).structured


def test_reply_decoding_keeps_binary_and_raw_fallback() -> None:
    """Ensure non-JSON results come back raw and binary_result is surfaced."""
    raw = decode_reply(pb.ExecuteToolResponse(success=True, result=any_pb2.Any(value=b"not json")), json_errors=True)
    assert raw.value == b"not json"
    binary = decode_reply(pb.ExecuteToolResponse(success=True, binary_result=b"\x00\x01"), json_errors=True)
    assert (binary.value, binary.binary) == (None, b"\x00\x01")
    failed = decode_reply(pb.ExecuteToolResponse(success=False, error_message="boom"), json_errors=False)
    assert not failed.ok and failed.error is not None and failed.error.raw == "boom"


def test_json_checks_reject_what_jason_rejects() -> None:
    """Ensure NaN, Infinity and invalid UTF-8 are not JSON for the suite, as for Snakepit's Jason."""
    from contract_tests.protocol.codec import is_json

    assert is_json(b'{"a": [1, 2.5, null]}')
    for bad in (b"NaN", b"-Infinity", b'{"x": Infinity}', b"\xff", b"{"):
        assert not is_json(bad), bad
