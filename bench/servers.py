"""The processes under test: Cargobay, CNCF Distribution, SeaweedFS and the ceiling server.

Each runs as a child in its own session, with output to a log file that
errors quote. `Process.start` returns once the readiness probe answers and
records how long that took (the start-up phase); `stop` is SIGTERM, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
CARGOBAY = VENV_BIN / "cargobay"
WEED = VENV_BIN / "weed"
DISTRIBUTION = Path("/usr/bin/docker-registry")

#: How long a registry may take to answer: start-up on a large data set is itself measured.
REGISTRY_READY_TIMEOUT = 900.0

ACCESS_KEY = "benchkey"
SECRET_KEY = "benchsecret"
REGION = "us-east-1"


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why (and quotes logs)."""


def remove_tree(path: Path) -> None:
    """Delete a directory tree; `rm -rf` is several times faster than shutil on 300,000 files."""
    if shutil.which("rm"):
        subprocess.run(["rm", "-rf", "--", str(path)], check=False)
    else:  # pragma: no cover
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    """A server child process; `ready` is a probe that returns True once it serves."""

    name: str
    argv: Sequence[str | Path]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    ready_timeout: float = 120.0
    stop_timeout: float = 10.0
    url: str = ""  # where it serves, for servers that serve HTTP
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    startup_seconds: float = field(default=0.0, init=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} is not running"
        return self.popen.pid

    def start(self) -> Process:
        """Start and wait until `ready()`; `startup_seconds` is the time that took."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(map(str, self.argv))}\n".encode())
            log.flush()
            started = time.monotonic()
            self.popen = subprocess.Popen(
                [str(a) for a in self.argv], env=self.env, cwd=self.cwd, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = started + self.ready_timeout
        while True:
            if self.popen.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.popen.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            if self.ready():
                self.startup_seconds = time.monotonic() - started
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise BenchError(
                    f"{self.name} not ready after {self.ready_timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout`."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# -- S3 settings shared by the registries ---------------------------------------------


@dataclass(frozen=True)
class S3Target:
    """A bucket and key prefix on a local S3 server."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    prefix: str = ""  # no leading or trailing slash


# -- Cargobay --------------------------------------------------------------------------


def cargobay_config(
    workdir: Path, port: int, *, root: Path | None = None, s3: S3Target | None = None,
    redirect: bool = False, workers: int = 1, extra_config: str = "", observed: bool = False,
) -> Path:
    """Write Cargobay's configuration for `cargobay(...)` (which see) and `cargobay gc`."""
    lines = ["[http]", f'addr = "127.0.0.1:{port}"', f"workers = {workers}", "[storage]"]
    if s3 is None:
        assert root is not None
        lines += ['driver = "filesystem"', "[storage.filesystem]", f'root = "{root}"']
    else:
        lines += [
            'driver = "s3"', "[storage.s3]", f'bucket = "{s3.bucket}"',
            f'endpoint_url = "{s3.endpoint}"', f'region = "{REGION}"', f'prefix = "{s3.prefix}"',
            f'access_key = "{ACCESS_KEY}"', f'secret_key = "{SECRET_KEY}"', "path_style = true",
            f"redirect = {'true' if redirect else 'false'}",
        ]
    if observed:
        lines += ["[metrics]", f'addr = "127.0.0.1:{free_port()}"']
        lines += ["[log]", 'level = "info"', "access_log = true", 'format = "json"']
    else:
        lines += ["[log]", 'level = "error"', "access_log = false"]
    config = workdir / f"cargobay-{port}.toml"
    config.write_text("\n".join(lines) + "\n" + extra_config)
    return config


def cargobay(
    workdir: Path, port: int, *, root: Path | None = None, s3: S3Target | None = None,
    redirect: bool = False, extra_env: dict[str, str] | None = None, workers: int = 1,
    extra_config: str = "",
    observed: bool = False,
) -> Process:
    """Cargobay on `root` (filesystem) or `s3`, logging errors only, no access log.

    `workers` processes serve the port (`--workers`); the bench measures one
    unless a phase asks for more. `extra_config` is TOML appended to the file
    (a section other than those above). `observed`: as an operator would run it
    instead: Prometheus metrics on (multiprocess mode, a listener of their own) and
    a JSON access line per request, written to its log.
    """
    config = cargobay_config(
        workdir, port, root=root, s3=s3, redirect=redirect, workers=workers,
        extra_config=extra_config, observed=observed,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOBAY_")}
    env.update(extra_env or {})
    return Process(
        "cargobay", [CARGOBAY, "serve", "--config", config], workdir / "cargobay.log",
        lambda: http_ok(f"http://127.0.0.1:{port}/v2/"), env=env,
        url=f"http://127.0.0.1:{port}", ready_timeout=REGISTRY_READY_TIMEOUT,
    )


# -- CNCF Distribution -----------------------------------------------------------------


def distribution_config(
    workdir: Path, port: int, *, root: Path | None = None, s3: S3Target | None = None,
    redirect: bool = False, proxy_remote: str = "", access_log: bool = False,
    observed: bool = False,
) -> Path:
    """Write Distribution's configuration for `distribution(...)` (which see) and
    `docker-registry garbage-collect`."""
    if s3 is None:
        assert root is not None
        storage: dict[str, object] = {"filesystem": {"rootdirectory": str(root)}}
    else:
        storage = {
            "s3": {
                "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "region": REGION,
                "regionendpoint": s3.endpoint, "bucket": s3.bucket, "secure": False,
                "v4auth": True, "rootdirectory": f"/{s3.prefix}" if s3.prefix else "/",
            },
            "redirect": {"disable": not redirect},
        }
    storage["delete"] = {"enabled": True}
    storage["maintenance"] = {"uploadpurging": {"enabled": False}}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": not access_log}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "storage": storage,
        "health": {"storagedriver": {"enabled": False}},
    }
    if observed:
        # At INFO, Distribution logs one "response completed" line per request, with
        # its fields (request id, method, URI, status, duration...): JSON lines like
        # Cargobay's access lines. Its metrics are on its debug listener.
        config["log"] = {"level": "info", "formatter": "json", "accesslog": {"disabled": True}}
        config["http"]["debug"] = {
            "addr": f"127.0.0.1:{free_port()}",
            "prometheus": {"enabled": True, "path": "/metrics"},
        }
    if proxy_remote:
        config["proxy"] = {"remoteurl": proxy_remote}
    path = workdir / f"distribution-{port}.yml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def distribution_env() -> dict[str, str]:
    """The environment to run Distribution in: 2.8 panics at start-up if AWS_CA_BUNDLE is set."""
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


