"""Several processes, one scrape: multiprocess mode as `cargobay serve --workers` uses it.

A master process calls `prepare_multiprocess_dir` and starts workers that
inherit the directory; `exposition` in the master sums what every worker
recorded.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from registry.config import MetricsConfig
from registry.metrics import (
    MULTIPROC_ENV,
    metrics,
    metrics_listener,
    prepare_multiprocess_dir,
    worker_exited,
)

MASTER = textwrap.dedent(
    """
    import shutil, subprocess, sys
    from registry.metrics import exposition, prepare_multiprocess_dir, worker_exited

    directory = prepare_multiprocess_dir()
    worker = (
        "import sys\\n"
        "from registry.metrics import metrics\\n"
        "metrics().auth_failures.labels('denied').inc(int(sys.argv[1]))\\n"
        "metrics().uploads_in_flight.inc()\\n"
    )
    pids = []
    for n in (3, 4):
        child = subprocess.Popen([sys.executable, "-c", worker, str(n)])
        child.wait()
        pids.append(child.pid)
    sys.stdout.write(exposition().decode())
    sys.stdout.write("--- one worker gone\\n")
    worker_exited(pids[0])
    sys.stdout.write(exposition().decode())
    shutil.rmtree(directory)
    """
)


class TestMultiprocess:
    def test_one_exposition_sums_the_workers(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", MASTER], capture_output=True, timeout=120, check=True
        )

        both, one_gone = result.stdout.decode().split("--- one worker gone\n")
        assert 'cargobay_auth_failures_total{reason="denied"} 7.0' in both.splitlines()
        assert "cargobay_uploads_in_flight 2.0" in both.splitlines()
        # A gauge of the living counts only the workers alive; counters keep what was done.
        assert "cargobay_uploads_in_flight 1.0" in one_gone.splitlines()
        assert 'cargobay_auth_failures_total{reason="denied"} 7.0' in one_gone.splitlines()

    def test_a_worker_exit_without_multiprocess_mode_is_nothing_to_do(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(MULTIPROC_ENV, raising=False)
        worker_exited(12345)  # the master calls it whether metrics are on or not

    def test_preparing_after_metrics_were_built_is_refused(self) -> None:
        metrics()
        with pytest.raises(RuntimeError, match="before multiprocess mode"):
            prepare_multiprocess_dir()


class TestListener:
    async def test_metrics_listener_serves_prometheus_text(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        metrics().rate_limited.inc(0)
        listener = metrics_listener(MetricsConfig(addr=f"127.0.0.1:{port}"))
        await anext(listener)
        try:

            def scrape() -> tuple[str, bytes]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return r.headers["Content-Type"], r.read()

            content_type, body = await asyncio.to_thread(scrape)
        finally:
            with pytest.raises(StopAsyncIteration):
                await anext(listener)

        assert content_type.startswith("text/plain; version=")
        assert b"# TYPE cargobay_rate_limited_total counter" in body
