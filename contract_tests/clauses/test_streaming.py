"""STREAM: ExecuteStreamingTool chunks, endings, failures and cancellation (snakepit: streaming-chunks)."""

from __future__ import annotations

import time
from typing import Any

import grpc

from contract_tests.contract.clause import clause, requires_tools
from contract_tests.driver.client import StreamResult, WorkerClient
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.errors import expect
from contract_tests.judging.plugin import Settings
from contract_tests.protocol.codec import is_json, parse_error, strict_json_loads

STREAM = "contract.stream"
# How soon a cancelled stream's producer must be seen stopped (the bound RPC-011 sets for unary calls); a
# requirement, so --timeout-scale never stretches it (Settings.judged_s).
STOP_BOUND_S = 1.0
# How long a worker is watched after an unknown streaming tool: as long as RPC-010 watches one after a cancel.
AFTER_UNKNOWN_WATCH_S = 2.0


def _stream(client: WorkerClient, count: int = 5, **params: Any) -> StreamResult:
    return client.stream(STREAM, {"count": count, **params}, timeout=30)


def _ended_ok(result: StreamResult) -> None:
    expect(result.code is grpc.StatusCode.OK, "stream status", "OK", f"{result.code.name}: {result.details}")


@clause("STREAM-001")
@requires_tools(STREAM)
def test_stream_ends_ok(client: WorkerClient) -> None:
    for count in (5, 0):  # an empty stream is a stream too
        _ended_ok(_stream(client, count=count))


@clause("STREAM-002")
@requires_tools(STREAM)
def test_chunk_ids_unique(client: WorkerClient) -> None:
    result = _stream(client, count=20)
    ids = [c.chunk_id for c in result.chunks if c.chunk_id or not c.is_final]
    expect(len(ids) == len(set(ids)) and all(ids), "chunk ids", "unique, non-empty", ids)


@clause("STREAM-003")
@requires_tools(STREAM)
def test_chunk_data_is_json(client: WorkerClient) -> None:
    for chunk in _stream(client).payload_chunks:
        expect(is_json(chunk.data), f"data of chunk {chunk.chunk_id!r}", "JSON", chunk.data[:80])


@clause("STREAM-004")
@requires_tools(STREAM)
def test_chunk_data_is_json_object(client: WorkerClient) -> None:
    for chunk in _stream(client).payload_chunks:
        try:
            data = strict_json_loads(chunk.data)
        except ValueError:
            data = None
        expect(isinstance(data, dict), f"data of chunk {chunk.chunk_id!r}", "a JSON object", chunk.data[:80])


@clause("STREAM-005")
@requires_tools(STREAM)
def test_final_chunk_is_last(client: WorkerClient) -> None:
    result = _stream(client)
    finals = [i for i, c in enumerate(result.chunks) if c.is_final]
    expect(len(finals) <= 1 and all(i == len(result.chunks) - 1 for i in finals), "positions of is_final chunks",
           "at most one, the last", f"{finals} of {len(result.chunks)}")


@clause("STREAM-006")
@requires_tools(STREAM)
def test_exactly_one_final_chunk(client: WorkerClient) -> None:
    for count in (5, 0):  # an empty stream ends with its final chunk too
        result = _stream(client, count=count)
        expect(len(result.final_chunks) == 1, f"is_final chunks of a stream of {count} items", "exactly 1",
               len(result.final_chunks))


@clause("STREAM-007")
@requires_tools(STREAM)
def test_final_chunk_empty(client: WorkerClient) -> None:
    for chunk in _stream(client).final_chunks:
        expect(chunk.data == b"", "data of the final chunk", "empty", chunk.data[:80])


@clause("STREAM-008")
@requires_tools(STREAM)
def test_all_items_in_order(client: WorkerClient) -> None:
    # More items than a small buffer holds, produced as fast as the tool can: a lossy buffer shows.
    result = _stream(client, count=ITEMS)
    _ended_ok(result)
    indexes = [_item_index(c.data) for c in result.payload_chunks]
    expect(indexes == list(range(ITEMS)), "indexes of payload chunks", f"0, 1, ..., {ITEMS - 1}",
           _first_difference(indexes))


ITEMS = 300


