"""Self-tests of the kit under bad input, broken workers and interrupted runs (issue: one clear root cause,
evidence that explains itself, nothing left behind).

Each run goes through the command line in a subprocess, as a user types it, and each test checks the exit
status, the one line that explains the problem, and that no worker process or temp folder is left behind.
The broken workers are in fixtures/broken.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from contract_tests import errors
from contract_tests.driver import ownership, processes
from contract_tests.errors import render
from contract_tests.judging.verdicts import grpc_status
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

BROKEN = Path(__file__).resolve().parent.parent / "fixtures" / "broken"
CLI = [sys.executable, "-m", "contract_tests.cli"]


def _worker(name: str) -> str:
    return shlex.join([sys.executable, str(BROKEN / name)])


def _run(*args: str, tmp_path: Path, timeout: float = 300) -> tuple[int, str, float, dict[str, Any]]:
    """`snakepit-contract run ARGS` with its temp folders under tmp_path: status, output, seconds, conformance.json."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    path = tmp_path / "conformance-report" / "conformance.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started, document


def _outcomes(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["id"], c["profile"]): c["outcome"] for c in document["clauses"]}


def _owned_by_dead_or_me(tmp_path: Path) -> list[str]:
    """Worker temp folders left under tmp_path."""
    return sorted(p.name for p in tmp_path.glob(f"{ownership.TEMP_PREFIX}*"))


