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

from contract_tests.driver import processes

OWNER_ENV = "SNAKEPIT_CONTRACT_OWNER"
TEMP_PREFIX = "snakepit-contract-"
# snakepit-contract-<boot id, 8 chars>.<pid>.<start ticks>-<random>: the temp folder of one worker.
_OWNED_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"([0-9a-f]{8})\.(\d+)\.(\d+)-")


def owner_identity(pid: int | None = None) -> str:
    """boot id/pid/start ticks of the process that owns a worker, folder or container; a reused pid does not match."""
    pid = os.getpid() if pid is None else pid
    return f"{processes.boot_id()}/{pid}/{processes.start_ticks(pid)}"


def owner_is_gone(identity: str, running: bool, boot: str | None = None) -> bool:
    """Whether an owner is dead: on this boot, its pid no longer names the same process; on another boot (the
    machine rebooted, or another machine shares a container engine) only a stopped thing is known dead."""
    owner_boot, _, rest = identity.partition("/")
    pid, _, ticks = rest.partition("/")
    if owner_boot != (boot or processes.boot_id()):
        return not running
    return not pid.isdigit() or processes.start_ticks(int(pid)) != ticks


def temp_prefix() -> str:
    """The prefix of this process's worker temp folders, naming their owner."""
    return f"{TEMP_PREFIX}{processes.boot_id()[:8]}.{os.getpid()}.{processes.start_ticks(os.getpid())}-"


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
    return [pid for pid, owner in processes.environment_carriers(OWNER_ENV).items()
            if owner_is_gone(owner, running=True, boot=boot)]


def _made_before_boot(folder: Path) -> bool:
    try:
        return folder.stat().st_mtime < processes.booted_at()
    except OSError:
        return False  # gone meanwhile


def sweep_dead_runs(temp_root: Path | None = None) -> Swept:
    """Kill the worker processes and remove the temp folders whose owner process is dead."""
    boot = processes.boot_id()
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
            # One made since this boot is not from an earlier one, whatever its name says (outside Linux the boot
            # is named by its time, which a clock change moves).
            if owner_boot != boot[:8]:
                gone = _made_before_boot(folder)
            else:
                gone = processes.start_ticks(int(owner_pid)) != ticks
            if gone:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return Swept(tuple(killed), tuple(removed))
