"""Who owns what a run leaves on the machine, and sweeping what runs that died (SIGKILL, a crash) left behind.

Every worker process carries its owner's identity in its environment, and every worker's temp folder in its
name: boot id, pid and start time of the kit process that launched it, so a reused pid never passes for its
owner. A run that starts kills the workers and removes the folders whose owner is dead; a live run's, whatever
process or xdist worker it is, are never touched. Containers carry the same identity as a label (container.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

OWNER_ENV = "SNAKEPIT_CONTRACT_OWNER"
TEMP_PREFIX = "snakepit-contract-"
# snakepit-contract-<boot id, 8 chars>.<pid>.<start ticks>-<random>: the temp folder of one worker.
_OWNED_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"([0-9a-f]{8})\.(\d+)\.(\d+)-")


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> str | None:
    """The live process's start time in clock ticks since boot (/proc stat field 22): with the pid, who it is.
    None once it is gone or a zombie (killed, not yet reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def owner_identity(pid: int | None = None) -> str:
    """boot id/pid/start ticks of the process that owns a worker, folder or container; a reused pid does not match."""
    pid = os.getpid() if pid is None else pid
    return f"{boot_id()}/{pid}/{start_ticks(pid)}"


def owner_is_gone(identity: str, running: bool, boot: str | None = None) -> bool:
    """Whether an owner is dead: on this boot, its pid no longer names the same process; on another boot (the
    machine rebooted, or another machine shares a container engine) only a stopped thing is known dead."""
    owner_boot, _, rest = identity.partition("/")
    pid, _, ticks = rest.partition("/")
    if owner_boot != (boot or boot_id()):
        return not running
    return not pid.isdigit() or start_ticks(int(pid)) != ticks


def temp_prefix() -> str:
    """The prefix of this process's worker temp folders, naming their owner."""
    return f"{TEMP_PREFIX}{boot_id()[:8]}.{os.getpid()}.{start_ticks(os.getpid())}-"


@dataclass(frozen=True)
class Swept:
    """What a sweep removed: worker processes of dead runs (pids) and their temp folders."""

    pids: tuple[int, ...]
    folders: tuple[str, ...]

    def line(self) -> str | None:
        """One line for the run's output, or None when nothing was left behind."""
        if not self.pids and not self.folders:
            return None
        parts = []
        if self.pids:
            parts.append(f"killed {len(self.pids)} worker process(es) ({', '.join(map(str, self.pids))})")
        if self.folders:
            parts.append(f"removed {len(self.folders)} temp folder(s) ({', '.join(self.folders)})")
        return f"snakepit-contract: swept what earlier runs that died left behind: {'; '.join(parts)}"


def _dead_owned_pids(boot: str) -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for item in environ.split(b"\0"):
            if item.startswith(f"{OWNER_ENV}=".encode()):
                if owner_is_gone(item.split(b"=", 1)[1].decode(errors="replace"), running=True, boot=boot):
                    found.append(int(entry.name))
                break
    return found


def sweep_dead_runs(temp_root: Path | None = None) -> Swept:
    """Kill the worker processes and remove the temp folders whose owner process is dead."""
    boot = boot_id()
    killed = []
    for pid in _dead_owned_pids(boot):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    removed = []
    root = temp_root or Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for folder in root.glob(f"{TEMP_PREFIX}*"):
            match = _OWNED_TEMP.match(folder.name)
            if match is None or not folder.is_dir():
                continue
            owner_boot, owner_pid, ticks = match.groups()
            # A folder from an earlier boot has a dead owner; on this boot, its pid must still name its owner.
            if owner_boot != boot[:8] or start_ticks(int(owner_pid)) != ticks:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return Swept(tuple(killed), tuple(removed))
