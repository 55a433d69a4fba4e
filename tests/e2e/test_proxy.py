"""The pull-through cache with real clients and a real upstream on loopback.

The upstream is CNCF Distribution 2.8 with the source images pushed by skopeo
(and its access log on, to count what the mirror asks of it), or Cargobay
itself in token-auth mode for the Bearer flow. The mirror is a Cargobay with
`[[proxy.upstreams]]`; skopeo (prefix route), podman (a `registries.conf`
mirror), the Docker engine (`registry-mirrors`: the default upstream) and
containerd (`hosts.toml`: the `?ns=` route) pull through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from registry.config import Config, FilesystemConfig, ProxyConfig, StorageConfig, UpstreamConfig
from registry.drivers import create_driver
from registry.gc import Lease, collect
from registry.gc.schedule import options_of
from tests.e2e.checks import (
    SourceImages,
    assert_serves_image,
    assert_serves_index,
    docker_ref,
    http_get,
)
from tests.e2e.ocilayout import Image, OciLayout
from tests.e2e.processes import (
    ServerFactory,
    ServerProcess,
    Skopeo,
    SkopeoError,
    require_executable,
)
from tests.e2e.test_auth import RULES, AuthFiles, Podman, auth_files, creds, podman

__all__ = ["auth_files", "podman"]  # fixtures shared with test_auth

pytestmark = pytest.mark.e2e

STORM_PULLS = 50
STORM_LAYER_BYTES = 50 * 1024 * 1024
DOCKER_TIMEOUT = 180.0
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def upstream_config(
    upstream: ServerProcess,
    prefix: str = "dist",
    *,
    name: str = "dist",
    default: bool = False,
    tag_ttl_seconds: int = 300,
    credentials: tuple[str, str] | None = None,
) -> str:
    """The `[[proxy.upstreams]]` table mirroring `upstream` under `prefix`."""
    lines = [
        "[[proxy.upstreams]]",
        f'name = "{name}"',
        f'url = "{upstream.url}"',
        f'prefix = "{prefix}"',
        f"default = {'true' if default else 'false'}",
        f"tag_ttl_seconds = {tag_ttl_seconds}",
        "connect_timeout = 2.0",
        "read_timeout = 10.0",
    ]
    if credentials is not None:
        lines += [f'username = "{credentials[0]}"', f'password = "{credentials[1]}"']
    return "\n".join(lines) + "\n"


def push(skopeo: Skopeo, images: SourceImages, server: ServerProcess, repo: str, tag: str) -> None:
    """Push the source image `tag` (every platform of an index) to `server` as `repo:tag`."""
    skopeo.copy(images.oci(tag), docker_ref(server, repo, tag), "--all")


def upstream_gets(upstream: ServerProcess, path_part: str) -> int:
    """How many GETs of a path containing `path_part` Distribution's access log holds."""
    pattern = re.compile(r'"GET (\S+) HTTP')
    text = upstream.log_path.read_text(errors="replace")
    return sum(1 for m in pattern.finditer(text) if path_part in m.group(1))


@pytest.fixture
def upstream(distribution_factory: ServerFactory) -> ServerProcess:
    """Distribution 2.8 with its access log on."""
    return distribution_factory(access_log=True)


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Image]:
    """An OCI layout holding `big`: one layer of 50 MiB of incompressible bytes."""
    layout = OciLayout(tmp_path_factory.mktemp("big") / "layout")
    noise = random.Random(14).randbytes(STORM_LAYER_BYTES)
    image = layout.add_image("big", [{"data.bin": noise}])
    return layout.write(), image


