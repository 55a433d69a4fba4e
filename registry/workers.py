"""Several worker processes serving one listening socket: `cargobay serve --workers N`.

A Python process serves from one core; N workers serve from N. The master
process binds the socket once and starts N workers (`python -m
registry.workers`), each inheriting the socket, so the kernel hands each new
connection to whichever worker accepts it first. Each worker is a whole
registry: it opens the storage, builds its index and follows the change feed
like a replica on another host would, so nothing but the socket and the
storage is shared.

The master restarts a worker that dies, and on SIGTERM or SIGINT passes the
signal on and waits while the workers drain the requests in flight. Each
worker holds the read end of a pipe whose write end only the master holds:
if the master dies, even by SIGKILL, the pipe closes and every worker exits
at once, so no orphan keeps serving on the port.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from registry.config import Config
from registry.metrics import MetricsListenerError, serve_workers_metrics, worker_exited

log = logging.getLogger("registry.workers")

# How long workers may drain after SIGTERM before they are killed: aiohttp's
# own shutdown timeout, and a margin for closing storage.
_DRAIN_SECONDS = 65.0
# A worker that dies sooner than this after starting is restarted only after
# a pause, so that a fault at start-up (storage down) does not spin the CPU.
_MIN_UPTIME = 2.0
_RESTART_PAUSE = 1.0


def worker_count(config: Config, requested: int | None) -> int:
    """How many workers to run: `requested` (from the command line), else the
    configuration's `http.workers`, where 0 means one per CPU core."""
    count = requested if requested is not None else config.http.workers
    return count or os.cpu_count() or 1


def listen(config: Config) -> socket.socket:
    """The listening socket of `config.http.addr`, shared by every worker."""
    host = config.http.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, config.http.port), family=family, backlog=1024)


def run_master(config_path: str | None, count: int, config: Config) -> int:
    """Start `count` workers on one socket and keep them running until SIGTERM/SIGINT.

    Returns 0 after a clean stop. Raises `OSError` if the socket cannot be bound,
    `MetricsListenerError` if the metrics listener cannot.
    """
    sock = listen(config)
    metrics_server = None
    if config.metrics.addr:  # every worker's metrics, from the directory they share
        try:
            metrics_server = serve_workers_metrics(config.metrics, count)
        except MetricsListenerError:
            sock.close()
            raise
    lifeline_read, lifeline_write = os.pipe()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    argv = [sys.executable, "-m", "registry.workers", "--fd", str(sock.fileno())]
    argv += ["--lifeline", str(lifeline_read)]
    if config_path:
        argv += ["--config", config_path]

    def spawn() -> tuple[subprocess.Popen[bytes], float]:
        worker = subprocess.Popen(argv, pass_fds=(sock.fileno(), lifeline_read))
        log.info("worker %d started", worker.pid)
        return worker, time.monotonic()

    log.info("cargobay master %d: %d workers on %s", os.getpid(), count, config.http.addr)
    workers = [spawn() for _ in range(count)]
    try:
        while not stopping:
            time.sleep(0.2)
            for slot, (worker, started) in enumerate(workers):
                status = worker.poll()
                if status is None or stopping:
                    continue
                log.error("worker %d exited with status %d; restarting it", worker.pid, status)
                worker_exited(worker.pid)
                if time.monotonic() - started < _MIN_UPTIME:
                    time.sleep(_RESTART_PAUSE)
                workers[slot] = spawn()
    finally:
        for worker, _ in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _DRAIN_SECONDS
        for worker, _ in workers:
            try:
                worker.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not drain in time; killing it", worker.pid)
                worker.kill()
                worker.wait()
        os.close(lifeline_write)
        sock.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    log.info("cargobay master %d stopped", os.getpid())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of one worker, started by `run_master`; not for direct use."""
    from registry.cli import serve_forever
    from registry.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="registry.workers")
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--lifeline", type=int, required=True, help="read end of the pipe")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"cargobay worker: {e}", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=args.fd)
    return serve_forever(config, sock=sock, lifeline=args.lifeline)


if __name__ == "__main__":
    sys.exit(main())