def _first_difference(indexes: list[Any]) -> str:
    """Where the indexes first differ from 0, 1, 2, ... (the whole list would be long)."""
    where = next((i for i, index in enumerate(indexes) if index != i), len(indexes))
    return f"{len(indexes)} payload chunks; at position {where}: {indexes[where:where + 5]}"


def _item_index(data: bytes) -> Any:
    """The chunk's item index, or what the chunk holds instead (a chunk that is no JSON object is no item)."""
    try:
        item = strict_json_loads(data)
    except ValueError:
        return data[:40]
    return item.get("index") if isinstance(item, dict) else item


@clause("STREAM-009")
@requires_tools(STREAM)
def test_mid_stream_failure_non_ok(client: WorkerClient) -> None:
    result = _stream(client, count=10, fail_after=3, type="RuntimeError", message="stream broke")
    expect(result.code is not grpc.StatusCode.OK, "status after a mid-stream failure", "non-OK", "OK")
    expect(len(result.payload_chunks) == 3, "chunks before the failure", "3", len(result.payload_chunks))


@clause("STREAM-010")
@requires_tools(STREAM)
def test_mid_stream_failure_internal_json(client: WorkerClient) -> None:
    result = _stream(client, count=10, fail_after=2, type="RuntimeError", message="stream broke")
    expect(result.code is grpc.StatusCode.INTERNAL, "status", "INTERNAL", result.code.name)
    error = parse_error(result.details, json_errors=True)
    expect((error.type, error.message) == ("RuntimeError", "stream broke"), "status message",
           '{"type": "RuntimeError", "message": "stream broke", ...}', result.details)


@clause("STREAM-011")
@requires_tools(STREAM, "contract.whoami")
def test_cancel_stops_production(client: WorkerClient, contract_settings: Settings) -> None:
    call = client.stream_call(STREAM, {"count": 100_000, "interval_ms": 20}, timeout=60)
    for n, _ in enumerate(call):
        if n == 2:
            break
    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves Call.cancel untyped
    cancelled_at = time.monotonic()
    window, bound = 0.5 * contract_settings.timeout_scale, contract_settings.judged_s(STOP_BOUND_S)
    # Production must be seen stopped: two samples `window` apart that agree, the first taken within the bound.
    while True:
        sampled_at = time.monotonic()
        before = _chunks_produced(client)
        time.sleep(window)
        after = _chunks_produced(client)
        if after == before:
            return
        expect(sampled_at - cancelled_at <= bound, "chunks produced after cancellation",
               f"no more, {bound:.1f} s after it",
               f"{before} -> {after} from {sampled_at - cancelled_at:.2f} s on")


def _chunks_produced(client: WorkerClient) -> int:
    produced: int = client.execute("contract.whoami").value["stream_chunks_produced"]
    return produced


@clause("STREAM-012")
def test_unknown_streaming_tool(worker: WorkerProcess, contract_settings: Settings) -> None:
    client = worker.client
    assert client is not None
    result = client.stream("contract.no-such-stream", {}, timeout=10)
    expect(result.code is not grpc.StatusCode.DEADLINE_EXCEEDED, "unknown streaming tool", "a prompt end",
           "no end within 10 s")
    expect(result.code is not grpc.StatusCode.OK or not result.payload_chunks, "unknown streaming tool",
           "an error status or no payload", f"{len(result.payload_chunks)} payload chunks")
    # Watched a while, not glanced at: a worker whose clean-up of the failed stream kills it a second later fails.
    status = worker.wait_exit(AFTER_UNKNOWN_WATCH_S * contract_settings.timeout_scale)
    expect(status is None, "worker after an unknown streaming tool", f"alive {AFTER_UNKNOWN_WATCH_S:.0f} s later",
           f"exit status {status}")
    client.ping("after-unknown-stream")


@clause("STREAM-013")
def test_unknown_streaming_tool_internal_json(client: WorkerClient) -> None:
    result = client.stream("contract.no-such-stream", {}, timeout=10)
    expect(result.code is grpc.StatusCode.INTERNAL, "status of an unknown streaming tool", "INTERNAL", result.code.name)
    error = parse_error(result.details, json_errors=True)
    expect(error.structured, "status message", '{"type": "...", "message": "...", ...}', result.details[:200])