def distribution(
    workdir: Path, port: int, *, root: Path | None = None, s3: S3Target | None = None,
    redirect: bool = False, proxy_remote: str = "", access_log: bool = False,
    log_name: str = "distribution", observed: bool = False,
) -> Process:
    """Distribution 2.8 with the background work a benchmark must not see turned off.

    With `proxy_remote`, a pull-through cache of that registry (`proxy.remoteurl`);
    with `access_log`, every request is logged to `<log_name>.log`. `observed`: as
    an operator would run it instead: Prometheus metrics on and a JSON line per
    request, written to its log.
    """
    path = distribution_config(
        workdir, port, root=root, s3=s3, redirect=redirect, proxy_remote=proxy_remote,
        access_log=access_log, observed=observed,
    )
    return Process(
        log_name, [DISTRIBUTION, "serve", path], workdir / f"{log_name}.log",
        lambda: http_ok(f"http://127.0.0.1:{port}/v2/"), env=distribution_env(),
        url=f"http://127.0.0.1:{port}", ready_timeout=REGISTRY_READY_TIMEOUT,
    )


def registry(kind: str, workdir: Path, port: int, **kwargs: object) -> Process:
    """`cargobay(...)` or `distribution(...)` by name; `<name>-observed` with `observed=True`."""
    name = kind.removesuffix("-observed")
    factory = {"cargobay": cargobay, "distribution": distribution}[name]
    if name != kind:
        kwargs["observed"] = True
    return factory(workdir, port, **kwargs)  # type: ignore[arg-type]


# -- the S3 request counter -----------------------------------------------------------


def s3_counter(workdir: Path, upstream: str) -> Process:
    """`bench.s3count` in front of the S3 server at `upstream`, on a free port."""
    port = free_port()
    return Process(
        "s3count", [sys.executable, "-m", "bench.s3count", "--upstream", upstream,
                    "--port", str(port)],
        workdir / "s3count.log", lambda: port_open(port),
        cwd=Path(__file__).resolve().parent.parent, url=f"http://127.0.0.1:{port}",
    )


# -- SeaweedFS -------------------------------------------------------------------------


class SeaweedFS:
    """A throw-away SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1.

    `start()` returns once the S3 port answers and every bucket in `buckets`
    exists and has taken a first write. `stop()` kills it (its data is
    disposable) and removes its directory. With `metrics`, it serves
    Prometheus metrics, from which `s3_requests()` counts the S3 requests it
    has answered.
    """

    def __init__(self, directory: Path, name: str = "seaweedfs", metrics: bool = False) -> None:
        self.dir = directory
        self.name = name
        ports = [free_port() for _ in range(8)]
        self.master, self.volume, self.filer, self.s3 = ports[:4]
        self.grpc = ports[4:]
        self.metrics = free_port() if metrics else None
        self.process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, buckets: Sequence[str]) -> SeaweedFS:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [{
                "name": "bench",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        }
        (self.dir / "s3.json").write_text(json.dumps(identities))
        argv: list[str | Path] = [
            WEED, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master}", f"-master.port.grpc={self.grpc[0]}",
            f"-volume.port={self.volume}", f"-volume.port.grpc={self.grpc[1]}",
            "-filer", f"-filer.port={self.filer}", f"-filer.port.grpc={self.grpc[2]}",
            "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.grpc[3]}",
            f"-s3.config={self.dir / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=0",
        ]
        if self.metrics is not None:
            argv.append(f"-metricsPort={self.metrics}")
        self.process = Process(
            self.name, argv, self.dir / "weed.log", lambda: port_open(self.s3),
            ready_timeout=90.0,
        ).start()
        from bench.s3util import ensure_buckets

        try:
            ensure_buckets(self.endpoint, buckets)
        except BaseException:
            self.process.kill()  # no caller holds this object yet to stop it
            raise
        return self

    def s3_requests(self) -> dict[str, int]:
        """S3 requests answered so far, by SeaweedFS's request type (GET, PUT, LIST, ...).

        HEAD counts as GET. Needs `metrics`; raises `BenchError` if the
        metrics cannot be read.
        """
        assert self.metrics is not None, "started without metrics"
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as e:
            raise BenchError(f"{self.name}: metrics not readable: {e}") from e
        counts: dict[str, int] = {}
        for sample in re.finditer(r'^SeaweedFS_s3_request_total\{(.*)\} (\S+)$', text, re.M):
            kind = re.search(r'type="([^"]*)"', sample.group(1))
            name = kind.group(1) if kind else "?"
            counts[name] = counts.get(name, 0) + int(float(sample.group(2)))
        return counts

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGTERM takes ~25 s; the data is disposable
        remove_tree(self.dir)
