"""One repetition against one target: spawn-to-ready, latency, calls/s, streaming, payload, RSS.

Everything goes through the suite's launcher (WorkerSpec/WorkerProcess), so each target is spawned,
made ready, handshaken and heartbeated exactly as Snakepit would do it. Calls reuse one prebuilt
request and the raw stub, so the client's cost is the same for every target.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import grpc
import grpc.experimental

from contract_tests.bench.stats import percentile
from contract_tests.contract.profiles import Profile
from contract_tests.driver import processes
from contract_tests.driver.client import CHANNEL_OPTIONS
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.pool import PoolEmulator, PoolTimings
from contract_tests.errors import WorkerStartError
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

MIB = 1024 * 1024
# Figures that need contract tools, and which tool each one needs (docs/contract.md §5).
TOOL_FIGURES: dict[str, str] = {
    "p50_us": "contract.echo",
    "p90_us": "contract.echo",
    "p99_us": "contract.echo",
    "calls_per_s": "contract.echo",
    "cpu_us_per_call": "contract.echo",
    "rss_after_100_mib": "contract.echo",
    "rss_after_n_mib": "contract.echo",
    "rss_growth_mib": "contract.echo",
    "stream_chunks_per_s": "contract.stream",
    "stream_mb_per_s": "contract.stream",
    "stream_cpu_us_per_chunk": "contract.stream",
    "payload_1mib_mb_per_s": "contract.echo",
    "payload_1mib_cpu_us_per_call": "contract.echo",
    "payload_50mib_mb_per_s": "contract.echo",
    "pool_calls_per_s": "contract.echo",
}
UNITS: dict[str, str] = {
    "spawn_to_ready_ms": "ms",
    "p50_us": "µs",
    "p90_us": "µs",
    "p99_us": "µs",
    "calls_per_s": "calls/s",
    "cpu_us_per_call": "µs",
    "rss_after_100_mib": "MiB",
    "rss_after_n_mib": "MiB",
    "rss_growth_mib": "MiB",
    "stream_chunks_per_s": "chunks/s",
    "stream_mb_per_s": "MB/s",
    "stream_cpu_us_per_chunk": "µs",
    "payload_1mib_mb_per_s": "MB/s",
    "payload_1mib_cpu_us_per_call": "µs",
    "payload_50mib_mb_per_s": "MB/s",
    "pool_calls_per_s": "calls/s",
}
# Figures where a smaller number is better (the ratio reads "x times slower/bigger").
LOWER_IS_BETTER = {"spawn_to_ready_ms", "p50_us", "p90_us", "p99_us", "rss_after_100_mib", "rss_after_n_mib",
                   "rss_growth_mib", "stream_cpu_us_per_chunk", "cpu_us_per_call", "payload_1mib_cpu_us_per_call"}


# The stream figure's channel: a server stream is read on the calling thread (see _stream).
STREAM_CHANNEL_OPTIONS = [*CHANNEL_OPTIONS, (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]

CALL_FIGURES = ("p50_us", "p90_us", "p99_us", "calls_per_s", "cpu_us_per_call", "rss_after_100_mib", "rss_after_n_mib",
                "rss_growth_mib", "pool_calls_per_s")


@dataclass(frozen=True)
class BenchSettings:
    """How much to measure; the defaults are the documented method (docs/bench.md)."""

    calls: int = 2000
    warmup: int = 200
    repeat: int = 3
    launches: int = 5
    stream_chunks: int = 10_000
    stream_runs: int = 3
    payload_calls: int = 20
    payload_bytes: int = MIB
    # Timed 50 MiB echo calls, after one warm-up call (0: no 50 MiB figure); ~0.7 s each on a 2-core machine.
    payload_50mib_calls: int = 2
    # Pool throughput: `pool_calls` calls from `pool_sessions` concurrent sessions on `pool_size` workers (0: off).
    pool_calls: int = 2000
    pool_size: int = 2
    pool_sessions: int = 4
    # The tool of the latency, calls/s, RSS and pool figures: contract.echo, or any tool the worker has
    # (`--call-tool ping` for a worker without the catalogue), called with `call_params`.
    call_tool: str | None = None
    call_params: dict[str, object] = field(default_factory=dict)
    timeout_scale: float = 1.0

    def call(self) -> tuple[str, dict[str, object]]:
        """The tool and parameters of the timed calls."""
        return (self.call_tool, self.call_params) if self.call_tool else ("contract.echo", {"message": "ping", "n": 1})


@dataclass(frozen=True)
class Target:
    """Something to measure: a name and the command Snakepit would run (its flags are appended), or an image
    whose ENTRYPOINT is that command, each worker then a container of it (docs/worker-image.md)."""

    name: str
    command: Sequence[str]
    image: str | None = None


@dataclass
class Sample:
    """The figures of one repetition of one target, and the figures skipped with their reason."""

    figures: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _ready_s(worker: WorkerProcess, spawned_at: float, timeout_s: float) -> float:
    """Seconds from spawn to readiness, at 1 ms resolution.

    The launcher polls the ready file every 50 ms like Snakepit, which would round every figure up to
    that grid; here the file is polled every millisecond. The GRPC_READY line needs no polling.
    """
    if worker.ready_file is None:
        worker.wait_ready()
        return time.monotonic() - spawned_at
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if int(worker.ready_file.read_text().strip()) > 0:
                return time.monotonic() - spawned_at
        if worker.poll() is not None:
            raise WorkerStartError("worker exited before readiness", worker.poll(), worker.output_tail())
        time.sleep(0.001)
    raise WorkerStartError(f"no readiness within {timeout_s:.0f} s", worker.poll(), worker.output_tail())


def spawn_to_ready_s(spec: WorkerSpec, launches: int) -> list[float]:
    """Spawn until readiness (ready file or GRPC_READY line), `launches` times; each worker is then killed."""
    times = []
    for _ in range(launches):
        worker = WorkerProcess(spec)
        try:
            spawned_at = time.monotonic()
            worker.spawn()
            times.append(_ready_s(worker, spawned_at, spec.profile.readiness_timeout_s * spec.timeout_scale))
        finally:
            worker.stop(graceful=False)
    return times


def catalogue(worker: WorkerProcess) -> set[str] | None:
    """The contract tools the worker implements, or None without a usable contract.catalogue."""
    assert worker.client is not None
    try:
        reply = worker.client.execute("contract.catalogue", timeout=10)
    except (grpc.RpcError, ValueError):
        return None
    if not reply.ok or not isinstance(reply.value, dict) or not isinstance(reply.value.get("tools"), list):
        return None
    return {str(name) for name in reply.value["tools"]}


def _calls(worker: WorkerProcess, settings: BenchSettings, figures: dict[str, float]) -> None:
    """Warm-up, RSS after 100 calls, N timed sequential echo calls, RSS after them."""
    client = worker.client
    assert client is not None
    tool, params = settings.call()
    request, headers = client.tool_request(tool, params)
    call = client.stub.ExecuteTool
    metadata = headers or None
    first = call(request, timeout=10, metadata=metadata)
    if not first.success:
        raise RuntimeError(f"{tool} failed: {first.error_message[:200]}")
    for done in range(2, max(settings.warmup, 100) + 1):
        call(request, timeout=10, metadata=metadata)
        if done == 100:
            figures["rss_after_100_mib"] = processes.rss_mib(worker.pid) or 0.0
    latencies = []
    cpu_before = processes.cpu_s(worker.pid)
    started = time.perf_counter_ns()
    for _ in range(settings.calls):
        before = time.perf_counter_ns()
        call(request, timeout=10, metadata=metadata)
        latencies.append(time.perf_counter_ns() - before)
    elapsed_ns = time.perf_counter_ns() - started
    cpu_after = processes.cpu_s(worker.pid)
    if cpu_before is not None and cpu_after is not None:
        figures["cpu_us_per_call"] = (cpu_after - cpu_before) / settings.calls * 1e6
    for q in (50, 90, 99):
        figures[f"p{q}_us"] = percentile(latencies, q) / 1000
    figures["calls_per_s"] = settings.calls / (elapsed_ns / 1e9)
    figures["rss_after_n_mib"] = processes.rss_mib(worker.pid) or 0.0
    figures["rss_growth_mib"] = figures["rss_after_n_mib"] - figures["rss_after_100_mib"]


def _stream_once(worker: WorkerProcess, stub: pb_grpc.BridgeServiceStub, count: int) -> tuple[int, int, float]:
    """One contract.stream of `count` chunks with interval 0: chunks received, data bytes, seconds."""
    assert worker.client is not None
    request, headers = worker.client.tool_request("contract.stream", {"count": count, "interval_ms": 0}, stream=True)
    started = time.perf_counter()
    received = data_bytes = 0
    for chunk in stub.ExecuteStreamingTool(request, timeout=120, metadata=headers or None):
        received += 1
        data_bytes += len(chunk.data)
    return received, data_bytes, time.perf_counter() - started


def _stream(worker: WorkerProcess, settings: BenchSettings, figures: dict[str, float]) -> None:
    """`stream_runs` streams of `stream_chunks` chunks after a short warm-up one; the median run counts.

    The worker's CPU time per chunk over all the runs is the figure a busy machine disturbs least:
    time the worker spends descheduled is not CPU time. The chunks are read on a channel of their own
    that reads a server stream on the calling thread: grpc's default hands every message over from its
    channel thread, which doubles the client's CPU per chunk, and the client shares the cores with the worker.
    """
    assert worker.client is not None
    with grpc.insecure_channel(worker.client.target, options=STREAM_CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        _stream_once(worker, stub, min(100, settings.stream_chunks))
        cpu_before = processes.cpu_s(worker.pid)
        runs = sorted((_stream_once(worker, stub, settings.stream_chunks) for _ in range(settings.stream_runs)),
                      key=lambda run: run[0] / run[2])
        cpu_after = processes.cpu_s(worker.pid)
    received, data_bytes, elapsed = runs[len(runs) // 2]
    figures["stream_chunks_per_s"] = received / elapsed
    figures["stream_mb_per_s"] = data_bytes / elapsed / 1e6
    if cpu_before is not None and cpu_after is not None:
        figures["stream_cpu_us_per_chunk"] = (cpu_after - cpu_before) / sum(run[0] for run in runs) * 1e6


def _payload(worker: WorkerProcess, size: int, calls: int, warmups: int) -> tuple[float, float | None]:
    """contract.echo of a `size`-byte string: bytes sent per second of round trip (median call), in MB/s,
    and the worker's CPU time per timed call in µs (None where the OS gives no figure)."""
    client = worker.client
    assert client is not None
    request, headers = client.tool_request("contract.echo", {"data": "x" * size})
    times = []
    cpu_before: float | None = None
    for i in range(calls + warmups):
        if i == warmups:
            cpu_before = processes.cpu_s(worker.pid)
        started = time.perf_counter()
        reply = client.stub.ExecuteTool(request, timeout=120, metadata=headers or None)
        if i >= warmups:
            times.append(time.perf_counter() - started)
        if not reply.success:
            raise RuntimeError(f"contract.echo of {size} bytes failed: {reply.error_message[:200]}")
    cpu_after = processes.cpu_s(worker.pid)
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / calls * 1e6
    return size / percentile(times, 50) / 1e6, cpu


