"""Profiles of the server under load: py-spy attached to Cargobay for one phase.

`Profiler` runs `py-spy record --format raw` against a PID for the length of
a phase and writes the collapsed stacks; `summarize` turns such a file into
the functions holding the most samples, inclusive and self, which is what the
benchmark prints and what a fix is judged against. The raw files load into
speedscope or flamegraph.pl for a closer look.

    python -m bench.profiles FILE.raw [--top N] [--filter TEXT]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


class Profiler:
    """py-spy recording one process until `stop()`; `available` is False without py-spy."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None
        exe = PY_SPY if PY_SPY.exists() else shutil.which("py-spy")
        self.executable = str(exe) if exe else None

    @property
    def available(self) -> bool:
        return self.executable is not None

    def start(self) -> None:
        if self.executable is None:
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "record", "--pid", str(self.pid), "--rate", str(self.rate),
             "--format", "raw", "--threads", "--nonblocking", "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _frames(stack: str) -> list[str]:
    # py-spy raw: "thread (tid);func (file:line);func (file:line) COUNT"
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        where = where.rstrip(")")
        file = where.rsplit(":", 1)[0]
        short = "/".join(file.split("/")[-2:])
        out.append(f"{name} ({short})")
    return out


def summarize(path: Path, top: int = 25, only: str = "") -> str:
    """The `top` functions by inclusive and by self samples, as text."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        if only and only not in stack:
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)[1:]  # drop the thread frame
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples" + (f" matching {only!r}" if only else "")]
    lines.append("  inclusive:")
    lines += [f"   {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  self:")
    lines += [f"   {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only stacks containing this text")
    args = parser.parse_args()
    for file in args.files:
        print(summarize(file, args.top, args.filter))


if __name__ == "__main__":
    main()
