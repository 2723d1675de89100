"""Is a recorded process still the one we recorded? A pid alone can be reused (a reboot, a long
uptime), so every pid we store comes with its process's start: the boot id and the start time
in clock ticks (Linux /proc). A process whose start differs is another process: it is never
trusted, adopted or signalled. Torch-free."""

from __future__ import annotations

import os
import signal
from functools import lru_cache


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def start_of(pid: int) -> str | None:
    """An identity of process `pid`'s start ("<boot id>:<start ticks>"), or None where the system
    does not say (no /proc) or the process does not exist."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": the name may hold spaces
    try:
        return f"{_boot_id()}:{int(fields[19])}"  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


def pid_exists(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_running(pid: object, start: str | None = None) -> bool:
    """Process `pid` exists and, when its recorded `start` is known, is still that process."""
    if not pid_exists(pid):
        return False
    if start is None:
        return True
    current = start_of(pid)  # type: ignore[arg-type]
    return current is None or current == start


def terminate_group(pgid: int, kill: bool = False) -> bool:
    """SIGTERM (or SIGKILL) the process group `pgid` (a trainer runs in its own session, so its
    group id is its pid). Returns False if it no longer exists. Check `is_running` first."""
    try:
        os.killpg(pgid, signal.SIGKILL if kill else signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class StopFlag:
    """Set by SIGTERM/SIGINT, installed from the first instruction of a command: a trainer (or an
    extraction) stops at its next step, and a signal that comes before it starts still ends it
    as cancelled."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> dict:
        return {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