def _pool(spec: WorkerSpec, settings: BenchSettings, host: HostEmulator, figures: dict[str, float]) -> None:
    """calls/s through PoolEmulator: `pool_sessions` threads, each one call at a time, sharing `pool_size` workers."""
    per_session = max(1, settings.pool_calls // settings.pool_sessions)
    tool, params = settings.call()
    with PoolEmulator(lambda: spec, spec.profile, host, size=settings.pool_size,
                      timings=replace(PoolTimings.for_profile(spec.profile), health_check_interval_s=None)) as pool:

        def session(index: int, calls: int) -> None:
            for _ in range(calls):
                if not pool.execute(tool, params, session_id=f"bench_{index}", timeout=30).reply.ok:
                    raise RuntimeError(f"{tool} failed through the pool")

        with ThreadPoolExecutor(settings.pool_sessions) as threads:
            list(threads.map(session, range(settings.pool_sessions), [10] * settings.pool_sessions))  # warm-up
            started = time.perf_counter()
            list(threads.map(session, range(settings.pool_sessions), [per_session] * settings.pool_sessions))
            elapsed = time.perf_counter() - started
    figures["pool_calls_per_s"] = per_session * settings.pool_sessions / elapsed


def measure(
    spec: WorkerSpec, settings: BenchSettings, assume_tools: bool = False, host: HostEmulator | None = None
) -> Sample:
    """One repetition: spawn-to-ready launches, one worker for the call figures, then a pool (given a host).

    `assume_tools` is for the baselines, which answer the measured tools without a catalogue.
    """
    sample = Sample()
    launches = spawn_to_ready_s(spec, settings.launches)
    sample.figures["spawn_to_ready_ms"] = statistics.median(launches) * 1000
    with WorkerProcess(spec) as worker:
        tools = None if assume_tools else catalogue(worker)
        for figure, tool in TOOL_FIGURES.items():
            if settings.call_tool and figure in CALL_FIGURES:
                continue  # the user named a tool the worker has
            if not assume_tools and tool not in (tools or set()):
                sample.skipped[figure] = (
                    "the worker has no contract.catalogue (docs/contract.md §5)" if tools is None
                    else f"the worker's catalogue lacks {tool}"
                )
        if "p50_us" not in sample.skipped:
            _calls(worker, settings, sample.figures)
        # Streamed before the payloads: those leave the worker, which decodes them, with a heap the bare servers
        # (which splice the bytes back) never have, and that cost its streaming 5-10 % more (docs/bench.md).
        if "stream_chunks_per_s" not in sample.skipped:
            _stream(worker, settings, sample.figures)
        if "payload_1mib_mb_per_s" not in sample.skipped:
            rate, cpu = _payload(worker, settings.payload_bytes, settings.payload_calls, warmups=2)
            sample.figures["payload_1mib_mb_per_s"] = rate
            if cpu is not None:
                sample.figures["payload_1mib_cpu_us_per_call"] = cpu
        if "payload_50mib_mb_per_s" not in sample.skipped:
            if settings.payload_50mib_calls == 0:
                sample.skipped["payload_50mib_mb_per_s"] = "50 MiB payload not requested (--payload-50mib-calls 0)"
            else:
                sample.figures["payload_50mib_mb_per_s"] = _payload(worker, 50 * MIB, settings.payload_50mib_calls,
                                                                    warmups=1)[0]
    if "pool_calls_per_s" not in sample.skipped:
        if host is None or settings.pool_calls == 0:
            sample.skipped["pool_calls_per_s"] = "pool throughput not requested (--pool-calls 0)"
        else:
            _pool(spec, settings, host, sample.figures)
    return sample


def make_spec(target: Target, profile: Profile, elixir_address: str, settings: BenchSettings) -> WorkerSpec:
    """The launcher's spec for a target: Snakepit's flags, environment and deadlines of `profile`."""
    return WorkerSpec(command=list(target.command), profile=profile, elixir_address=elixir_address,
                      timeout_scale=settings.timeout_scale, image=target.image)

