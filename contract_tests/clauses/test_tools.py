"""TOOL: ExecuteTool encoding, results, errors and payloads (snakepit: parameter-encoding, error-format, ...)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import tempfile
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from contract_tests.contract.clause import clause, requires_tools
from contract_tests.contract.profiles import Profile
from contract_tests.driver.client import WorkerClient
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.errors import ContractViolation, expect
from contract_tests.judging.plugin import Settings, UnreadableCatalogue, read_catalogue, skip_unless_listed
from contract_tests.protocol.codec import STRING_VALUE_TYPE_URL, ToolReply, encode_json, is_json
from contract_tests.protocol.payloads import catalogue_cases, json_values

MIB = 1024 * 1024


def _ok(reply: ToolReply, what: str) -> Any:
    expect(reply.ok, what, "success=true", reply.error.raw if reply.error else reply.response)
    return reply.value


def _typed(value: Any) -> Any:
    """The value with every number tagged by its JSON type, so 42 and 42.0 differ; floats by their shortest
    round-trip text, so -0.0 and 0.0 differ too."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value) if isinstance(value, float) else value)


def _round_trip(client: WorkerClient, names: list[str]) -> None:
    sent = {name: json_values()[name] for name in names}
    got = _ok(client.execute("contract.echo", sent), "contract.echo")
    for name in names:
        echoed = got.get(name, "<missing>") if isinstance(got, dict) else got
        expect(_typed(echoed) == _typed(sent[name]), f"parameter {name!r} after a round trip",
               json.dumps(sent[name]), json.dumps(echoed) if not isinstance(echoed, bytes) else repr(echoed))


@clause("TOOL-001")
@requires_tools("contract.echo")
def test_decodes_every_json_type(client: WorkerClient) -> None:
    _round_trip(client, ["string", "empty_string", "list", "object", "empty_object", "empty_list", "deep"])


@clause("TOOL-002")
@requires_tools("contract.echo")
def test_decodes_json_whatever_type_url(client: WorkerClient) -> None:
    request, headers = client.tool_request("contract.echo")
    for key, type_url in (("value_url", "type.googleapis.com/google.protobuf.Value"),
                          ("custom_url", "type.googleapis.com/snakepit.float"), ("no_url", "")):
        request.parameters[key].CopyFrom(any_pb2.Any(type_url=type_url, value=encode_json({"k": [1, 2]})))
    got = _ok(client.execute_request(request, headers), "contract.echo with mixed type_urls")
    for key in ("value_url", "custom_url", "no_url"):
        expect(isinstance(got, dict) and got.get(key) == {"k": [1, 2]}, f"parameter {key}", '{"k": [1, 2]}', got)


def _expect_json_result(reply: ToolReply, what: str) -> None:
    _ok(reply, what)
    expect(reply.response.HasField("result"), f"{what}: ExecuteToolResponse.result", "set", "unset")
    expect(is_json(reply.response.result.value), f"{what}: result.value", "JSON text",
           reply.response.result.value[:80])


@clause("TOOL-003")
def test_result_is_json(client: WorkerClient, catalogue: frozenset[str] | str) -> None:
    # contract.catalogue first: a worker whose every result is not JSON cannot be read for its tools, and would
    # otherwise get only skips for it.
    listing = client.execute("contract.catalogue")
    if listing.ok:
        _expect_json_result(listing, "contract.catalogue")
    tools = skip_unless_listed(catalogue)
    if "contract.add" in tools:
        # A sum no JSON number carries (Jason writes any Elixir float, 1.0e308 too): `Infinity`, what Python's
        # json.dumps writes by default, is no JSON, and Snakepit would hand the caller that text (snakepit:
        # result-encoding). An application error is the answer; how a failure is signalled is TOOL-009's to judge,
        # so a call that fails with an RPC status is no result, and not this clause's.
        with contextlib.suppress(grpc.RpcError):
            overflow = client.execute("contract.add", {"a": 1e308, "b": 1e308})
            if overflow.ok:
                _expect_json_result(overflow, "contract.add 1e308 + 1e308, a sum no JSON number carries")
    if "contract.echo" not in tools:
        pytest.skip("capability: worker does not implement contract.echo")
    _expect_json_result(client.execute("contract.echo", {"x": 1}), "contract.echo")


@clause("TOOL-004")
@requires_tools("contract.echo", "contract.add")
def test_integers_stay_integers(client: WorkerClient) -> None:
    # Beyond int64 too: Elixir integers are unbounded and Jason writes them exactly.
    _round_trip(client, ["int", "negative_int", "zero", "big_int", "huge_int", "huge_negative_int"])
    total = _ok(client.execute("contract.add", {"a": 40, "b": 2}), "contract.add")
    expect(_typed(total) == ("int", 42), "contract.add 40 + 2", "42", json.dumps(total))