async def pull_storm(server: ServerProcess, repository: str, tag: str, pulls: int) -> list[str]:
    """`pulls` concurrent image pulls (manifest by tag, then every blob, each checked against
    its digest as it streams); the manifest digest each pull got."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def blob(digest: str) -> None:
            async with http.get(f"{server.url}/v2/{repository}/blobs/{digest}") as response:
                assert response.status == 200, f"blob {digest}: {response.status}"
                hasher = hashlib.sha256()
                async for chunk in response.content.iter_chunked(1 << 20):
                    hasher.update(chunk)
                assert f"sha256:{hasher.hexdigest()}" == digest

        async def pull() -> str:
            url = f"{server.url}/v2/{repository}/manifests/{tag}"
            async with http.get(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
                assert response.status == 200, f"manifest: {response.status}"
                data = await response.read()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert response.headers["Docker-Content-Digest"] == digest
            manifest = json.loads(data)
            blobs = [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]
            await asyncio.gather(*(blob(d) for d in blobs))
            return digest

        return list(await asyncio.gather(*(pull() for _ in range(pulls))))


@dataclass
class DockerEngine:
    """A private dockerd (and the containerd it runs) on sockets below `directory`."""

    directory: Path
    env: dict[str, str]

    @property
    def containerd_socket(self) -> str:
        return str(self.directory / "exec" / "containerd" / "containerd.sock")

    def run(self, *args: str) -> str:
        """`docker ARGS` against this engine; its stdout, or fail quoting stderr."""
        return self._run(
            [require_executable("docker", "docker (apt-get install docker.io)"), *args]
        )

    def ctr(self, *args: str) -> str:
        """`ctr ARGS` against this engine's containerd, in a namespace of its own."""
        ctr = require_executable("ctr", "ctr (apt-get install docker.io)")
        return self._run([ctr, "--address", self.containerd_socket, "-n", "cargobay-e2e", *args])

    def _run(self, argv: list[str]) -> str:
        result = subprocess.run(
            argv, env=self.env, capture_output=True, timeout=DOCKER_TIMEOUT, check=False
        )
        assert result.returncode == 0, (
            f"{' '.join(argv)} exited with {result.returncode}:\n"
            f"{result.stderr.decode(errors='replace')}"
        )
        return result.stdout.decode()


@contextlib.contextmanager
def docker_engine(workdir: Path, mirror: ServerProcess) -> Iterator[DockerEngine]:
    """dockerd with `--registry-mirror` the mirror, on a private socket; stopped by PID after.

    The directory is short (unix socket paths are limited to 108 bytes).
    """
    dockerd = require_executable("dockerd", "dockerd (apt-get install docker.io)")
    directory = Path(tempfile.mkdtemp(prefix="cbd-", dir="/tmp"))
    socket = directory / "docker.sock"
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "DOCKER_HOST": f"unix://{socket}",
        "DOCKER_CONFIG": str(directory / "config"),
        "HOME": str(directory),
    }
    log_path = workdir / "dockerd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(directory / "root"),
                "--exec-root",
                str(directory / "exec"),
                "--pidfile",
                str(directory / "pid"),
                "--host",
                f"unix://{socket}",
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--bridge=none",
                "--registry-mirror",
                mirror.url,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    engine = DockerEngine(directory, env)
    try:
        deadline = time.monotonic() + 60
        while (
            not socket.exists()
            or subprocess.run(
                ["docker", "version"], env=env, capture_output=True, check=False
            ).returncode
        ):
            assert process.poll() is None, f"dockerd exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"dockerd not ready:\n{log_path.read_text()[-3000:]}"
            )
            time.sleep(0.2)
        yield engine
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


