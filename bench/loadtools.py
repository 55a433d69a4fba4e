"""The well-kept load tools the benchmark drives: wrk for GETs, hey for HEADs.

wrk (C, event loop per thread) replays a list of requests from a Lua script
(`lua/requests.lua`) and reports its figures as one JSON line. wrk cannot
take HEAD requests: its parser waits for the body a `Content-Length` header
announces, which a HEAD response never sends. HEAD storms therefore use hey
(Go's HTTP client, which knows HEAD), one URL per run.

Both run as child processes whose CPU time comes from `wait4`, so the report
can say whether the load tool itself was saturated.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.servers import BenchError

LUA = Path(__file__).with_name("lua") / "requests.lua"


@dataclass
class LoadResult:
    """A tool's figures: requests completed, over `duration` seconds, with latencies."""

    requests: int
    duration: float
    p50: float  # seconds
    p99: float
    errors: int
    cpu_seconds: float  # of the tool itself
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration else 0.0


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BenchError(f"{tool} is not installed (bench/run.py installs it with apt-get)")
    return found


def _run(argv: Sequence[str], timeout: float) -> tuple[str, str]:
    """Run a tool to its end; its stdout and stderr."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s") from e
    return result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


def _children_cpu() -> float:
    """CPU seconds of reaped children: sampled around a tool's run, the tool's own."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    base: str, requests: Sequence[tuple[str, str, str]], workdir: Path, *, duration: float,
    connections: int, threads: int = 2, timeout: float = 30.0,
) -> LoadResult:
    """wrk over `requests` (method, path, accept) for `duration` seconds."""
    tool = need("wrk")
    listing = workdir / f"wrk-requests-{os.getpid()}-{time.monotonic_ns()}.txt"
    listing.write_text("".join(f"{m} {p} {a}\n" for m, p, a in requests))
    argv = [
        tool, f"-t{threads}", f"-c{connections}", f"-d{max(int(duration), 1)}s",
        f"--timeout={int(timeout)}s", "-s", str(LUA), base, "--", str(listing),
    ]
    cpu0 = _children_cpu()
    out, err = _run(argv, duration + timeout + 60)
    cpu = _children_cpu() - cpu0
    listing.unlink(missing_ok=True)
    match = re.search(r"^WRKJSON (.*)$", out, re.MULTILINE)
    if match is None:
        raise BenchError(f"wrk printed no figures:\n{out}\n{err}")
    figures = json.loads(match.group(1))
    errors = sum(figures["errors"].values())
    return LoadResult(
        requests=figures["requests"], duration=figures["duration_us"] / 1e6,
        p50=figures["p50_us"] / 1e6, p99=figures["p99_us"] / 1e6, errors=errors,
        cpu_seconds=cpu, detail=json.dumps(figures["errors"]),
    )


_HEY_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_HEY_TOTAL = re.compile(r"Total:\s+([\d.]+) secs")
_HEY_PCT = re.compile(r"(\d+)%% in ([\d.]+) secs".replace("%%", "%"))
_HEY_STATUS = re.compile(r"\[(\d+)\]\s+(\d+) responses")


def hey(
    url: str, *, method: str, duration: float, connections: int, headers: dict[str, str],
) -> LoadResult:
    """hey on one URL for `duration` seconds."""
    tool = need("hey")
    argv = [tool, "-m", method, "-z", f"{max(int(duration), 1)}s", "-c", str(connections),
            "-disable-compression"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    cpu0 = _children_cpu()
    out, err = _run(argv, duration + 120)
    cpu = _children_cpu() - cpu0
    total = _HEY_TOTAL.search(out)
    if total is None:
        raise BenchError(f"hey printed no figures:\n{out}\n{err}")
    percentiles = {int(p): float(v) for p, v in _HEY_PCT.findall(out)}
    statuses = {int(s): int(n) for s, n in _HEY_STATUS.findall(out)}
    done = sum(statuses.values())
    errors = sum(n for s, n in statuses.items() if s >= 400)
    _, _, failures = out.partition("Error distribution:")
    errors += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", failures, re.MULTILINE))
    return LoadResult(
        requests=done, duration=float(total.group(1)), p50=percentiles.get(50, 0.0),
        p99=percentiles.get(99, 0.0), errors=errors, cpu_seconds=cpu,
        detail=json.dumps(statuses),
    )