def test_unstartable_worker_is_judged_once_in_seconds(tmp_path: Path) -> None:
    """Ensure a worker that exits at once gives PROC-001 FAIL with its exit status and last output, every other
    check NOT-RUN with that one cause, exit 1, in seconds for both profiles, and its escape sequences visible."""
    launches = tmp_path / "launches"
    # Each launch leaves the pid of the kit process that launched it and its profile (only 0.13 names a ready file):
    # a worker that cannot start is launched at most twice per profile by each process of the run (a check's own
    # variant of the launch, then the plain launch that shows it cannot start at all), not once per check.
    counting = shlex.join(["sh", "-c", f'echo $PPID-${{SNAKEPIT_READY_FILE:+file}} >> {shlex.quote(str(launches))}; '
                                       'exec "$@"', "sh", sys.executable, str(BROKEN / "exits_at_once.py")])
    code, output, seconds, document = _run("--worker-cmd", counting, "--profile", "all", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    per_process = Counter(launches.read_text().split())
    assert per_process and max(per_process.values()) <= 2, f"launched again and again: {per_process}"
    # About 8 s on an idle machine (the old way took minutes); the bound leaves room for a heavily loaded one.
    assert seconds < 90, f"{seconds:.1f} s"
    outcomes = _outcomes(document)
    assert {k for k, v in outcomes.items() if v == "FAIL"} == {("PROC-001", "snakepit-0.6"),
                                                               ("PROC-001", "snakepit-0.13")}
    assert set(outcomes.values()) == {"FAIL", "NOT-RUN"}
    reasons = {c["reason"] for c in document["clauses"] if c["outcome"] == "NOT-RUN"}
    assert reasons == {
        "not run: the worker never started (PROC-001): worker exited before printing GRPC_READY:<port> (exit status 1)",
        "not run: the worker never started (PROC-001): worker exited before writing its ready file (exit status 1)"}
    failed = next(c for c in document["clauses"] if c["outcome"] == "FAIL")
    assert "last line: giving up" in failed["reason"]  # the output was read to its end before the exit was recorded
    assert "Traceback" not in output and "_pytest" not in output and "(the same cause)" in output
    # No terminal control reaches the terminal or a report: made visible instead.
    assert "\x1b" not in output and "\\x1b]0;pwned title\\x07" in output
    for name in ("conformance.md", "conformance.html", "conformance.json"):
        text = (tmp_path / "conformance-report" / name).read_text()
        assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text, name
    assert "Traceback" not in output and "_pytest" not in output
    assert not _owned_by_dead_or_me(tmp_path)


def test_a_profile_the_worker_cannot_start_under_leaves_the_other_alone(tmp_path: Path) -> None:
    """Ensure with --profile all a worker that cannot start under 0.6 (no GRPC_READY line, as Snakepit 0.13's own
    bridge) is NOT-RUN there, while the same checks run and pass under 0.13."""
    code, output, _, document = _run("--worker-cmd", _worker("ready_file_only.py"), "--only", "TOOL-001,TOOL-004",
                                     "-n", "0", "--profile", "all", "--timeout-scale", "0.1", tmp_path=tmp_path)
    assert code == errors.EXIT_HARNESS, output[-3000:]
    assert _outcomes(document) == {("TOOL-001", "snakepit-0.6"): "NOT-RUN", ("TOOL-004", "snakepit-0.6"): "NOT-RUN",
                                   ("TOOL-001", "snakepit-0.13"): "PASS", ("TOOL-004", "snakepit-0.13"): "PASS"}
    assert "never started (PROC-001, PROC-005, PROC-007): no GRPC_READY:<port> line" in output
    assert not _owned_by_dead_or_me(tmp_path)


def test_catalogue_refused_with_a_status_is_no_catalogue(tmp_path: Path) -> None:
    """Ensure a worker answering contract.catalogue with gRPC NOT_FOUND has no catalogue (SKIP with the status),
    no ERROR, and PROC-017 is judged on its output only."""
    code, output, _, document = _run("--worker-cmd", _worker("catalogue_not_found.py"), "-n", "0",
                                     "--only", "TOOL-001,PROC-017,STREAM-001", "--level", "all", tmp_path=tmp_path)
    outcomes = _outcomes(document)
    assert outcomes == {("TOOL-001", "snakepit-0.13"): "SKIP", ("STREAM-001", "snakepit-0.13"): "SKIP",
                        ("PROC-017", "snakepit-0.13"): "PASS"}, output[-3000:]
    assert code == errors.EXIT_CONFORMANT
    reason = next(c["reason"] for c in document["clauses"] if c["id"] == "TOOL-001")
    assert reason == ("capability: worker does not implement the contract tool catalogue "
                      "(gRPC NOT_FOUND: unknown tool contract.catalogue)")


def test_unreadable_catalogue_is_a_failure_not_skips(tmp_path: Path) -> None:
    """Ensure a worker that offers contract.catalogue but answers it with an error no unknown tool gets FAILs
    TOOL-022, and the checks needing contract tools are NOT-RUN with that one cause, never SKIP: not conformant."""
    mutant = shlex.join([sys.executable, str(BROKEN.parent / "mutants" / "catalogue_raises.py")])
    code, output, _, document = _run("--worker-cmd", mutant, "-n", "0", "--only", "TOOL-001,TOOL-022,STREAM-001",
                                     "--level", "all", tmp_path=tmp_path)
    assert _outcomes(document) == {("TOOL-001", "snakepit-0.13"): "NOT-RUN", ("STREAM-001", "snakepit-0.13"): "NOT-RUN",
                                   ("TOOL-022", "snakepit-0.13"): "FAIL"}, output[-3000:]
    assert code == errors.EXIT_NOT_CONFORMANT
    reason = next(c["reason"] for c in document["clauses"] if c["id"] == "TOOL-001")
    assert reason.startswith("not run: the worker's contract tool catalogue could not be read (TOOL-022): "
                             "contract.catalogue ended with KeyError"), reason
    assert "unknown tool 'contract.no-such-tool'" in reason
    # Deselecting the failing clause leaves no verdict, never a pass.
    code, output, _, _ = _run("--worker-cmd", mutant, "-n", "0", "--only", "TOOL-001", tmp_path=tmp_path)
    assert code == errors.EXIT_HARNESS, output[-3000:]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def http_server() -> Iterator[int]:
    """A server that speaks HTTP/1.1, not gRPC."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("target", ["closed_port", "http_server"])
def test_unreachable_address_is_one_line_and_no_verdict(target: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    """Ensure --worker-address to a closed port or a non-gRPC server gives exit 2 and one line, before any check."""
    port = request.getfixturevalue(target)
    code, output, seconds, document = _run("--worker-address", f"127.0.0.1:{port}", tmp_path=tmp_path)
    assert code == errors.EXIT_HARNESS
    expected = f"snakepit-contract: no verdict (exit 2): cannot reach the worker at 127.0.0.1:{port}: Ping failed with "
    assert output.count("\n") == 1 and output.startswith(expected), output
    assert seconds < 60 and not document  # a second or two on an idle machine


def test_unreachable_address_under_pytest_is_not_run_not_error(closed_port: int, tmp_path: Path) -> None:
    """Ensure the plugin (pytest without the CLI) reports checks of an unreachable worker NOT-RUN, each once."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs",
                           "contract_tests.clauses", "--worker-address", f"127.0.0.1:{closed_port}",
                           "--only", "RPC-001,TOOL-00*", "-q",
                           "--contract-json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    document = json.loads((tmp_path / "r.json").read_text())
    assert set(_outcomes(document).values()) == {"NOT-RUN"}, done.stdout[-3000:]
    assert all(f"cannot reach the worker at 127.0.0.1:{closed_port}" in c["reason"] for c in document["clauses"])
    assert "ERROR" not in done.stdout and "Traceback" not in done.stdout


def test_baseline_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    """Ensure a binary baseline is one line and exit 3, before any worker starts."""
    baseline = tmp_path / "baseline.toml"
    baseline.write_bytes(b"\xff\xfe[[expected_failure]]\n")
    code, output, _, document = _run("--baseline", str(baseline), tmp_path=tmp_path)
    assert code == errors.EXIT_USAGE and not document
    assert [line for line in output.splitlines() if line.strip()] == [
        f"ERROR: Invalid baseline from --baseline: baseline {baseline} is not UTF-8 text (byte 0 of it); "
        "it must be TOML"]


@pytest.mark.parametrize("where", ["under-a-file", "/proc/snakepit-contract-report"])
def test_report_dir_that_cannot_be_written_is_a_usage_error(where: str, tmp_path: Path) -> None:
    """Ensure an unwritable --report-dir is one line and exit 3 before the run, not exit 1 after it."""
    if where == "under-a-file":
        (tmp_path / "file").write_text("")
        where = str(tmp_path / "file" / "report")
    code, output, _, _ = _run("--report-dir", where, tmp_path=tmp_path)
    assert code == errors.EXIT_USAGE
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: Invalid report directory {where!r} from --report-dir: "
                                                   "cannot write there ("), output
    assert not _owned_by_dead_or_me(tmp_path)  # no worker was launched


