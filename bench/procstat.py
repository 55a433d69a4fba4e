"""What a server process costs: CPU seconds and resident memory, read from /proc.

CPU is utime + stime of every thread of the process (fields 14 and 15 of
/proc/PID/stat), so a phase's cost is the difference of two readings. Peak RSS
is VmHWM, which is reset by writing 5 to /proc/PID/clear_refs (Linux >= 4.0,
own processes or root); where that is refused, a sampler thread polls VmRSS
instead.
"""

from __future__ import annotations

import contextlib
import os
import threading

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by all threads of `pid`."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    # The command name (field 2) may hold spaces; fields after its ')' are fixed.
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


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
    """CPU seconds and peak RSS of a set of processes over one phase.

    `start()` resets their peak RSS and takes the CPU reading; `stop()` takes
    the second reading. A sampler thread also polls RSS every 50 ms, so the
    peak is right even where `reset_peak_rss` is refused.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._cpu0: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self._sampled: dict[str, int] = {}
        self._hwm_ok: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for name, pid in self.pids.items():
            self._hwm_ok[name] = reset_peak_rss(pid)
            self._sampled[name] = rss_bytes(pid)
            self._cpu0[name] = cpu_seconds(pid)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError):  # exited: the stop() reading says so
                    self._sampled[name] = max(self._sampled[name], rss_bytes(pid))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for name, pid in self.pids.items():
            self.cpu[name] = cpu_seconds(pid) - self._cpu0[name]
            peak = self._sampled[name]
            if self._hwm_ok[name]:
                peak = max(peak, peak_rss_bytes(pid))
            self.peak_rss[name] = peak
