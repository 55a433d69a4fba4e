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
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.api.observe import hide_server_software
from registry.config import MetricsConfig
from registry.metrics import (
    MULTIPROC_ENV,
    MetricsListenerError,
    metrics,
    metrics_listener,
    prepare_multiprocess_dir,
    serve_workers_metrics,
    worker_exited,
)
from tests.e2e.processes import refused_start

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port of 127.0.0.1 another socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def scrape(port: int) -> tuple[dict[str, str], bytes]:
    """The headers and body of `GET /metrics`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return dict(r.headers), r.read()


def malformed_request(port: int, request: bytes) -> bytes:
    """The head of the answer to `request`, which the server cannot parse."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[0]


class TestListener:
    async def test_metrics_listener_serves_prometheus_text(self) -> None:
        port = free_port()
        metrics().rate_limited.inc(0)
        hide_server_software()  # as creating the registry's app does, in the same process
        listener = metrics_listener(MetricsConfig(addr=f"127.0.0.1:{port}"))
        await anext(listener)
        try:
            headers, body = await asyncio.to_thread(scrape, port)
            refused = await asyncio.to_thread(
                malformed_request, port, b"GET /metrics HTTP/9.9\r\n\r\n"
            )
        finally:
            with pytest.raises(StopAsyncIteration):
                await anext(listener)

        assert headers["Content-Type"].startswith("text/plain; version=")
        assert headers["Server"] == "cargobay"
        assert b"# TYPE cargobay_rate_limited_total counter" in body
        assert refused.startswith(b"HTTP/1.0 400 ")
        assert b"\r\nServer: cargobay\r\n" in refused + b"\r\n"

    async def test_a_taken_address_is_one_sentence_naming_it(self, taken: int) -> None:
        listener = metrics_listener(MetricsConfig(addr=f"127.0.0.1:{taken}"))

        with pytest.raises(MetricsListenerError) as refused:
            await anext(listener)

        assert str(refused.value) == (
            f"cannot serve metrics on 127.0.0.1:{taken}: Address already in use"
        )


class TestWorkersListener:
    """The master of several workers serves their metrics from a thread of its own."""

    def test_it_serves_every_process_and_names_no_versions(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
        port = free_port()

        server = serve_workers_metrics(MetricsConfig(addr=f"127.0.0.1:{port}"), workers=2)
        try:
            headers, _ = scrape(port)
            # More headers than http.server reads (100): its own error, 431.
            refused = malformed_request(port, b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 101)
        finally:
            server.shutdown()
            server.server_close()

        assert headers["Content-Type"].startswith("text/plain; version=")
        assert headers["Server"] == "cargobay"
        assert refused.startswith(b"HTTP/1.0 431 ")
        assert b"\r\nServer: cargobay\r\n" in refused + b"\r\n"

    def test_a_taken_address_is_one_sentence_saying_the_workers_share_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: int
    ) -> None:
        monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))

        with pytest.raises(MetricsListenerError) as refused:
            serve_workers_metrics(MetricsConfig(addr=f"127.0.0.1:{taken}"), workers=3)

        assert str(refused.value) == (
            f"cannot serve metrics on 127.0.0.1:{taken}, the listener the 3 workers share: "
            "Address already in use"
        )


class TestServeWithATakenAddress:
    @pytest.mark.parametrize(
        ("workers", "shared"), [("1", ""), ("2", ", the listener the 2 workers share")]
    )
    def test_serve_exits_with_one_sentence_and_no_traceback(
        self, tmp_path: Path, taken: int, workers: str, shared: str
    ) -> None:
        config = tmp_path / "c.toml"
        config.write_text(
            f'[http]\naddr = "127.0.0.1:0"\n[storage.filesystem]\nroot = "{tmp_path}/data"\n'
            f'[metrics]\naddr = "127.0.0.1:{taken}"\n'
        )

        assert refused_start(config, workers) == (
            f"cargobay: cannot serve metrics on 127.0.0.1:{taken}{shared}: Address already in use"
        )
