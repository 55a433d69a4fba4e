"""Cargobay and CNCF Distribution 2.8 serve each other's filesystem roots.

Both use Distribution's storage layout (`docker/registry/v2/...`), so a
deployment can switch from one to the other, in either direction, without
migrating data. Each test pushes with skopeo to one registry, stops it, starts
the other on the same root and pulls everything back.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

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
from tests.e2e.processes import CARGOBAY, ServerFactory, ServerProcess, Skopeo, SkopeoError

pytestmark = pytest.mark.e2e


def push_everything(skopeo: Skopeo, server: ServerProcess, images: SourceImages) -> None:
    """Two images under three tags in one repository, an index in another, and a Docker
    schema2 image in a third."""
    skopeo.copy(images.oci("app"), docker_ref(server, "team/app", "1.0"))
    skopeo.copy(docker_ref(server, "team/app", "1.0"), docker_ref(server, "team/app", "latest"))
    skopeo.copy(images.oci("tool"), docker_ref(server, "team/app", "tool"))
    skopeo.copy(images.oci("multi"), docker_ref(server, "team/multi", "2024"), "--all")
    skopeo.copy(images.oci("tool"), docker_ref(server, "docker", "v2s2"), "--format", "v2s2")


def assert_serves_everything(
    skopeo: Skopeo, server: ServerProcess, images: SourceImages, workdir: Path
) -> None:
    """What `push_everything` pushed is all there, byte-identical."""
    for tag in ("1.0", "latest"):
        assert_serves_image(skopeo, server, "team/app", tag, images.app, workdir / server.name)
    assert_serves_image(skopeo, server, "team/app", "tool", images.tool, workdir / server.name)
    assert_serves_index(skopeo, server, "team/multi", "2024", images.multi, workdir / server.name)
    # Distribution 2.8 lists tags unsorted, so only the set is compared.
    assert sorted(skopeo.list_tags(f"docker://{server.host}/team/app")) == [
        "1.0",
        "latest",
        "tool",
    ]
    assert skopeo.list_tags(f"docker://{server.host}/team/multi") == ["2024"]
    assert skopeo.list_tags(f"docker://{server.host}/docker") == ["v2s2"]
    for digest in images.tool.blob_digests:
        fetch_blob(server, "docker", digest)
    status, _, body = http_get(server, "/v2/_catalog")
    assert status == 200
    assert sorted(json.loads(body)["repositories"]) == ["docker", "team/app", "team/multi"]


class TestDistributionToCargobay:
    def test_cargobay_serves_a_root_written_by_distribution(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        distribution = distribution_factory()
        push_everything(skopeo, distribution, images)
        docker_manifest = skopeo.inspect_raw(docker_ref(distribution, "docker", "v2s2"))
        distribution.stop()

        cargobay = cargobay_factory(root=distribution.root)

        assert_serves_everything(skopeo, cargobay, images, tmp_path)
        assert skopeo.inspect_raw(docker_ref(cargobay, "docker", "v2s2")) == docker_manifest

    def test_cargobay_can_delete_and_push_on_a_root_written_by_distribution(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """Taking over a Distribution root is not read-only: tags can be deleted and new
        images pushed, and Distribution sees the result when it takes the root back."""
        distribution = distribution_factory()
        push_everything(skopeo, distribution, images)
        distribution.stop()

        cargobay = cargobay_factory(root=distribution.root)
        skopeo.delete(docker_ref(cargobay, "team/app", "tool"))
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "team/new", "1.0"))
        cargobay.stop()

        distribution.start()
        assert sorted(skopeo.list_tags(f"docker://{distribution.host}/team/app")) == [
            "1.0",
            "latest",
        ]
        with pytest.raises(SkopeoError, match="manifest unknown"):
            skopeo.inspect_raw(docker_ref(distribution, "team/app", images.tool.digest))
        assert_serves_image(skopeo, distribution, "team/new", "1.0", images.app, tmp_path)

    def test_cargobay_honours_distribution_deletes_and_ignores_its_unfinished_uploads(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
    ) -> None:
        """Distribution's delete leaves an empty revision directory behind and an
        interrupted upload leaves `_uploads/<id>/` with hash states; neither shows up as
        content in Cargobay."""
        distribution = distribution_factory()
        push_everything(skopeo, distribution, images)
        skopeo.delete(docker_ref(distribution, "team/app", "tool"))
        status, headers, _ = http_get(distribution, "/v2/team/app/blobs/uploads/", method="POST")
        assert status == 202
        location = urljoin(distribution.url, headers["Location"])
        request = urllib.request.Request(
            location,
            data=b"x" * 1000,
            method="PATCH",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        distribution.stop()

        cargobay = cargobay_factory(root=distribution.root)

        assert skopeo.list_tags(f"docker://{cargobay.host}/team/app") == ["1.0", "latest"]
        with pytest.raises(SkopeoError, match="manifest unknown"):
            skopeo.inspect_raw(docker_ref(cargobay, "team/app", images.tool.digest))
        assert skopeo.inspect_raw(docker_ref(cargobay, "team/app", "1.0")) == images.app.manifest
        junk = sha256_digest(b"x" * 1000)
        assert http_get(cargobay, f"/v2/team/app/blobs/{junk}", method="HEAD")[0] == 404


class TestCargobayToDistribution:
    def test_distribution_serves_a_root_written_by_cargobay(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        cargobay = cargobay_factory()
        push_everything(skopeo, cargobay, images)
        docker_manifest = skopeo.inspect_raw(docker_ref(cargobay, "docker", "v2s2"))
        assert cargobay.stop() == 0, cargobay.log_tail()

        distribution = distribution_factory(root=cargobay.root)

        assert_serves_everything(skopeo, distribution, images, tmp_path)
        assert skopeo.inspect_raw(docker_ref(distribution, "docker", "v2s2")) == docker_manifest

    def test_distribution_serves_every_kept_image_after_our_collection(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        """`cargobay gc --delete-untagged` frees a deleted image and an orphaned blob, and
        leaves everything Distribution needs to serve the rest."""
        cargobay = cargobay_factory()
        push_everything(skopeo, cargobay, images)
        skopeo.delete(docker_ref(cargobay, "team/app", images.tool.digest))
        assert cargobay.stop() == 0, cargobay.log_tail()
        orphan = b"uploaded, never referenced"
        orphan_path = cargobay.root / "docker/registry/v2/blobs/sha256" / sha256_digest(orphan)[7:9]
        (orphan_path / sha256_digest(orphan)[7:]).mkdir(parents=True)
        (orphan_path / sha256_digest(orphan)[7:] / "data").write_bytes(orphan)

        config = cargobay.argv[cargobay.argv.index("--config") + 1]
        result = subprocess.run(
            [
                str(CARGOBAY),
                "gc",
                "--config",
                config,
                "--grace",
                "0",
                "--delete-untagged",
                "--json",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        report = json.loads(result.stdout)
        assert report["freed"]["blobs"]["count"] >= 2  # the orphan and the tool's manifest
        assert not (orphan_path / sha256_digest(orphan)[7:]).exists()

        distribution = distribution_factory(root=cargobay.root)
        for tag in ("1.0", "latest"):
            assert_serves_image(skopeo, distribution, "team/app", tag, images.app, tmp_path)
        assert_serves_index(skopeo, distribution, "team/multi", "2024", images.multi, tmp_path)
        skopeo.copy(docker_ref(distribution, "docker", "v2s2"), f"oci:{tmp_path / 'v2s2'}:v2s2")
        for digest in images.tool.blob_digests:
            fetch_blob(distribution, "docker", digest)
        with pytest.raises(SkopeoError, match="manifest unknown"):
            skopeo.inspect_raw(docker_ref(distribution, "team/app", images.tool.digest))
