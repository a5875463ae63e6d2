"""Which process runs a trial or holds a supernet, in a mark that says whether it is still alive.

A mark is ``host:pid:start``: ``start`` is the process's start (boot id and start tick from /proc)
so that a restarted container whose new process has the same host name and PID is not mistaken for
the process that wrote the mark. Marks from other hosts cannot be checked from here (Optuna's RDB
heartbeat covers those trials).
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache


def _start_of(pid: int) -> str | None:
    """The process's start, unique per boot and PID; None where /proc does not say (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": state is field 3 of stat(5)
    return f"{boot}-{int(fields[19])}"  # field 22: starttime, in clock ticks since boot


@lru_cache(maxsize=1)
def _this_process(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_of(pid) or ''}"


def process_mark() -> str:
    """This process's mark."""
    return _this_process(os.getpid())  # keyed by pid: a forked child gets its own


def on_this_host(mark: str) -> bool:
    return _split(mark)[0] == socket.gethostname()


def is_gone(mark: str) -> bool:
    """Whether the process of ``mark`` has certainly ended: on this host, and its PID is free or now
    belongs to a process started later. Marks of other hosts, or unreadable ones, count as alive."""
    host, pid, start = _split(mark)
    if host != socket.gethostname() or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    return bool(start) and _start_of(pid) not in (None, start)


def _split(mark: str) -> tuple[str, int | None, str]:
    parts = mark.split(":")
    if len(parts) >= 3 and parts[-2].isdigit():  # host:pid:start
        return ":".join(parts[:-2]), int(parts[-2]), parts[-1]
    host, _, pid = mark.rpartition(":")  # host:pid, as written before the start was part of the mark
    return host, int(pid) if pid.isdigit() else None, ""