class TestPrefixRoute:
    def test_skopeo_pulls_an_image_and_an_index_through_the_prefix(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "team/app", "multi")
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        assert_serves_index(skopeo, mirror, "dist/team/app", "multi", images.multi, tmp_path)

    def test_cached_content_is_in_the_layout_distribution_serves(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        distribution_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        mirror.stop()
        upstream.stop()
        reader = distribution_factory(root=mirror.root)
        assert_serves_image(skopeo, reader, "dist/team/app", "app", images.app, tmp_path)

    def test_podman_pulls_through_a_registries_conf_mirror(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        podman: Podman,
        images: SourceImages,
    ) -> None:
        push(skopeo, images, upstream, "team/tool", "tool")
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        # The primary location answers nothing: only the mirror can serve the pull.
        (podman.home / "auth.json").write_text("{}")  # podman insists on the file it is given
        (podman.home / "registries.conf").write_text(
            'unqualified-search-registries = []\n[[registry]]\nlocation = "127.0.0.1:9/team"\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}/dist/team"\ninsecure = true\n'
        )
        podman.run("pull", "--quiet", "127.0.0.1:9/team/tool:tool")
        config = json.loads(podman.run("image", "inspect", "127.0.0.1:9/team/tool:tool"))
        assert config[0]["Id"] == images.tool.blob_digests[0].removeprefix("sha256:")


class TestBearerUpstream:
    def test_a_token_auth_upstream_is_pulled_with_configured_credentials(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        auth_files: AuthFiles,
        tmp_path: Path,
    ) -> None:
        secured = cargobay_factory(
            extra_config=(
                f'[auth]\nmode = "token"\n'
                f"[auth.htpasswd]\npath = {json.dumps(str(auth_files.htpasswd))}\n"
                f"[auth.token]\nsigning_key = {json.dumps(str(auth_files.signing_key))}\n" + RULES
            )
        )
        skopeo.copy(
            images.oci("app"), docker_ref(secured, "e2e/app", "1.0"), "--dest-creds", creds("alice")
        )
        mirror = cargobay_factory(
            extra_config=upstream_config(secured, "sec", name="sec", credentials=("bob", "bob-pw"))
        )
        assert_serves_image(skopeo, mirror, "sec/e2e/app", "1.0", images.app, tmp_path)
        # bob may pull e2e/** only: what the upstream refuses the mirror cannot serve.
        status, _, body = http_get(mirror, "/v2/sec/private/app/manifests/1.0")
        assert status == 503
        assert b"UNAVAILABLE" in body


class TestStorm:
    def test_fifty_concurrent_pulls_of_an_uncached_image_fetch_its_layer_once(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        big_image: tuple[Path, Image],
    ) -> None:
        layout, image = big_image
        skopeo.copy(f"oci:{layout}:big", docker_ref(upstream, "team/big", "v1"))
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        results = asyncio.run(pull_storm(mirror, "dist/team/big", "v1", STORM_PULLS))
        assert results == [image.digest] * STORM_PULLS
        layer = image.layers[0].digest
        assert upstream_gets(upstream, f"/blobs/{layer}") == 1
        assert upstream_gets(upstream, f"/blobs/{image.blob_digests[0]}") == 1

    def test_two_workers_fetch_each_layer_at_most_once_each(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """`--workers 2` on one storage: one download per process at worst, all pulls intact."""
        push(skopeo, images, upstream, "team/app", "app")
        mirror = cargobay_factory(extra_config=upstream_config(upstream), workers=2)
        results = asyncio.run(pull_storm(mirror, "dist/team/app", "app", 20))
        assert results == [images.app.digest] * 20
        for digest in images.app.blob_digests:
            assert 1 <= upstream_gets(upstream, f"/blobs/{digest}") <= 2
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)


class TestUpstreamStopped:
    def test_cached_content_is_served_and_uncached_content_fails_fast(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "team/tool", "tool")
        mirror = cargobay_factory(extra_config=upstream_config(upstream, tag_ttl_seconds=0))
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        upstream.stop()

        # TTL 0: every tag pull would revalidate; with the upstream gone it is served stale.
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        status, headers, _ = http_get(
            mirror, "/v2/dist/team/app/manifests/app", {"Accept": MANIFEST_ACCEPT}
        )
        assert status == 200
        assert "Response is stale" in headers["Warning"]

        started = time.monotonic()
        with pytest.raises(SkopeoError, match=r"(?i)unavailable|unreachable|503"):
            skopeo.inspect_raw(docker_ref(mirror, "dist/team/tool", "tool"))
        assert time.monotonic() - started < 30
        status, _, body = http_get(mirror, "/v2/dist/team/tool/manifests/tool")
        assert status == 503
        assert b"dist: unreachable" in body


class TestListsAndHeads:
    def test_tags_are_listed_from_the_upstream_and_a_blob_head_downloads_nothing(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "team/app", "tool")
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        # Nothing pulled yet: the tags are the upstream's.
        listed = skopeo.list_tags(f"docker://{mirror.host}/dist/team/app")
        assert sorted(listed) == ["app", "tool"]
        # Distribution 2.8 ignores `n` and `last`: the mirror pages for it.
        status, headers, body = http_get(mirror, "/v2/dist/team/app/tags/list?n=1")
        assert (status, json.loads(body)["tags"]) == (200, ["app"])
        assert headers["Link"] == '</v2/dist/team/app/tags/list?n=1&last=app>; rel="next"'
        status, headers, body = http_get(mirror, "/v2/dist/team/app/tags/list?n=1&last=app")
        assert (json.loads(body)["tags"], "Link" in headers) == (["tool"], False)

        layer = images.app.layers[1]
        status, headers, _ = http_get(
            mirror, f"/v2/dist/team/app/blobs/{layer.digest}", method="HEAD"
        )
        assert (status, int(headers["Content-Length"])) == (200, len(layer.compressed))
        assert upstream_gets(upstream, "/blobs/") == 0


class TestRetention:
    def test_a_tag_not_pulled_within_retention_days_goes_and_a_pulled_one_stays(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        distribution_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """The upstream's default rule, applied by a collection 30 days later."""
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "team/app", "tool")
        mirror = cargobay_factory(extra_config=upstream_config(upstream) + "retention_days = 30\n")
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        assert_serves_image(skopeo, mirror, "dist/team/app", "tool", images.tool, tmp_path)
        cached = time.time()
        time.sleep(0.05)
        pulled_again = time.time()
        skopeo.inspect_raw(docker_ref(mirror, "dist/team/app", "app"))
        mirror.stop()  # its pull log is flushed on the way out
        at = (cached + pulled_again) / 2 + 30 * 86400
        config = Config(
            storage=StorageConfig(filesystem=FilesystemConfig(root=str(mirror.root))),
            proxy=ProxyConfig(
                upstreams=(UpstreamConfig(name="dist", url=upstream.url, prefix="dist"),)
            ),
        )
        asyncio.run(collect_at(config, at))

        reader = distribution_factory(root=mirror.root)
        assert_serves_image(skopeo, reader, "dist/team/app", "app", images.app, tmp_path)
        with pytest.raises(SkopeoError):
            skopeo.inspect_raw(docker_ref(reader, "dist/team/app", "tool"))
        reader.stop()
        # Collected from the cache, not from the upstream: pulled again, fetched again.
        gets = upstream_gets(upstream, "/blobs/")
        mirror.start()
        assert_serves_image(skopeo, mirror, "dist/team/app", "tool", images.tool, tmp_path)
        assert upstream_gets(upstream, "/blobs/") > gets


async def collect_at(config: Config, at: float) -> None:
    """One collection as `config` describes it, by a clock that says `at`."""
    driver = create_driver(config.storage)
    await driver.open()
    try:
        lease = Lease(driver, settle=0.0, clock=lambda: at)
        await collect(
            driver, options_of(config), lambda change: None, lease=lease, clock=lambda: at
        )
    finally:
        await driver.close()


class TestTagMoved:
    def test_a_tag_moved_upstream_is_followed_after_the_ttl(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        skopeo.copy(images.oci("app"), docker_ref(upstream, "team/moving", "stable"))
        mirror = cargobay_factory(extra_config=upstream_config(upstream, tag_ttl_seconds=2))
        assert_serves_image(skopeo, mirror, "dist/team/moving", "stable", images.app, tmp_path)

        skopeo.copy(images.oci("tool"), docker_ref(upstream, "team/moving", "stable"))
        moved_at = time.monotonic()
        served = skopeo.inspect_raw(docker_ref(mirror, "dist/team/moving", "stable"))
        if time.monotonic() - moved_at < 1.5:  # surely still within the TTL
            assert served == images.app.manifest
        time.sleep(2.5)
        assert_serves_image(skopeo, mirror, "dist/team/moving", "stable", images.tool, tmp_path)


class TestDockerEngine:
    def test_docker_pulls_through_registry_mirrors_and_containerd_through_ns(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "library/tool", "tool")
        mirror = cargobay_factory(
            extra_config=upstream_config(upstream, "docker.io", name="hub", default=True)
            + "dockerhub_library = true\n"
        )
        with docker_engine(tmp_path, mirror) as docker:
            # docker.io/team/app: the daemon asks the mirror for team/app, no namespace.
            docker.run("pull", "team/app:app")
            inspected = json.loads(docker.run("image", "inspect", "team/app:app"))
            assert inspected[0]["Id"] == images.app.blob_digests[0]
            # containerd with a hosts.toml mirror sends ?ns=docker.io.
            hosts = tmp_path / "hosts" / "docker.io"
            hosts.mkdir(parents=True)
            (hosts / "hosts.toml").write_text(
                'server = "https://registry-1.docker.io"\n'
                f'[host."{mirror.url}"]\n  capabilities = ["pull", "resolve"]\n'
            )
            docker.ctr(
                "images",
                "pull",
                "--hosts-dir",
                str(tmp_path / "hosts"),
                "docker.io/library/tool:tool",
            )
        log = mirror.log_path.read_text(errors="replace")
        assert "/v2/team/app/manifests/app " in log
        assert "/v2/library/tool/manifests/tool?ns=docker.io" in log
        assert upstream_gets(upstream, "/v2/library/tool/manifests/tool") == 1
