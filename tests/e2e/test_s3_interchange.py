"""Cargobay and CNCF Distribution 2.8 serve each other's content in one S3 bucket.

The S3 driver keeps Distribution's keys (`<rootdirectory>/docker/registry/v2/...`),
so one registry can take over a bucket the other wrote. Each test points both
at the same SeaweedFS bucket and prefix, pushes with skopeo to one registry,
stops it, starts the other and pulls everything back byte-identical: manifests
as `skopeo inspect --raw` shows them, and every blob over plain HTTP.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from registry.config import S3Config
from tests.e2e.checks import SourceImages, docker_ref, fetch_blob
from tests.e2e.processes import ServerFactory, ServerProcess, Skopeo
from tests.e2e.test_interchange import assert_serves_everything, push_everything
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def bucket(seaweedfs_s3: S3Server) -> S3Config:
    """A prefix of the SeaweedFS bucket no other test uses; both registries are given it."""
    return seaweedfs_s3.config(prefix=f"interchange-{uuid.uuid4().hex}")


def assert_serves_every_blob(server: ServerProcess, images: SourceImages) -> None:
    """Every config and layer of the pushed images, byte for byte, over plain HTTP."""
    for repository, image in (("team/app", images.app), ("team/app", images.tool)):
        for digest in image.blob_digests:
            fetch_blob(server, repository, digest)
    for image in images.multi.images:
        for digest in image.blob_digests:
            fetch_blob(server, "team/multi", digest)


def keys(server: S3Server, config: S3Config) -> list[str]:
    """Every key below the config's prefix."""
    pages = server.client.get_paginator("list_objects_v2").paginate(
        Bucket=config.bucket, Prefix=config.prefix + "/"
    )
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


class TestS3Interchange:
    def test_cargobay_serves_what_distribution_pushed_to_the_bucket(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
        tmp_path: Path,
    ) -> None:
        distribution = distribution_factory(s3=bucket)
        push_everything(skopeo, distribution, images)
        docker_manifest = skopeo.inspect_raw(docker_ref(distribution, "docker", "v2s2"))
        distribution.stop()
        # Distribution wrote where Cargobay's prefix says, in its own layout.
        tag_link = "docker/registry/v2/repositories/team/app/_manifests/tags/1.0/current/link"
        assert f"{bucket.prefix}/{tag_link}" in keys(seaweedfs_s3, bucket)

        cargobay = cargobay_factory(s3=bucket)

        assert_serves_everything(skopeo, cargobay, images, tmp_path)
        assert_serves_every_blob(cargobay, images)
        assert skopeo.inspect_raw(docker_ref(cargobay, "docker", "v2s2")) == docker_manifest

    def test_distribution_serves_what_cargobay_pushed_to_the_bucket(
        self,
        distribution_factory: ServerFactory,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
        tmp_path: Path,
    ) -> None:
        cargobay = cargobay_factory(s3=bucket)
        push_everything(skopeo, cargobay, images)
        docker_manifest = skopeo.inspect_raw(docker_ref(cargobay, "docker", "v2s2"))
        assert cargobay.stop() == 0, cargobay.log_tail()
        # No upload left anything behind that Distribution would have to understand.
        assert not [key for key in keys(seaweedfs_s3, bucket) if "/_uploads/" in key]

        distribution = distribution_factory(s3=bucket)

        assert_serves_everything(skopeo, distribution, images, tmp_path)
        assert_serves_every_blob(distribution, images)
        assert skopeo.inspect_raw(docker_ref(distribution, "docker", "v2s2")) == docker_manifest
