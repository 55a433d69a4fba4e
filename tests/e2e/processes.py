"""Registry servers and skopeo as child processes, for the end-to-end tests.

`ServerProcess` runs a registry (Cargobay or CNCF Distribution) and knows how to
wait for it, stop it politely, kill it and start it again on the same root and
port. `Skopeo` runs skopeo confined to a throw-away home. Every wait has a
timeout; a failure quotes the process's log or stderr.
"""

from __future__ import annotations

import json
import os
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

import pytest

#: `cargobay` from the same virtualenv as the Python running the tests.
CARGOBAY = Path(sys.executable).with_name("cargobay")
DISTRIBUTION = Path("/usr/bin/docker-registry")
INSTALL_HINT = "install the Debian packages skopeo and docker-registry (scripts/test does it)"

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
SKOPEO_TIMEOUT = 60.0


def refused_start(config: Path, workers: str) -> str:
    """Run `cargobay serve --config config --workers workers`, which must refuse to start:
    exit 1 with no traceback. Returns the last line it printed, its one sentence."""
    result = subprocess.run(
        [str(CARGOBAY), "serve", "--config", str(config), "--workers", workers],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_executable(path: Path | str, what: str) -> str:
    """The executable's path, or fail the test saying what is missing and how to get it."""
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{what} is missing ({path} not found): {INSTALL_HINT}", pytrace=False)
    return found


@dataclass
class ServerProcess:
    """A registry server running as a child process, reachable at `url`.

    `start()` returns once `GET /v2/` answers 200 (or 401, when it requires
    credentials); `stop()` sends SIGTERM and escalates to SIGKILL after
    `STOP_TIMEOUT`; `kill()` is a plain kill -9. The process writes its output
    to `log_path`, which failures quote.
    """

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    root: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServerProcess:
        """Start the process and wait until its `/v2/` endpoint answers."""
        assert not self.running, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                list(self.argv),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with status {self.process.returncode} before "
                    f"answering GET /v2/:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"status {response.status}"
            except urllib.error.HTTPError as e:
                if e.code == 401:  # serving, and asking for credentials
                    return
                last_error = f"status {e.code}"
            except OSError as e:
                last_error = str(e)
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"{self.name} did not answer GET /v2/ within {READY_TIMEOUT}s ({last_error}):\n"
            f"{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout`; its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no clean-up handlers run, as after a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def restart(self) -> ServerProcess:
        """Stop gracefully if running, then start again on the same root and port."""
        self.stop()
        return self.start()

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        """Return once `text` appears in the process's output; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.005)
        pytest.fail(f"{self.name} never logged {text!r}:\n{self.log_tail()}", pytrace=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


#: Run a command as uid/gid 1000 in a new user namespace whose 1000 is our root.
USERNS_PREFIX = ("unshare", "--user", "--map-user=1000", "--map-group=1000", "--")


def unprivileged_prefix() -> tuple[str, ...]:
    """What to put before skopeo so that it does not run as root: nothing when we are
    not root; `USERNS_PREFIX` when user namespaces work; else nothing (and skopeo
    writes its blob-info cache to /var/lib/containers/cache)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return ()
    try:
        probe = subprocess.run(
            [*USERNS_PREFIX, "id", "-u"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return USERNS_PREFIX if probe.returncode == 0 and probe.stdout.strip() == b"1000" else ()


#: `factory(root=None)`: a started server; the fixture stops it after the test.
ServerFactory = Callable[..., ServerProcess]


class SkopeoError(AssertionError):
    """skopeo exited with a non-zero status; the message quotes its command and stderr."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = result.returncode
        self.stderr = result.stderr.decode(errors="replace")
        super().__init__(f"skopeo {' '.join(args)} exited with {result.returncode}:\n{self.stderr}")


@dataclass
class Skopeo:
    """The real skopeo, confined to `home`, talking plain HTTP to loopback registries.

    Everything skopeo reads or writes is below `home`: its temp files, auth file,
    policy, registries configuration and blob-info cache. As root, skopeo keeps that
    cache in `/var/lib/containers/cache` whatever its environment says, so when the
    tests run as root skopeo runs as an ordinary user in a user namespace
    (`unshare --map-user`), mapped back to root for file access (`USERNS_PREFIX`).
    """

    executable: str
    home: Path
    prefix: Sequence[str] = ()

    def __post_init__(self) -> None:
        for sub in ("tmp", "run", "config", "data", "registries.d"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.policy = self.home / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = self.home / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "data"),
            "REGISTRY_AUTH_FILE": str(self.home / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "LANG": "C.UTF-8",
        }

    def argv(self, *args: str) -> list[str]:
        """The command line of `skopeo ARGS` with the sandbox's global options."""
        return [
            *self.prefix,
            self.executable,
            "--policy",
            str(self.policy),
            "--registries.d",
            str(self.home / "registries.d"),
            "--tmpdir",
            str(self.home / "tmp"),
            *args,
        ]

    def run(self, *args: str, timeout: float = SKOPEO_TIMEOUT) -> bytes:
        """Run `skopeo ARGS` and return its stdout; raise `SkopeoError` if it fails."""
        result = subprocess.run(
            self.argv(*args),
            env=self.env,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            raise SkopeoError(args, result)
        return result.stdout

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `skopeo ARGS` in the background; the caller waits for it (with a timeout)."""
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def copy(self, source: str, destination: str, *options: str) -> bytes:
        """`skopeo copy` over plain HTTP on both sides."""
        return self.run(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *options,
            source,
            destination,
        )

    def inspect_raw(self, reference: str) -> bytes:
        """The manifest bytes exactly as the registry serves them."""
        return self.run("inspect", "--raw", "--tls-verify=false", reference)

    def list_tags(self, repository: str) -> list[str]:
        """The tags in the order the registry lists them (`repository` is `docker://HOST/NAME`)."""
        out = json.loads(self.run("list-tags", "--tls-verify=false", repository))
        return list(out["Tags"])

    def delete(self, reference: str) -> None:
        self.run("delete", "--tls-verify=false", reference)


@dataclass
class HAProxy:
    """HAProxy balancing round-robin over `backends` (`127.0.0.1:PORT`) on 127.0.0.1:`port`.

    A backend is checked every 200 ms with `GET /v2/`, so one that stops is
    taken out of rotation within a second and put back once it answers.
    `stop()` ends it by its PID.
    """

    backends: Sequence[str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> HAProxy:
        executable = require_executable("haproxy", "HAProxy (apt-get install haproxy)")
        config = self.workdir / "haproxy.cfg"
        servers = "".join(
            f"    server r{n} {backend} check inter 200ms fall 1 rise 1\n"
            for n, backend in enumerate(self.backends)
        )
        config.write_text(
            "global\n    maxconn 1000\n"
            "defaults\n    mode http\n    timeout connect 5s\n"
            "    timeout client 300s\n    timeout server 300s\n"
            f"frontend registry\n    bind 127.0.0.1:{self.port}\n    default_backend replicas\n"
            "backend replicas\n    balance roundrobin\n    option httpchk GET /v2/\n"
            "    retry-on conn-failure\n    retries 3\n    option redispatch\n" + servers
        )
        log = (self.workdir / "haproxy.log").open("ab")
        self.process = subprocess.Popen(
            [executable, "-f", str(config), "-db"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.HTTPError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"HAProxy did not serve within {READY_TIMEOUT}s", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
