"""What a server costs: CPU seconds and resident memory, read from /proc.

CPU is utime + stime of every thread of the process (fields 14 and 15 of
/proc/PID/stat), so a phase's cost is the difference of two readings. Peak RSS
is VmHWM, which is reset by writing 5 to /proc/PID/clear_refs (Linux >= 4.0,
own processes or root); where that is refused, a sampler thread polls VmRSS
instead.

A server may be several processes (`cargobay serve --workers N`: a master and
N workers), so `PhaseMeter` counts a process with all its descendants: their
CPU summed, plus what the exited children they reaped had used (cutime +
cstime, fields 16 and 17), and their RSS summed. For a single process that is
exactly its own figures. Descendants are found by each process's parent pid in
/proc/*/stat, since /proc/PID/task/*/children needs a kernel option
(CONFIG_PROC_CHILDREN) that not every kernel has.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes]:
    """Fields 3 onwards of /proc/PID/stat (index 0 is the state, 1 the parent pid)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    # The command name (field 2) may hold spaces; fields after its ')' are fixed.
    return text[text.rindex(b")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by all threads of `pid`."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def descendants(pid: int) -> list[int]:
    """The pids of every living descendant of `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):  # exited meanwhile, or not a process
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid`, its living descendants and the children they reaped.

    Raises `OSError` if `pid` itself is gone; a descendant that exits
    meanwhile is skipped (its CPU moves to its parent's reaped-children time
    once waited for).
    """
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            fields = _stat_fields(member)
        except OSError:
            if member == pid:
                raise
            continue
        total += sum(int(x) for x in fields[11:15]) / _TICK
    return total


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS:") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size since start or since the last `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM:") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PhaseMeter:
    """CPU seconds and peak RSS of a set of servers over one phase.

    Each server is a process with its descendants (see the module docstring).
    `start()` resets their peak RSS and takes the CPU reading; `stop()` takes
    the second reading. A sampler thread also polls the summed RSS every 50 ms,
    so the peak is right even where `reset_peak_rss` is refused. The peak of a
    server of several processes is the larger of the sampled sum and the sum
    of each process's own peak, which is an upper bound: their peaks need not
    coincide, and pages they share (libraries) are counted in each.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._cpu0: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self._sampled: dict[str, int] = {}
        self._hwm_ok: dict[str, bool] = {}
        # Each server's processes when the phase started: the sampler polls these.
        self._members: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for name, pid in self.pids.items():
            members = self._members[name] = [pid, *descendants(pid)]
            self._hwm_ok[name] = all([reset_peak_rss(member) for member in members])
            self._sampled[name] = _summed(rss_bytes, members)
            self._cpu0[name] = tree_cpu_seconds(pid)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, members in self._members.items():
                self._sampled[name] = max(self._sampled[name], _summed(rss_bytes, members))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for name, pid in self.pids.items():
            self.cpu[name] = tree_cpu_seconds(pid) - self._cpu0[name]
            peak = self._sampled[name]
            if self._hwm_ok[name]:
                peak = max(peak, _summed(peak_rss_bytes, self._members[name]))
            self.peak_rss[name] = peak


def _summed(reading: Callable[[int], int], pids: list[int]) -> int:
    """`reading` summed over `pids`; a process that has exited counts nothing."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # exited: the stop() reading says so
            total += reading(pid)
    return total
