"""skopeo against a live Cargobay: push, inspect, pull, list and delete as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.checks import (
    SourceImages,
    assert_serves_image,
    assert_serves_index,
    docker_ref,
    fetch_blob,
    http_get,
)
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import SKOPEO_TIMEOUT, ServerProcess, Skopeo, SkopeoError

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class TestCopyImage:
    def test_multi_layer_image_round_trips_byte_identical(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """Pushed from an OCI layout and pulled back into a new one, the manifest and every
        blob keep their bytes and digests."""
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))

        assert_serves_image(skopeo, cargobay, "e2e/app", "1.0", images.app, tmp_path)
        for digest in images.app.blob_digests:
            fetch_blob(cargobay, "e2e/app", digest)

    def test_pushed_manifest_is_served_with_its_media_type_and_digest(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))

        status, headers, body = http_get(
            cargobay,
            "/v2/e2e/app/manifests/1.0",
            {"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert status == 200
        assert body == images.app.manifest
        assert headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert headers["Docker-Content-Digest"] == images.app.digest

    def test_copy_between_repositories_of_the_registry_keeps_the_digest(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """A registry-to-registry copy (blobs already present, or mounted) yields the same
        image under the new name."""
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))
        skopeo.copy(
            docker_ref(cargobay, "e2e/app", "1.0"), docker_ref(cargobay, "e2e/mirror", "1.0")
        )

        assert_serves_image(skopeo, cargobay, "e2e/mirror", "1.0", images.app, tmp_path)

    def test_docker_schema2_conversion_round_trips(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """`--format v2s2` stores a Docker schema2 manifest whose config and layers are the
        OCI image's blobs; it is served as pushed, with the Docker media type, and pulls
        back into a `dir:` byte for byte."""
        skopeo.copy(
            images.oci("app"), docker_ref(cargobay, "e2e/docker", "v2s2"), "--format", "v2s2"
        )

        raw = skopeo.inspect_raw(docker_ref(cargobay, "e2e/docker", "v2s2"))
        manifest = json.loads(raw)
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert manifest["config"]["mediaType"] == DOCKER_CONFIG
        assert manifest["config"]["digest"] == images.app.blob_digests[0]
        assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER] * 3
        assert [layer["digest"] for layer in manifest["layers"]] == images.app.blob_digests[1:]

        status, headers, body = http_get(
            cargobay, "/v2/e2e/docker/manifests/v2s2", {"Accept": DOCKER_MANIFEST}
        )
        assert (status, body) == (200, raw)
        assert headers["Content-Type"] == DOCKER_MANIFEST

        out = tmp_path / "docker-dir"
        skopeo.copy(docker_ref(cargobay, "e2e/docker", "v2s2"), f"dir:{out}")
        assert (out / "manifest.json").read_bytes() == raw
        assert (out / images.app.blob_digests[0].removeprefix("sha256:")).read_bytes() == (
            images.app.config
        )
        for layer in images.app.layers:
            assert (out / layer.digest.removeprefix("sha256:")).read_bytes() == layer.compressed

    def test_signed_docker_schema1_round_trips(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """`--format v2s1` pushes a JWS-signed schema1 manifest; its digest (of the payload
        without signatures) finds it, and it is served and pulled back as pushed."""
        skopeo.copy(
            images.oci("app"), docker_ref(cargobay, "e2e/schema1", "v1"), "--format", "v2s1"
        )

        raw = skopeo.inspect_raw(docker_ref(cargobay, "e2e/schema1", "v1"))
        assert json.loads(raw)["signatures"]
        status, headers, body = http_get(
            cargobay, "/v2/e2e/schema1/manifests/v1", {"Accept": DOCKER_SCHEMA1_SIGNED}
        )
        assert (status, body, headers["Content-Type"]) == (200, raw, DOCKER_SCHEMA1_SIGNED)
        digest = headers["Docker-Content-Digest"]
        assert skopeo.inspect_raw(docker_ref(cargobay, "e2e/schema1", digest)) == raw

        out = tmp_path / "schema1"
        skopeo.copy(docker_ref(cargobay, "e2e/schema1", "v1"), f"dir:{out}")
        assert (out / "manifest.json").read_bytes() == raw
        for layer in images.app.layers:
            assert (out / layer.digest.removeprefix("sha256:")).read_bytes() == layer.compressed


class TestCopyMultiArch:
    def test_copy_all_stores_the_index_and_every_platform_manifest(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        skopeo.copy(images.oci("multi"), docker_ref(cargobay, "e2e/multi", "latest"), "--all")

        assert_serves_index(skopeo, cargobay, "e2e/multi", "latest", images.multi, tmp_path)

    def test_platform_image_is_pulled_by_its_architecture(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """A client that asks for arm64 gets the arm64 image out of the index."""
        skopeo.copy(images.oci("multi"), docker_ref(cargobay, "e2e/multi", "latest"), "--all")
        arm64 = next(i for i in images.multi.images if i.architecture == "arm64")

        out = tmp_path / "arm64"
        skopeo.run(
            "--override-arch",
            "arm64",
            "--override-os",
            "linux",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            docker_ref(cargobay, "e2e/multi", "latest"),
            f"dir:{out}",
        )
        assert (out / "manifest.json").read_bytes() == arm64.manifest

    def test_copy_all_with_format_v2s2_stores_a_docker_manifest_list(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """The index converted to a Docker manifest list: the list and each converted platform
        manifest are served as pushed, and the platform images keep the OCI blobs."""
        skopeo.copy(
            images.oci("multi"),
            docker_ref(cargobay, "e2e/list", "v2s2"),
            "--all",
            "--format",
            "v2s2",
        )

        raw = skopeo.inspect_raw(docker_ref(cargobay, "e2e/list", "v2s2"))
        listed = json.loads(raw)
        assert listed["mediaType"] == DOCKER_MANIFEST_LIST
        assert [m["platform"]["architecture"] for m in listed["manifests"]] == ["amd64", "arm64"]
        for entry, image in zip(listed["manifests"], images.multi.images, strict=True):
            assert entry["mediaType"] == DOCKER_MANIFEST
            child = skopeo.inspect_raw(docker_ref(cargobay, "e2e/list", entry["digest"]))
            assert sha256_digest(child) == entry["digest"]
            assert [layer["digest"] for layer in json.loads(child)["layers"]] == [
                layer.digest for layer in image.layers
            ]
        status, headers, body = http_get(
            cargobay, "/v2/e2e/list/manifests/v2s2", {"Accept": DOCKER_MANIFEST_LIST}
        )
        assert (status, body, headers["Content-Type"]) == (200, raw, DOCKER_MANIFEST_LIST)

        out = tmp_path / "list"
        skopeo.copy(docker_ref(cargobay, "e2e/list", "v2s2"), f"dir:{out}", "--all")
        assert (out / "manifest.json").read_bytes() == raw


class TestConcurrentPushes:
    def test_parallel_pushes_sharing_blobs_all_succeed_and_serve_intact_images(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        """Several clients pushing the same layers at once (a CI fan-out) race on the same
        blobs; every push succeeds and every tag serves the whole image."""
        pushes = [
            ("app", "e2e/fan", "a"),
            ("app", "e2e/fan", "b"),
            ("app", "e2e/fan", "c"),
            ("app", "e2e/fan-other", "a"),
            ("tool", "e2e/fan", "tool"),
        ]
        running = [
            skopeo.spawn(
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                images.oci(source),
                docker_ref(cargobay, repository, tag),
            )
            for source, repository, tag in pushes
        ]
        try:
            errors = [process.communicate(timeout=SKOPEO_TIMEOUT)[1] for process in running]
        finally:
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.communicate(timeout=SKOPEO_TIMEOUT)
        assert [p.returncode for p in running] == [0] * len(pushes), errors

        assert skopeo.list_tags(f"docker://{cargobay.host}/e2e/fan") == ["a", "b", "c", "tool"]
        for tag in ("a", "b", "c"):
            assert_serves_image(skopeo, cargobay, "e2e/fan", tag, images.app, tmp_path)
        assert_serves_image(skopeo, cargobay, "e2e/fan-other", "a", images.app, tmp_path)
        assert_serves_image(skopeo, cargobay, "e2e/fan", "tool", images.tool, tmp_path)


class TestTags:
    def test_list_tags_returns_every_tag_in_lexical_order(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        tags = ["zeta", "1.0", "latest", "Beta", "v10", "v2", "alpha"]
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/tags", tags[0]))
        for tag in tags[1:]:
            skopeo.copy(
                docker_ref(cargobay, "e2e/tags", tags[0]), docker_ref(cargobay, "e2e/tags", tag)
            )

        assert skopeo.list_tags(f"docker://{cargobay.host}/e2e/tags") == sorted(tags)

    def test_retagging_moves_the_tag_to_the_new_manifest(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "stable"))
        skopeo.copy(images.oci("tool"), docker_ref(cargobay, "e2e/app", "stable"))

        assert skopeo.inspect_raw(docker_ref(cargobay, "e2e/app", "stable")) == (
            images.tool.manifest
        )
        # The old manifest is untagged, not gone.
        assert skopeo.inspect_raw(docker_ref(cargobay, "e2e/app", images.app.digest)) == (
            images.app.manifest
        )
        assert skopeo.list_tags(f"docker://{cargobay.host}/e2e/app") == ["stable"]

    def test_catalog_lists_every_repository_in_lexical_order(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        names = ["zoo/b", "app", "zoo/a", "a/b/c", "tool"]
        for name in names:
            skopeo.copy(images.oci("tool"), docker_ref(cargobay, name, "1"))

        status, _, body = http_get(cargobay, "/v2/_catalog")

        assert status == 200
        assert json.loads(body)["repositories"] == sorted(names)


class TestDelete:
    def test_delete_by_tag_removes_the_manifest_and_every_tag_pointing_at_it(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        """skopeo deletes a tag by resolving it and deleting the manifest's digest; the
        manifest and its tags go, a different image in the repository stays."""
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/del", "a"))
        skopeo.copy(docker_ref(cargobay, "e2e/del", "a"), docker_ref(cargobay, "e2e/del", "b"))
        skopeo.copy(images.oci("tool"), docker_ref(cargobay, "e2e/del", "c"))

        skopeo.delete(docker_ref(cargobay, "e2e/del", "a"))

        for gone in ("a", "b", images.app.digest):
            with pytest.raises(SkopeoError, match="manifest unknown"):
                skopeo.inspect_raw(docker_ref(cargobay, "e2e/del", gone))
        assert skopeo.list_tags(f"docker://{cargobay.host}/e2e/del") == ["c"]
        assert skopeo.inspect_raw(docker_ref(cargobay, "e2e/del", "c")) == images.tool.manifest

    def test_delete_by_digest_removes_the_manifest(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/del", "keep"))
        skopeo.copy(images.oci("tool"), docker_ref(cargobay, "e2e/del", "drop"))

        skopeo.delete(docker_ref(cargobay, "e2e/del", images.tool.digest))

        with pytest.raises(SkopeoError, match="manifest unknown"):
            skopeo.inspect_raw(docker_ref(cargobay, "e2e/del", "drop"))
        status, _, _ = http_get(
            cargobay, f"/v2/e2e/del/manifests/{images.tool.digest}", method="HEAD"
        )
        assert status == 404
        assert skopeo.list_tags(f"docker://{cargobay.host}/e2e/del") == ["keep"]
        assert skopeo.inspect_raw(docker_ref(cargobay, "e2e/del", "keep")) == images.app.manifest

    def test_deleted_image_can_be_pushed_again(
        self, cargobay: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/del", "again"))
        skopeo.delete(docker_ref(cargobay, "e2e/del", "again"))

        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/del", "again"))

        assert_serves_image(skopeo, cargobay, "e2e/del", "again", images.app, tmp_path)