@clause("TOOL-005")
@requires_tools("contract.echo")
def test_null_stays_null(client: WorkerClient) -> None:
    _round_trip(client, ["null"])


@clause("TOOL-006")
@requires_tools("contract.echo")
def test_booleans_stay_booleans(client: WorkerClient) -> None:
    _round_trip(client, ["true", "false"])


@clause("TOOL-007")
@requires_tools("contract.echo", "contract.add")
def test_floats_and_text_round_trip(client: WorkerClient) -> None:
    _round_trip(client, ["float", "float_with_zero_fraction", "tiny_float", "negative_zero", "float_17_digits",
                         "unicode", "escapes", "control_chars"])
    total = _ok(client.execute("contract.add", {"a": 0.5, "b": 0.25}), "contract.add")
    expect(total == 0.75 and isinstance(total, float), "contract.add 0.5 + 0.25", "0.75", total)
    got = _ok(client.execute("contract.echo", LONG_TEXT), "contract.echo of long text")
    for name, text in LONG_TEXT.items():
        echoed = got.get(name) if isinstance(got, dict) else got
        if echoed != text:
            sent, back = json.dumps(text), json.dumps(echoed)
            where = next((i for i, (a, b) in enumerate(zip(sent, back, strict=False)) if a != b), min(len(sent),
                                                                                                   len(back)))
            raise ContractViolation(f"parameter {name!r} after a round trip", sent[where:where + 40],
                                    f"{back[where:where + 40]} (the JSON differs from character {where})")


# Long text, as payloads are: plain ASCII, with backslash escapes only, with quotes and non-ASCII too (a
# decoder's shortcut for the first must not take the others); next to a long array of numbers.
LONG_TEXT: dict[str, Any] = {
    "long_plain": "plain ASCII text " * 5_000,
    "long_backslashes": "C:\\dir\\file\n\t" * 6_000,
    "long_quoted": 'a "quoted" word, \u00e9 ' * 4_000,
    "long_list": [n + 0.5 for n in range(2_000)],
}


def _expect_application_error(reply: ToolReply, what: str) -> None:
    expect(not reply.ok, what, "success=false", reply.value)
    expect(reply.error is not None and reply.error.raw.strip(), f"{what}: error_message", "non-empty text",
           reply.response.error_message)


@clause("TOOL-008")
def test_unknown_tool_is_application_error(client: WorkerClient) -> None:
    try:
        reply = client.execute("contract.no-such-tool", {"x": 1})
    except grpc.RpcError as err:
        raise ContractViolation("unknown tool", "status OK, success=false", f"status {err.code().name}") from err
    _expect_application_error(reply, "unknown tool")


@clause("TOOL-009")
@requires_tools("contract.fail")
def test_failing_tool_is_application_error(client: WorkerClient) -> None:
    try:
        reply = client.execute("contract.fail", {"type": "ValueError", "message": "bad value 7"})
    except grpc.RpcError as err:
        raise ContractViolation("contract.fail", "status OK, success=false", f"status {err.code().name}") from err
    _expect_application_error(reply, "contract.fail")


@clause("TOOL-010")
@requires_tools("contract.fail")
def test_error_message_is_structured_json(client: WorkerClient) -> None:
    reply = client.execute("contract.fail", {"type": "KeyError", "message": "missing key 'k'"})
    expect(reply.error is not None and reply.error.structured, "error_message",
           '{"type": "...", "message": "...", ...}', reply.response.error_message)
    assert reply.error is not None
    expect((reply.error.type, reply.error.message) == ("KeyError", "missing key 'k'"), "error type and message",
           "KeyError / missing key 'k'", f"{reply.error.type} / {reply.error.message}")


@clause("TOOL-011")
@requires_tools("contract.fail")
def test_error_message_is_text(client: WorkerClient) -> None:
    reply = client.execute("contract.fail", {"type": "RuntimeError", "message": "it broke"})
    raw = reply.response.error_message
    expect(not reply.ok and "it broke" in raw, "error_message", "text containing 'it broke'", raw)


