"""Fixtures of the end-to-end tests: live registry processes and a sandboxed skopeo.

- `cargobay_factory` starts `cargobay serve` as a real subprocess on a free
  127.0.0.1 port and a filesystem root; the returned `ServerProcess` can be
  stopped (SIGTERM, then SIGKILL), killed with -9 and started again on the same
  root and port. `cargobay` is one such server on a fresh root.
- `distribution_factory` does the same for CNCF Distribution 2.8
  (`/usr/bin/docker-registry`), with deletes enabled.
- Both factories take `s3=` an `S3Config` (see `tests.s3server`) to store in a
  bucket instead of the filesystem root; Distribution's `rootdirectory` is then
  the config's `prefix`, so both registries see the same keys.
- `skopeo` runs the real skopeo with a throw-away home, temp dir, auth file,
  policy and registries configuration, always over plain HTTP.

Every process started is stopped at the end of the test, and every wait has a
timeout. A missing skopeo or docker-registry fails the test with a message that
says how to install it: these tests are never skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.config import S3Config
from tests.e2e.checks import SourceImages, write_source_images
from tests.e2e.processes import (
    CARGOBAY,
    DISTRIBUTION,
    ServerFactory,
    ServerProcess,
    Skopeo,
    free_port,
    require_executable,
    unprivileged_prefix,
)


@contextlib.contextmanager
def _server_factory(make: Callable[..., ServerProcess]) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def factory(*args: object, **kwargs: object) -> ServerProcess:
        server = make(*args, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def cargobay_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start `cargobay serve` on `root` (default: a new temp dir); stopped after the test.

    `extra_config` is TOML appended to the generated file: any section but
    `[http]`, `[storage]`, `[storage.filesystem]`, `[storage.s3]` and `[log]` (e.g.
    `[auth]`). With `s3`, storage is that bucket and prefix (`root` is then unused).
    `workers` is `cargobay serve --workers`: one process unless a test asks for more.
    `env` adds environment variables (`CARGOBAY_LOG__FORMAT=json`).
    """
    executable = require_executable(CARGOBAY, "cargobay (pip install -e . in the venv)")

    def make(
        root: Path | None = None,
        extra_config: str = "",
        s3: S3Config | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        workdir = tmp_path_factory.mktemp("cargobay")
        root = root if root is not None else workdir / "root"
        port = free_port()
        config = workdir / "config.toml"
        if s3 is None:
            storage = (
                f'driver = "filesystem"\n[storage.filesystem]\nroot = {json.dumps(str(root))}\n'
            )
        else:
            # A JSON number, boolean or string is a TOML one too.
            fields = "".join(
                f"{name} = {json.dumps(getattr(s3, name))}\n"
                for name in S3Config.__dataclass_fields__
            )
            storage = f'driver = "s3"\n[storage.s3]\n{fields}'
        config.write_text(
            f'[http]\naddr = "127.0.0.1:{port}"\nworkers = {workers}\n'
            f"[storage]\ndelete = true\n{storage}"
            f'[log]\nlevel = "info"\naccess_log = true\n' + extra_config
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CARGOBAY_")}
        return ServerProcess(
            name="cargobay",
            argv=[executable, "serve", "--config", str(config)],
            env={**environment, **(env or {})},
            root=root,
            port=port,
            log_path=workdir / "cargobay.log",
        )

    with _server_factory(make) as factory:
        yield factory


@pytest.fixture
def cargobay(cargobay_factory: ServerFactory) -> ServerProcess:
    """A running Cargobay on an empty filesystem root."""
    return cargobay_factory()


@pytest.fixture
def distribution_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start CNCF Distribution 2.8 on `root` (default: a new temp dir), deletes enabled.

    With `s3`, storage is its bucket below `prefix` instead, and blob GETs are
    served, not redirected to the bucket. With `access_log`, every request is
    logged (combined format) to its log file.
    """
    executable = require_executable(DISTRIBUTION, "CNCF Distribution (docker-registry)")

    def make(
        root: Path | None = None, s3: S3Config | None = None, access_log: bool = False
    ) -> ServerProcess:
        workdir = tmp_path_factory.mktemp("distribution")
        root = root if root is not None else workdir / "root"
        port = free_port()
        config = workdir / "config.yml"
        backend: dict[str, object] = {"filesystem": {"rootdirectory": str(root)}}
        if s3 is not None:
            backend = {
                "s3": {
                    "accesskey": s3.access_key,
                    "secretkey": s3.secret_key,
                    "region": s3.region,
                    "regionendpoint": s3.endpoint_url,
                    "bucket": s3.bucket,
                    "secure": s3.endpoint_url.startswith("https:"),
                    "v4auth": True,
                    "rootdirectory": "/" + s3.prefix.strip("/"),
                },
                "redirect": {"disable": True},
            }
        # JSON is YAML; the purge and health-check loops are off so nothing runs behind
        # the tests' backs.
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn", "accesslog": {"disabled": not access_log}},
                    "http": {"addr": f"127.0.0.1:{port}"},
                    "storage": {
                        **backend,
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}},
                    },
                    "health": {"storagedriver": {"enabled": False}},
                },
                indent=2,
            )
        )
        # 2.8 panics at start-up when AWS_CA_BUNDLE is set (LoadCustomCABundleError).
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "AWS_CA_BUNDLE" and not k.startswith("REGISTRY_")
        }
        return ServerProcess(
            name="distribution",
            argv=[executable, "serve", str(config)],
            env=env,
            root=root,
            port=port,
            log_path=workdir / "distribution.log",
        )

    with _server_factory(make) as factory:
        yield factory


@pytest.fixture(scope="session")
def skopeo_prefix() -> tuple[str, ...]:
    """How skopeo is kept from running as root (see `Skopeo`), found once per session."""
    return unprivileged_prefix()


@pytest.fixture
def skopeo(
    tmp_path_factory: pytest.TempPathFactory, skopeo_prefix: tuple[str, ...]
) -> Iterator[Skopeo]:
    """skopeo with a throw-away home (temp dir, auth file, policy, registries.conf, blob-info
    cache), removed after the test."""
    executable = require_executable("skopeo", "skopeo")
    home = tmp_path_factory.mktemp("skopeo-home")
    yield Skopeo(executable, home, skopeo_prefix)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> SourceImages:
    """The source images as an OCI layout, written once per session and only read."""
    return write_source_images(tmp_path_factory.mktemp("source") / "layout")