def test_report_that_cannot_be_written_after_the_run_is_no_verdict(tmp_path: Path) -> None:
    """Ensure a conformant run whose report cannot be written exits 2, saying why, never 1."""
    blocked = tmp_path / "conformance-report"
    (blocked / "conformance.md").mkdir(parents=True)  # a folder where the file must go
    code, output, _, _ = _run("--only", "TOOL-004", "-n", "0", tmp_path=tmp_path)
    assert code == errors.EXIT_HARNESS, output[-3000:]
    assert output.splitlines()[-1].startswith(
        "snakepit-contract: no verdict (exit 2): the run was CONFORMANT, but the report could not be written: ")
    assert "Traceback" not in output


def _listening_descendant(kit: subprocess.Popen[bytes]) -> tuple[int, int] | None:
    """(pid, port) of a process the kit started that listens on a TCP port: its worker, once it serves."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        for child in psutil.Process(kit.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                for conn in child.net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        return child.pid, conn.laddr.port
    return None


def _serving_worker(kit: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The pid of the kit's worker once it listens and has answered a Ping; the kit is frozen (SIGSTOP) from the
    moment its worker listens, so it cannot have stopped the worker meanwhile. Waits for these events, however
    loaded the machine, up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while (serving := _listening_descendant(kit)) is None:
        assert kit.poll() is None, f"the run ended (exit {kit.returncode}) before its worker listened"
        assert time.monotonic() < deadline, f"no worker listening within {timeout_s:.0f} s"
        time.sleep(0.1)
    os.killpg(kit.pid, signal.SIGSTOP)
    worker, port = serving
    # Answered on the worker's event loop, so after its readiness line is written too: a worker that still had to
    # write it when its reader died would exit on the broken pipe by itself, and nothing would be left to sweep.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        pb_grpc.BridgeServiceStub(channel).Ping(pb.PingRequest(message="before-sigkill"),
                                                timeout=max(1.0, deadline - time.monotonic()))
    return worker


def test_a_sigkilled_run_leaves_nothing_after_the_next_run_starts(tmp_path: Path) -> None:
    """Ensure workers (without orphan defence) and temp folders of a SIGKILLed run are swept by the next run."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    # It leads its own process group (SNAKEPIT_PROCESS_GROUP=1 under 0.13), so it outlives the kit's group.
    command = shlex.join([sys.executable, str(BROKEN / "no_orphan_defence.py")])
    kit = subprocess.Popen([*CLI, "run", "--worker-cmd", command, "-n", "0", "--profile", "snakepit-0.13",
                            "--only", "PROC-012", "--report-dir", str(tmp_path / "first")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        worker = _serving_worker(kit, timeout_s=300)  # inside PROC-012's watch of a healthy worker
        started = processes.start_ticks(worker)
    finally:
        os.killpg(kit.pid, signal.SIGKILL)
        kit.wait()
    assert processes.alive(worker) and _owned_by_dead_or_me(tmp_path), "the SIGKILL left nothing: this proves nothing"
    code, output, _, _ = _run("--only", "TOOL-004", "-n", "0", tmp_path=tmp_path)
    assert code == errors.EXIT_CONFORMANT, output[-3000:]
    # The folders are under this test's TMPDIR, so only this run sees them; another run on the machine may kill
    # the orphaned workers first (their owner is dead to every run), so this one may or may not name them.
    assert re.search(r"snakepit-contract: swept what earlier runs that died left behind: (killed [1-9]\d* worker "
                     r"process\(es\) \([\d, ]+\); )?removed [1-9]\d* temp folder\(s\)", output), output
    # SIGKILLed by the sweep; it is gone once the kernel has torn it down (a zombie is gone too).
    deadline = time.monotonic() + 60
    while processes.start_ticks(worker) == started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.start_ticks(worker) != started, f"worker {worker} still runs 60 s after the sweep"
    assert not _owned_by_dead_or_me(tmp_path)


def test_sweep_kills_a_worker_whose_owner_is_dead() -> None:
    """Ensure a process carrying the identity of a dead owner is killed by the sweep, and a live owner's is not."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    env = dict(os.environ)
    orphan = subprocess.Popen(sleeper, env={**env, ownership.OWNER_ENV: f"{processes.boot_id()}/{dead.pid}/1"})
    owned = subprocess.Popen(sleeper, env={**env, ownership.OWNER_ENV: ownership.owner_identity()})
    try:
        deadline = time.monotonic() + 10
        while processes.environment_value(orphan.pid, ownership.OWNER_ENV) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child's environment is its own, after exec
        swept = ownership.sweep_dead_runs()
        # Another run on the machine may sweep the orphan first; either way it is killed, and only it.
        assert orphan.wait(10) == -signal.SIGKILL
        assert owned.pid not in swept.pids and owned.poll() is None
    finally:
        for proc in (orphan, owned):
            proc.kill()
            proc.wait()


def test_sweep_spares_a_live_owner(tmp_path: Path) -> None:
    """Ensure the sweep never touches the temp folder of a live process, and removes that of a dead one."""
    mine = tmp_path / (ownership.temp_prefix() + "live")
    mine.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    theirs = tmp_path / f"{ownership.TEMP_PREFIX}{processes.boot_id()[:8]}.{dead.pid}.1-dead"
    theirs.mkdir()
    other = tmp_path / f"{ownership.TEMP_PREFIX}not-an-owner"
    other.mkdir()
    # Named after another boot: removed if made before this boot, kept if made since (a clock change renames it).
    before_boot = tmp_path / f"{ownership.TEMP_PREFIX}00000000.1.1-earlier-boot"
    before_boot.mkdir()
    os.utime(before_boot, (processes.booted_at() - 3600,) * 2)
    since_boot = tmp_path / f"{ownership.TEMP_PREFIX}00000000.1.1-renamed-boot"
    since_boot.mkdir()
    swept = ownership.sweep_dead_runs(tmp_path)
    assert sorted(swept.folders) == sorted([theirs.name, before_boot.name])
    assert mine.exists() and other.exists() and since_boot.exists() and not theirs.exists()
    assert not before_boot.exists()


def test_a_grpc_status_is_shown_with_its_details_and_trailing_metadata() -> None:
    """Ensure evidence of a call that ended with a status names code, details and trailing metadata."""
    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("retry-after", "5"),))
        context.abort(grpc.StatusCode.UNKNOWN, "exception in tool: boom")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "probe.Probe", {"Call": grpc.unary_unary_rpc_method_handler(refuse)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary("/probe.Probe/Call", None, None)(b"", timeout=5)
    finally:
        server.stop(None)
    assert grpc_status(raised.value) == ("gRPC UNKNOWN: exception in tool: boom; trailing metadata: "
                                         "retry-after='5'")


def test_values_in_evidence_are_json() -> None:
    """Ensure expected/actual values read as JSON, not Python (None, False, b'...', single quotes)."""
    assert [render(v) for v in (None, False, {"name": "p"}, b"\x00\x01", grpc.StatusCode.UNKNOWN)] == [
        "null", "false", '{"name": "p"}', '"<2 bytes: 0001>"', "UNKNOWN"]


def test_a_failed_scenario_shows_its_steps_and_the_pool_workers_logs(tmp_path: Path) -> None:
    """Ensure a scenario clause's failure carries the scenario's steps with the failed one marked, and a log file
    per worker its pool launched."""
    mutant = Path(__file__).resolve().parent.parent / "fixtures" / "mutants" / "forgets_programs.py"
    code, output, _, document = _run("--worker-cmd", shlex.join([sys.executable, str(mutant)]), "-n", "0",
                                     "--only", "SESSION-011", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    [result] = document["clauses"]
    steps = next(e["text"] for e in result["evidence"] if e["title"] == "scenario session/in-session-parameter")
    assert steps.startswith("scenario session/in-session-parameter: pool size=1\n  1. execute ")
    assert "[SESSION-011]  <-- FAILED" in steps
    logs = sorted(p.name for p in (tmp_path / "conformance-report" / "workers").iterdir())
    assert logs and all(name.startswith("SESSION-011-snakepit-0.13-") for name in logs)


def test_heartbeat_evidence_names_the_first_cause(tmp_path: Path) -> None:
    """Ensure RPC-002's failure on a worker whose heartbeat answers session_valid=false names that answer first,
    not what the check saw after the monitor stopped the worker."""
    mutant = Path(__file__).resolve().parent.parent / "fixtures" / "mutants" / "heartbeat_session_invalid.py"
    code, output, _, document = _run("--worker-cmd", shlex.join([sys.executable, str(mutant)]), "-n", "0",
                                     "--only", "RPC-002", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    [result] = document["clauses"]
    assert result["outcome"] == "FAIL"
    assert "session_valid=false" in result["reason"].split("Then the check saw")[0], result["reason"]


def test_a_handshake_ping_that_fails_is_rpc_001s_failure(tmp_path: Path) -> None:
    """Ensure a worker whose handshake Ping is refused fails RPC-001 (the Ping clause), even alone with --only,
    and leaves the other checks NOT-RUN, not ERROR."""
    code, output, _, document = _run("--worker-cmd", _worker("ping_refused.py"), "-n", "0",
                                     "--only", "RPC-001", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    [result] = document["clauses"]
    assert result["outcome"] == "FAIL" and "UNIMPLEMENTED no Ping here" in result["reason"]
    code, output, _, document = _run("--worker-cmd", _worker("ping_refused.py"), "-n", "0",
                                     "--only", "RPC-001,TOOL-004,PROC-001", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    assert _outcomes(document) == {("RPC-001", "snakepit-0.13"): "FAIL", ("PROC-001", "snakepit-0.13"): "FAIL",
                                   ("TOOL-004", "snakepit-0.13"): "NOT-RUN"}


def test_escape_sequences_in_a_workers_answers_are_shown_escaped(tmp_path: Path) -> None:
    """Ensure escape sequences in what a worker answers (an error message) reach neither the terminal nor a report
    raw, while the failure still shows them, escaped."""
    code, output, _, document = _run("--worker-cmd", _worker("escapes_in_errors.py"), "-n", "0",
                                     "--only", "TOOL-020", tmp_path=tmp_path)
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    assert "\x1b" not in output and "\x07" not in output and "\\x1b]0;owned\\x07" in output
    for name in ("conformance.md", "conformance.html", "conformance.json", "junit.xml"):
        text = (tmp_path / "conformance-report" / name).read_text()
        assert "\x1b" not in text and "\x07" not in text, name
    assert "\\x1b[1;31mToolNotFound" in document["clauses"][0]["reason"]