class _Detonator:
    """Unpickling this creates a marker file: proof that a worker deserialised the bytes."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "unpickled"))  # type: ignore[return-value]


@clause("TOOL-012")
@requires_tools("contract.binary")
def test_binary_parameters_opaque(client: WorkerClient) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        marker = Path(scratch) / "unpickled"
        blob = pickle.dumps(_Detonator(str(marker)))
        raw = bytes(range(256))
        got = _ok(client.execute("contract.binary", {"echo": False}, binary={"pickle": blob, "raw": raw}),
                  "contract.binary")
        expect(not marker.exists(), "binary parameter holding a pickle", "never unpickled",
               "the worker unpickled it (the marker file exists)")
    digests = got.get("sha256", {}) if isinstance(got, dict) else {}
    for key, data in (("pickle", blob), ("raw", raw)):
        sent = hashlib.sha256(data).hexdigest()
        expect(digests.get(key) == sent, f"sha256 of binary parameter {key!r} as the worker saw it",
               f"{sent} (the sha256 of the {len(data)} bytes sent)", digests.get(key))


@clause("TOOL-013")
@requires_tools("contract.binary")
def test_binary_result(client: WorkerClient) -> None:
    data = b"\x00\xffsnakepit\x80" * 1000
    reply = client.execute("contract.binary", {"echo": True}, binary={"a": data})
    _ok(reply, "contract.binary")
    expect(reply.binary == data, "binary_result", f"{len(data)} bytes echoed", len(reply.binary or b""))


@clause("TOOL-014")
@requires_tools("contract.binary")
def test_accepts_50_mib_request(client: WorkerClient) -> None:
    data = b"s" * (50 * MIB)
    got = _ok(client.execute("contract.binary", {"echo": False}, binary={"big": data}, timeout=120),
              "contract.binary with 50 MiB")
    expect(isinstance(got, dict) and got.get("sizes", {}).get("big") == len(data), "size seen by the worker",
           str(len(data)), got)


@clause("TOOL-015")
@requires_tools("contract.blob")
def test_returns_50_mib_reply(client: WorkerClient) -> None:
    size = 50 * MIB
    got = _ok(client.execute("contract.blob", {"size": size}, timeout=120), "contract.blob 50 MiB")
    expect(isinstance(got, dict) and len(got.get("data", "")) == size, "reply data length", str(size),
           len(got.get("data", "")) if isinstance(got, dict) else got)


@clause("TOOL-016")
@requires_tools("contract.sleep")
def test_execution_time_set(client: WorkerClient) -> None:
    reply = client.execute("contract.sleep", {"seconds": 0.2})
    _ok(reply, "contract.sleep 0.2 s")
    ms = reply.response.execution_time_ms
    expect(150 <= ms <= 10_000, "execution_time_ms of a 200 ms call", "about 200", ms)


@clause("TOOL-017")
def test_accepts_correlation_metadata(client: WorkerClient, catalogue: frozenset[str] | str) -> None:
    request, headers = client.tool_request("contract.echo", {"x": 1}, correlation_id="corr-contract-17")
    request.metadata.update({"python_version": "3.13.0", "thread_sensitive": "true"})
    what = "contract.echo with Snakepit's correlation metadata and header"
    refused: grpc.RpcError | None = None
    try:
        reply = client.execute_request(request, headers)
    except grpc.RpcError as err:
        # Judged even without a readable catalogue: a worker that refuses Snakepit's header on every call refuses
        # contract.catalogue too. Its fault here only if the same call without metadata and header gets status OK.
        refused = err
        request.metadata.clear()
        try:
            client.execute_request(request)
        except grpc.RpcError:
            pass
        else:
            raise ContractViolation(what, "status OK, as without them", f"{err.code().name}: {err.details()}") from err
    if "contract.echo" not in skip_unless_listed(catalogue):
        pytest.skip("capability: worker does not implement contract.echo")
    if refused is not None:
        raise ContractViolation(what, "status OK, success=true", f"{refused.code().name}: {refused.details()}")
    _ok(reply, what)


@clause("TOOL-018")
@requires_tools("contract.echo")
def test_execute_without_initialize_session(client: WorkerClient, profile: Profile) -> None:
    request, headers = client.tool_request("contract.echo", {"fresh": True})
    request.session_id = profile.fixed_session_id or "session_999_never_initialized"
    got = _ok(client.execute_request(request, headers), "contract.echo in an uninitialized session")
    expect(got == {"fresh": True}, "echo result", '{"fresh": true}', got)


# Parameters a worker cannot take as JSON: each must give success=false (TOOL-019). No NaN: Snakepit encodes every
# parameter with Jason, which cannot produce one, and the 0.6.0 - 0.6.6 bridges accept it (docs/snakepit-bridge.md).
UNDECODABLE = {"not JSON": b"{not json", "not a JSON value": b"nope", "text after the value": b"1 2",
               "not UTF-8": b"\"\xff\xfe\""}
# Valid JSON that strains a decoder: nested deeper than many go (brackets inside a string, escapes, too), and
# wide (many sibling arrays). Decoded or refused, each must get an answer, never a crash.
STRAINING = {
    "100,000-deep": b'["a \\" ] [ string",' + b"[" * 100_000 + b"]" * 100_001,
    "1,000-wide": b"[" + b"[]," * 1_000 + b'"[{\\"}]"]',
}


# How long a worker is watched after the parameters of TOOL-019: as long as RPC-010 watches one after a cancel.
AFTER_INVALID_WATCH_S = 2.0


@clause("TOOL-019")
@requires_tools("contract.echo")
def test_invalid_json_parameter(worker: WorkerProcess, contract_settings: Settings) -> None:
    client = worker.client
    assert client is not None
    for what, text in UNDECODABLE.items():
        request, headers = client.tool_request("contract.echo")
        request.parameters["broken"].CopyFrom(any_pb2.Any(type_url=STRING_VALUE_TYPE_URL, value=text))
        try:
            reply = client.execute_request(request, headers)
        except grpc.RpcError as err:
            raise ContractViolation(f"{what} parameter", "status OK, success=false", err.code().name) from err
        _expect_application_error(reply, f"{what} parameter")
    for what, text in STRAINING.items():
        request, headers = client.tool_request("contract.echo")
        request.parameters["strain"].CopyFrom(any_pb2.Any(type_url=STRING_VALUE_TYPE_URL, value=text))
        try:
            client.execute_request(request, headers)
        except grpc.RpcError as err:
            raise ContractViolation(f"a {what} JSON parameter", "status OK (success either way)",
                                    err.code().name) from err
    # Watched a while, not glanced at: "no crash" includes one a second after the answer.
    status = worker.wait_exit(AFTER_INVALID_WATCH_S * contract_settings.timeout_scale)
    expect(status is None, "worker after the invalid and straining parameters",
           f"alive {AFTER_INVALID_WATCH_S:.0f} s later", f"exit status {status}")
    client.ping("after-invalid-json")


@clause("TOOL-022")
def test_catalogue_is_readable(client: WorkerClient, contract_settings: Settings) -> None:
    # Read as every check needing contract tools reads it: if this fails, they are NOT-RUN, never skipped.
    found = read_catalogue(client, contract_settings)
    if isinstance(found, UnreadableCatalogue):
        raise ContractViolation("contract.catalogue", 'success=true with the JSON text of {"tools": [names], '
                                '"version": 1}, or the answer a tool the worker does not have gets', str(found))
    skip_unless_listed(found)


@clause("TOOL-020")
def test_unknown_tool_error_is_structured_json(client: WorkerClient) -> None:
    reply = client.execute("contract.no-such-tool", {})
    expect(not reply.ok and reply.error is not None and reply.error.structured, "error_message of an unknown tool",
           '{"type": "...", "message": "...", ...}', reply.response.error_message[:200])


@clause("TOOL-021")
def test_catalogue_tools_answer_as_specified(client: WorkerClient, catalogue: frozenset[str] | str,
                                             profile: Profile) -> None:
    tools = skip_unless_listed(catalogue)
    cases = [case for case in catalogue_cases() if case["tool"] in tools]
    if not cases:
        pytest.skip("capability: worker implements none of the tools the cases use")
    session = f"catalogue-{uuid.uuid4().hex[:8]}"
    for number, case in enumerate(cases, 1):
        params = {**case["params"], **({"session_id": session} if case.get("in_session") else {})}
        what = f"case {number}: {case['tool']} {json.dumps(case['params'])}{' streamed' if case.get('stream') else ''}"
        if case.get("stream"):
            result = client.stream(case["tool"], params, timeout=10)
            got = [json.loads(c.data) for c in result.payload_chunks]
            expect(result.code is grpc.StatusCode.OK and got == case["chunks"], what,
                   f"status OK, payload chunks {case['chunks']}", f"{result.code.name}, {got}")
            continue
        binary = {key: text.encode() for key, text in case.get("binary", {}).items()}
        reply = client.execute(case["tool"], params, binary=binary, timeout=10)
        if "error_type" in case:
            _expect_application_error(reply, what)
            assert reply.error is not None
            if profile.json_errors:
                expect(reply.error.type == case["error_type"], f"{what}: error type", case["error_type"],
                       reply.response.error_message[:200])
            if "error_message" in case:
                expect(case["error_message"] in reply.error.raw, f"{what}: error message", case["error_message"],
                       reply.response.error_message[:200])
            continue
        expect(reply.ok, what, "success", reply.error.raw if reply.error else reply.value)
        if "result" in case:
            expect(reply.value == case["result"], what, json.dumps(case["result"]), reply.value)
        for key, value in case.get("result_fields", {}).items():
            expect(isinstance(reply.value, dict) and reply.value.get(key) == value, f"{what}: {key}", json.dumps(value),
                   reply.value)
        if "binary_result" in case and profile.binary_result:  # Snakepit reads binary_result from 0.6.11 only
            expect(reply.response.binary_result == case["binary_result"].encode(), f"{what}: binary_result",
                   case["binary_result"], reply.response.binary_result[:40])
