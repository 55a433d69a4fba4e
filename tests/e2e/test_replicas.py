"""Several Cargobay processes on one storage serve one registry, checked with real clients.

Workers on one port (`--workers 2`) and replicas on one SeaweedFS bucket
behind HAProxy: skopeo and podman push through the one address, concurrently,
then every process is asked what it serves. The bounds are the README's
("Running several processes"): reads by digest agree at once, tags and
listings within the feed interval.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from registry.config import S3Config
from tests.e2e.checks import (
    ChunkedUpload,
    SourceImages,
    assert_serves_image,
    assert_serves_index,
    docker_ref,
    fetch_blob,
    http_get,
)
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import (
    SKOPEO_TIMEOUT,
    HAProxy,
    ServerFactory,
    ServerProcess,
    Skopeo,
)
from tests.e2e.test_auth import Podman, podman  # noqa: F401  (the fixture)
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e

FEED = "[feed]\ninterval_seconds = 0.5\nreconcile_seconds = 3\n"
# The README's bound for a tag or listing (one feed interval) plus a poll, a
# batch write and a loaded machine; reconciliation is every 3 s here.
CONVERGE = 10.0


def eventually(check: Callable[[], bool], within: float = CONVERGE) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "did not converge within the stated bound"
        time.sleep(0.2)


def catalog(server: ServerProcess | HAProxy) -> list[str]:
    status, _, body = http_get(server, "/v2/_catalog")  # type: ignore[arg-type]
    assert status == 200
    return list(json.loads(body)["repositories"])


def tags(server: ServerProcess | HAProxy, name: str) -> list[str]:
    status, _, body = http_get(server, f"/v2/{name}/tags/list")  # type: ignore[arg-type]
    return list(json.loads(body)["tags"]) if status == 200 else []


def digest_of_tag(server: ServerProcess | HAProxy, name: str, tag: str) -> str | None:
    status, headers, _ = http_get(
        server,  # type: ignore[arg-type]
        f"/v2/{name}/manifests/{tag}",
        {
            "Accept": "application/vnd.oci.image.index.v1+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
        method="HEAD",
    )
    return headers.get("Docker-Content-Digest") if status == 200 else None


def copy_all(skopeo: Skopeo, copies: list[tuple[str, str, tuple[str, ...]]]) -> None:
    """Run the `skopeo copy`s at once; each must succeed."""
    running = [
        skopeo.spawn(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *options,
            source,
            destination,
        )
        for source, destination, options in copies
    ]
    for process in running:
        _, stderr = process.communicate(timeout=SKOPEO_TIMEOUT)
        assert process.returncode == 0, stderr.decode(errors="replace")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


class TestWorkersOnOnePort:
    def test_concurrent_pushes_through_two_workers_are_served_by_both(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        server = cargobay_factory(workers=2, extra_config=FEED)
        assert server.process is not None
        assert len(children(server.process.pid)) == 2
        copy_all(skopeo, [
            (images.oci("app"), docker_ref(server, "team/app", "1.0"), ()),
            (images.oci("app"), docker_ref(server, "team/app", "latest"), ()),
            (images.oci("tool"), docker_ref(server, "team/tool", "edge"), ()),
            (images.oci("multi"), docker_ref(server, "team/multi", "all"), ("--all",)),
        ])  # fmt: skip

        # Each request is a new connection, so both workers answer in turn.
        def agreed() -> bool:
            return all(
                catalog(server) == ["team/app", "team/multi", "team/tool"]
                and tags(server, "team/app") == ["1.0", "latest"]
                for _ in range(8)
            )

        eventually(agreed)
        assert_serves_image(skopeo, server, "team/app", "1.0", images.app, tmp_path)
        assert_serves_image(skopeo, server, "team/tool", "edge", images.tool, tmp_path)
        assert_serves_index(skopeo, server, "team/multi", "all", images.multi, tmp_path)

    async def test_an_upload_whose_chunks_land_on_different_workers_completes(
        self, cargobay_factory: ServerFactory
    ) -> None:
        server = cargobay_factory(workers=2)
        data = bytes(range(256)) * 4096  # 1 MiB
        digest = sha256_digest(data)
        # A new connection per request, so the chunks are spread over the workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            upload = await ChunkedUpload.start(http, server, "lib/chunked")
            piece = len(data) // 8
            for start in range(0, len(data), piece):
                answer = await upload.patch(data[start : start + piece])
                assert answer.status == 202
            done = await upload.finish(digest)
            assert done.status == 201
        assert fetch_blob(server, "lib/chunked", digest) == data

    def test_a_killed_worker_is_replaced_and_the_registry_keeps_serving(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        server = cargobay_factory(workers=2)
        assert server.process is not None
        master = server.process.pid
        victim = children(master)[0]
        subprocess.run(["kill", "-9", str(victim)], check=True)
        eventually(lambda: len(children(master)) == 2 and victim not in children(master))
        skopeo.copy(images.oci("app"), docker_ref(server, "after/kill", "v1"))
        assert_serves_image(skopeo, server, "after/kill", "v1", images.app, tmp_path)

    def test_sigterm_stops_every_worker(self, cargobay_factory: ServerFactory) -> None:
        server = cargobay_factory(workers=2)
        assert server.process is not None
        workers = children(server.process.pid)
        assert server.stop() == 0
        for pid in workers:
            eventually(lambda pid=pid: not Path(f"/proc/{pid}").exists(), within=5)


class TestAcknowledgedWritesAreNeverLost:
    def test_a_blob_deleted_by_hand_is_stored_again_by_the_next_push(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        server = cargobay_factory()
        skopeo.copy(images.oci("app"), docker_ref(server, "lib/app", "1"))
        layer = images.app.layers[1].digest
        blob_dir = server.root / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:]
        shutil.rmtree(blob_dir)
        time.sleep(1.1)  # the longest a HEAD trusts an earlier confirmation
        status, _, _ = http_get(server, f"/v2/lib/app/blobs/{layer}", method="HEAD")
        assert status == 404
        skopeo.copy(images.oci("app"), docker_ref(server, "lib/app", "2"))
        assert_serves_image(skopeo, server, "lib/app", "2", images.app, tmp_path)


@pytest.fixture
def bucket(seaweedfs_s3: S3Server) -> S3Config:
    return seaweedfs_s3.config(prefix=f"replicas-{uuid.uuid4().hex}")


@pytest.fixture
def replicas(
    cargobay_factory: ServerFactory, bucket: S3Config, tmp_path: Path
) -> Iterator[tuple[list[ServerProcess], HAProxy]]:
    """Three replicas on one SeaweedFS bucket behind HAProxy on 127.0.0.1."""
    servers = [cargobay_factory(s3=bucket, extra_config=FEED) for _ in range(3)]
    balancer = HAProxy([s.host for s in servers], tmp_path).start()
    yield servers, balancer
    balancer.stop()


class TestReplicasBehindHAProxy:
    def test_skopeo_and_podman_pushes_through_the_balancer_are_served_by_every_replica(
        self,
        replicas: tuple[list[ServerProcess], HAProxy],
        skopeo: Skopeo,
        podman: Podman,  # noqa: F811
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        servers, balancer = replicas
        copy_all(skopeo, [
            (images.oci("app"), docker_ref(balancer, "team/app", "1.0"), ()),  # type: ignore[arg-type]
            (images.oci("app"), docker_ref(balancer, "team/app", "latest"), ()),  # type: ignore[arg-type]
            (images.oci("tool"), docker_ref(balancer, "team/tool", "edge"), ()),  # type: ignore[arg-type]
            (images.oci("multi"), docker_ref(balancer, "team/multi", "all"), ("--all",)),  # type: ignore[arg-type]
        ])  # fmt: skip
        source = f"{balancer.host}/team/tool:edge"
        podman.run("pull", "--quiet", "--tls-verify=false", source)
        podman.run("tag", source, f"{balancer.host}/team/podman:v1")
        podman.run("push", "--quiet", "--tls-verify=false", f"{balancer.host}/team/podman:v1")

        expected = ["team/app", "team/multi", "team/podman", "team/tool"]
        wanted = {
            ("team/app", "1.0"): images.app.digest,
            ("team/app", "latest"): images.app.digest,
            ("team/tool", "edge"): images.tool.digest,
            ("team/multi", "all"): images.multi.digest,
        }

        def every_replica_agrees() -> bool:
            return all(
                catalog(s) == expected
                and tags(s, "team/app") == ["1.0", "latest"]
                and all(digest_of_tag(s, n, t) == d for (n, t), d in wanted.items())
                and digest_of_tag(s, "team/podman", "v1") is not None
                for s in servers
            )

        eventually(every_replica_agrees)
        for server in servers:
            assert_serves_image(skopeo, server, "team/app", "1.0", images.app, tmp_path)

    def test_tag_moves_and_deletes_reach_every_replica(
        self,
        replicas: tuple[list[ServerProcess], HAProxy],
        skopeo: Skopeo,
        images: SourceImages,
    ) -> None:
        servers, _ = replicas
        skopeo.copy(images.oci("app"), docker_ref(servers[0], "lib/app", "latest"))
        eventually(
            lambda: all(digest_of_tag(s, "lib/app", "latest") == images.app.digest for s in servers)
        )
        skopeo.copy(images.oci("tool"), docker_ref(servers[1], "lib/app", "latest"))
        eventually(
            lambda: all(
                digest_of_tag(s, "lib/app", "latest") == images.tool.digest for s in servers
            )
        )
        status, _, _ = http_get(servers[2], "/v2/lib/app/manifests/latest", method="DELETE")
        assert status == 202
        eventually(
            lambda: all(
                digest_of_tag(s, "lib/app", "latest") is None and tags(s, "lib/app") == []
                for s in servers
            )
        )

    def test_a_replica_killed_with_sigkill_catches_up_after_restart(
        self,
        replicas: tuple[list[ServerProcess], HAProxy],
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        servers, balancer = replicas
        servers[2].kill()
        skopeo.copy(images.oci("app"), docker_ref(balancer, "while/down", "v1"))  # type: ignore[arg-type]
        servers[2].start()
        eventually(
            lambda: "while/down" in catalog(servers[2]) and tags(servers[2], "while/down") == ["v1"]
        )
        assert_serves_image(skopeo, servers[2], "while/down", "v1", images.app, tmp_path)

    def test_a_replica_sees_what_distribution_writes_to_the_bucket(
        self,
        replicas: tuple[list[ServerProcess], HAProxy],
        distribution_factory: ServerFactory,
        bucket: S3Config,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """Distribution writes no feed records: reconciliation finds them."""
        servers, _ = replicas
        distribution = distribution_factory(s3=bucket)
        skopeo.copy(images.oci("tool"), docker_ref(distribution, "from/distribution", "v1"))
        eventually(
            lambda: all(
                "from/distribution" in catalog(s) and tags(s, "from/distribution") == ["v1"]
                for s in servers
            )
        )
        assert_serves_image(skopeo, servers[0], "from/distribution", "v1", images.tool, tmp_path)
