"""What Cargobay has acknowledged survives the process: a kill -9, a clean stop, a restart."""

from __future__ import annotations

import random
from pathlib import Path

import aiohttp
import pytest

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
from tests.e2e.processes import SKOPEO_TIMEOUT, ServerFactory, ServerProcess, Skopeo

pytestmark = pytest.mark.e2e

TIMEOUT = aiohttp.ClientTimeout(total=30)


def push_images(skopeo: Skopeo, server: ServerProcess, images: SourceImages) -> None:
    skopeo.copy(images.oci("app"), docker_ref(server, "keep/app", "1.0"))
    skopeo.copy(docker_ref(server, "keep/app", "1.0"), docker_ref(server, "keep/app", "latest"))
    skopeo.copy(images.oci("tool"), docker_ref(server, "keep/tool", "edge"))
    skopeo.copy(images.oci("multi"), docker_ref(server, "keep/multi", "all"), "--all")


def assert_images_served(
    skopeo: Skopeo, server: ServerProcess, images: SourceImages, workdir: Path
) -> None:
    assert skopeo.list_tags(f"docker://{server.host}/keep/app") == ["1.0", "latest"]
    assert skopeo.list_tags(f"docker://{server.host}/keep/tool") == ["edge"]
    for tag in ("1.0", "latest"):
        assert_serves_image(skopeo, server, "keep/app", tag, images.app, workdir)
    assert_serves_image(skopeo, server, "keep/tool", "edge", images.tool, workdir)
    assert_serves_index(skopeo, server, "keep/multi", "all", images.multi, workdir)
    for digest in images.app.blob_digests:
        fetch_blob(server, "keep/app", digest)


class TestRestart:
    def test_everything_pushed_survives_kill_9(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        cargobay = cargobay_factory()
        push_images(skopeo, cargobay, images)

        cargobay.kill()
        cargobay.start()

        assert_images_served(skopeo, cargobay, images, tmp_path)

    def test_sigterm_exits_cleanly_and_a_restart_serves_the_same_content(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        cargobay = cargobay_factory()
        push_images(skopeo, cargobay, images)

        assert cargobay.stop() == 0, cargobay.log_tail()
        cargobay.start()

        assert_images_served(skopeo, cargobay, images, tmp_path)

    def test_deletes_survive_kill_9(
        self, cargobay_factory: ServerFactory, skopeo: Skopeo, images: SourceImages
    ) -> None:
        """A delete that was answered is not undone by the restart's index rebuild."""
        cargobay = cargobay_factory()
        push_images(skopeo, cargobay, images)
        skopeo.delete(docker_ref(cargobay, "keep/tool", "edge"))

        cargobay.kill()
        cargobay.start()

        status, _, _ = http_get(
            cargobay, f"/v2/keep/tool/manifests/{images.tool.digest}", method="HEAD"
        )
        assert status == 404
        assert http_get(cargobay, "/v2/keep/tool/manifests/edge", method="HEAD")[0] == 404
        assert skopeo.list_tags(f"docker://{cargobay.host}/keep/app") == ["1.0", "latest"]

    def test_push_after_kill_9_is_served_next_to_the_old_content(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        cargobay = cargobay_factory()
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "keep/app", "1.0"))
        cargobay.kill()
        cargobay.start()

        skopeo.copy(images.oci("tool"), docker_ref(cargobay, "keep/app", "2.0"))

        assert skopeo.list_tags(f"docker://{cargobay.host}/keep/app") == ["1.0", "2.0"]
        assert_serves_image(skopeo, cargobay, "keep/app", "1.0", images.app, tmp_path)
        assert_serves_image(skopeo, cargobay, "keep/app", "2.0", images.tool, tmp_path)

    def test_kill_9_in_the_middle_of_a_push_corrupts_nothing_and_the_push_can_be_redone(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """Whatever the push had reached when the process died, every blob visible after the
        restart matches its digest, and pushing again yields the intact image."""
        cargobay = cargobay_factory()
        skopeo.copy(images.oci("tool"), docker_ref(cargobay, "crash/app", "old"))
        push = skopeo.spawn(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            images.oci("app"),
            docker_ref(cargobay, "crash/app", "new"),
        )
        try:
            cargobay.wait_for_log("PATCH /v2/crash/app/blobs/uploads/")
            cargobay.kill()
            push.communicate(timeout=SKOPEO_TIMEOUT)
        finally:
            if push.poll() is None:
                push.kill()
                push.communicate(timeout=SKOPEO_TIMEOUT)

        cargobay.start()

        for digest in images.app.blob_digests:
            status, _, _ = http_get(cargobay, f"/v2/crash/app/blobs/{digest}", method="HEAD")
            assert status in (200, 404)
            if status == 200:
                fetch_blob(cargobay, "crash/app", digest)
        assert_serves_image(skopeo, cargobay, "crash/app", "old", images.tool, tmp_path)
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "crash/app", "new"))
        assert_serves_image(skopeo, cargobay, "crash/app", "new", images.app, tmp_path)
        assert skopeo.list_tags(f"docker://{cargobay.host}/crash/app") == ["new", "old"]


class TestUploadAcrossRestart:
    async def test_upload_session_resumes_after_kill_9_and_verifies_the_digest(
        self, cargobay: ServerProcess
    ) -> None:
        """Sessions live in storage (registry/services/uploads.py): after a crash the client
        asks where the upload stands, sends the rest, and the blob is verified in full."""
        blob = random.Random(11).randbytes(300_000)
        digest = sha256_digest(blob)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            upload = await ChunkedUpload.start(http, cargobay, "keep/upload")
            assert (await upload.patch(blob[:120_000])).status == 202
            location = upload.location

        cargobay.kill()
        cargobay.start()

        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            blob_url = f"{cargobay.url}/v2/keep/upload/blobs/{digest}"
            async with http.head(blob_url) as head:
                assert head.status == 404, "an unfinished upload must not be visible"
            resumed = ChunkedUpload(http, cargobay, str(location))
            progress = await resumed.status()
            assert progress.status == 204
            assert progress.headers["Range"] == "0-119999"
            resumed.offset = 120_000
            assert (await resumed.patch(blob[120_000:250_000])).status == 202
            done = await resumed.finish(digest, blob[250_000:])
            assert done.status == 201, await done.text()
            async with http.get(blob_url) as response:
                assert response.status == 200
                assert await response.read() == blob

    async def test_resumed_upload_with_wrong_digest_stores_nothing(
        self, cargobay: ServerProcess
    ) -> None:
        """After a restart the running hash is gone; the digest is still checked (by reading
        the bytes back), so a wrong one cannot publish the blob."""
        blob = random.Random(12).randbytes(200_000)
        wrong = sha256_digest(b"not the blob")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            upload = await ChunkedUpload.start(http, cargobay, "keep/upload")
            assert (await upload.patch(blob)).status == 202
            location = upload.location

        cargobay.kill()
        cargobay.start()

        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            done = await ChunkedUpload(http, cargobay, str(location)).finish(wrong)
            assert done.status == 400
            for digest in (wrong, sha256_digest(blob)):
                async with http.head(f"{cargobay.url}/v2/keep/upload/blobs/{digest}") as head:
                    assert head.status == 404
