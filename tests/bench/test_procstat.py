"""The benchmark's server meter counts a server of several processes whole."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.procstat import PhaseMeter, descendants

# A parent that starts one child burning CPU and holding 64 MiB, then waits for it.
_TREE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", '''
import time
ballast = bytearray(64 << 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
end = time.monotonic() + 30
while time.monotonic() < end:
    pass
'''])
child.wait()
"""


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    parent = subprocess.Popen([sys.executable, "-c", _TREE])
    try:
        deadline = time.monotonic() + 10
        while not descendants(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let the child touch its ballast
        yield parent
    finally:
        for pid in descendants(parent.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.kill()
        parent.wait()


class TestPhaseMeter:
    def test_descendants_finds_the_child_of_a_server(self, tree: subprocess.Popen[bytes]) -> None:
        assert len(descendants(tree.pid)) == 1

    def test_cpu_of_a_server_includes_its_workers(self, tree: subprocess.Popen[bytes]) -> None:
        """The parent only waits: nearly all the CPU counted is its busy child's."""
        meter = PhaseMeter({"server": tree.pid})
        meter.start()
        time.sleep(1.0)
        meter.stop()
        assert meter.cpu["server"] >= 0.1  # a shared, loaded machine gives a core's share

    def test_peak_rss_of_a_server_sums_its_processes(self, tree: subprocess.Popen[bytes]) -> None:
        meter = PhaseMeter({"server": tree.pid})
        meter.start()
        time.sleep(0.2)
        meter.stop()
        assert meter.peak_rss["server"] >= 64 << 20
