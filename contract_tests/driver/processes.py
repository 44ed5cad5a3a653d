"""Process, socket and resource inspection through psutil: the one place the kit looks at the machine's processes.

Portable wherever psutil is (Linux, macOS): liveness, process groups, command lines, start times, TCP sockets,
RSS and CPU time. Two things are Linux-only, and whoever needs them says so:

* another process's environment, which carries the run tags: Linux shows it for the user's own processes;
  macOS shows it only with privileges. Elsewhere the tag sweeps find nothing (they are best effort) and
  CLEANUP-009, which finds what a worker left behind by its tag, is NOT-RUN with ENVIRONMENTS_HIDDEN.
* the boot id, kernel.pid_max and the containers tier (container.py): the engine's containers must be processes
  of this very kernel, which Docker Desktop's VM is not.

Every function answers for processes that exist while it looks; a process that exits meanwhile counts as gone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

LINUX = sys.platform.startswith("linux")
# Another process's environment (the run and worker tags): procfs shows it for the user's own processes.
ENVIRONMENTS_READABLE = LINUX
ENVIRONMENTS_HIDDEN = ("this OS does not let the kit read another process's environment (macOS: only with "
                       "privileges), and that environment's tag is how processes a worker left behind are found")
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)
# macOS assigns pids up to 99 999.
_MACOS_PID_LIMIT = 100_000


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a stopped process counts as alive)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:
        return True  # it exists; only its details are hidden
    except (psutil.NoSuchProcess, ValueError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        if alive(pid):
            members.append(pid)
    return members


def command_line(pid: int) -> list[str] | None:
    """The process's argv, or None when it is gone or hidden."""
    try:
        return psutil.Process(pid).cmdline()
    except _GONE:
        return None


def boot_id() -> str:
    """This boot of this machine: Linux's random boot id, elsewhere the boot time (8+ hex digits either way)."""
    if LINUX:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{int(psutil.boot_time()):08x}"


def booted_at() -> float:
    """When this machine booted, in seconds since the epoch (moved by clock changes)."""
    return float(psutil.boot_time())


def start_ticks(pid: int) -> str | None:
    """When the live process started, in 1/100 s since boot: with the pid, who it is (immune to clock changes on
    Linux, where it equals /proc's start time at 100 ticks a second). None once it is gone or a zombie."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            started = process.create_time()
    except _GONE:
        return None
    return str(round((started - psutil.boot_time()) * 100))


def environment_carriers(name: str) -> dict[int, str]:
    """Other processes whose environment sets `name`: pid -> value. Empty where environments are hidden."""
    if not ENVIRONMENTS_READABLE:
        return {}
    me = os.getpid()
    found = {}
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            value = psutil.Process(pid).environ().get(name)
        except _GONE:
            continue  # gone meanwhile, or not ours to read
        if value is not None:
            found[pid] = value
    return found


def environment_value(pid: int, name: str) -> str | None:
    """The value of `name` in one process's environment; None when unset, gone or hidden."""
    if not ENVIRONMENTS_READABLE:
        return None
    try:
        return psutil.Process(pid).environ().get(name)
    except _GONE:
        return None


def _tcp_sockets() -> Iterator[tuple[int | None, int, str]]:
    """(owner pid or None, local port, state) of every TCP socket (IPv4 and IPv6) the kit can see."""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.laddr:
                yield conn.pid, conn.laddr.port, conn.status
    except psutil.AccessDenied:
        # macOS lists every socket only to root: the sockets of the user's own processes, one by one.
        for pid in psutil.pids():
            yield from ((pid, port, state) for port, state in _sockets_of(pid))


def _sockets_of(pid: int) -> list[tuple[int, str]]:
    try:
        return [(conn.laddr.port, conn.status) for conn in psutil.Process(pid).net_connections("tcp") if conn.laddr]
    except _GONE:
        return []


def listening_ports() -> set[int]:
    """Local ports with a TCP socket in LISTEN."""
    return {port for _, port, state in _tcp_sockets() if state == psutil.CONN_LISTEN}


def listening_owners(port: int) -> set[int]:
    """Processes holding a TCP socket that listens on `port` (those whose sockets the kit may see)."""
    return {pid for pid, local, state in _tcp_sockets()
            if local == port and state == psutil.CONN_LISTEN and pid is not None}


def socket_ports(pids: Iterable[int]) -> set[int]:
    """Local ports of the TCP sockets these processes hold open, in any state (none where they cannot be read)."""
    return {port for pid in pids for port, _ in _sockets_of(pid)}


def rss_mib(pid: int) -> float | None:
    """Resident set size of a live process, in MiB."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except _GONE:
        return None


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a live process has used (its children not counted)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except _GONE:
        return None
    return times.user + times.system


def impossible_pid() -> int:
    """A pid no process can have, so every signal and lookup finds it gone (Linux: kernel.pid_max)."""
    if LINUX:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    return _MACOS_PID_LIMIT
