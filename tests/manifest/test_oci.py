"""OCI image manifests and indexes: images, artifacts, referrers and BuildKit caches."""

from __future__ import annotations

import orjson
import pytest

from registry.digest import Digest
from registry.errors import ManifestInvalid
from registry.manifest import Descriptor, parse_manifest
from tests.manifest.samples import (
    BUILDKIT_CACHE_CONFIG,
    CONFIG,
    COSIGN_SIGNATURE,
    DOCKER_MANIFEST_LIST,
    EMPTY_CONFIG,
    LAYERS,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    OCI_NONDISTRIBUTABLE_LAYER,
    SBOM_SPDX,
    Ref,
    buildkit_cache_index,
    buildkit_cache_manifest,
    descriptor,
    oci_artifact_manifest,
    oci_image_index,
    oci_image_manifest,
    ref,
)


def digests(descriptors: tuple[Descriptor, ...]) -> list[str]:
    return [str(d.digest) for d in descriptors]


def refs(*labels: str) -> list[Ref]:
    return [ref(label.encode()) for label in labels]


class TestOciImageManifest:
    def test_oci_manifest_with_config_and_layers_lists_them_as_blobs(self) -> None:
        manifest = parse_manifest(oci_image_manifest(), OCI_MANIFEST)
        assert manifest.media_type == OCI_MANIFEST
        assert digests(manifest.blobs) == [CONFIG[0], *(digest for digest, _ in LAYERS)]
        assert manifest.blobs[0] == Descriptor(OCI_CONFIG, Digest.parse(CONFIG[0]), CONFIG[1])
        assert [b.size for b in manifest.blobs[1:]] == [size for _, size in LAYERS]
        assert manifest.manifests == ()
        assert manifest.subject is None
        assert manifest.canonical is None

    def test_artifact_type_of_an_image_is_its_config_media_type(self) -> None:
        manifest = parse_manifest(oci_image_manifest(), OCI_MANIFEST)
        assert manifest.artifact_type == OCI_CONFIG

    def test_top_level_and_layer_annotations_are_kept(self) -> None:
        body = oci_image_manifest(annotations={"org.opencontainers.image.version": "1.2.3"})
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert manifest.annotations == {"org.opencontainers.image.version": "1.2.3"}

    def test_manifest_without_media_type_field_is_accepted(self) -> None:
        body = orjson.loads(oci_image_manifest())
        del body["mediaType"]
        manifest = parse_manifest(orjson.dumps(body), OCI_MANIFEST)
        assert manifest.media_type == OCI_MANIFEST

    def test_manifest_without_layers_entries_has_only_its_config_as_blob(self) -> None:
        manifest = parse_manifest(oci_image_manifest(layers=[]), OCI_MANIFEST)
        assert digests(manifest.blobs) == [CONFIG[0]]

    def test_zstd_layers_are_blobs(self) -> None:
        body = oci_image_manifest(layers=LAYERS[:1], layer_media_type=OCI_LAYER_ZSTD)
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert manifest.blobs[1].media_type == OCI_LAYER_ZSTD

    def test_layer_repeated_is_listed_once(self) -> None:
        body = oci_image_manifest(layers=[LAYERS[0], LAYERS[1], LAYERS[0]])
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert digests(manifest.blobs) == [CONFIG[0], LAYERS[0][0], LAYERS[1][0]]

    def test_extra_fields_from_clients_are_ignored(self) -> None:
        body = orjson.loads(oci_image_manifest())
        body["x-vendor"] = {"anything": [1, 2]}
        body["layers"][0]["platform"] = {"os": "linux"}
        body["layers"][0]["data"] = "e30="
        assert parse_manifest(orjson.dumps(body), OCI_MANIFEST).media_type == OCI_MANIFEST

    def test_non_distributable_layer_with_urls_need_not_be_in_the_registry(self) -> None:
        body = orjson.loads(oci_image_manifest(layers=LAYERS[:1]))
        foreign = ref(b"windows base layer")
        body["layers"].insert(
            0,
            descriptor(OCI_NONDISTRIBUTABLE_LAYER, foreign, urls=["https://mcr.microsoft.com/l/x"]),
        )
        manifest = parse_manifest(orjson.dumps(body), OCI_MANIFEST)
        assert foreign[0] not in digests(manifest.blobs)
        assert digests(manifest.blobs) == [CONFIG[0], LAYERS[0][0]]

    def test_non_distributable_layer_without_urls_is_rejected(self) -> None:
        body = orjson.loads(oci_image_manifest())
        body["layers"][0]["mediaType"] = OCI_NONDISTRIBUTABLE_LAYER
        with pytest.raises(ManifestInvalid, match="urls"):
            parse_manifest(orjson.dumps(body), OCI_MANIFEST)

    @pytest.mark.parametrize("url", ["ftp://example.com/l", "https://example.com/l#frag", "x"])
    def test_non_distributable_layer_with_a_non_http_url_is_rejected(self, url: str) -> None:
        body = orjson.loads(oci_image_manifest())
        body["layers"][0].update(mediaType=OCI_NONDISTRIBUTABLE_LAYER, urls=[url])
        with pytest.raises(ManifestInvalid, match="http"):
            parse_manifest(orjson.dumps(body), OCI_MANIFEST)

    def test_ordinary_layer_with_urls_must_still_be_in_the_registry(self) -> None:
        body = orjson.loads(oci_image_manifest(layers=LAYERS[:1]))
        body["layers"][0]["urls"] = ["https://example.com/layer"]
        manifest = parse_manifest(orjson.dumps(body), OCI_MANIFEST)
        assert LAYERS[0][0] in digests(manifest.blobs)


class TestOciArtifacts:
    def test_oras_artifact_with_empty_config_reports_its_artifact_type(self) -> None:
        manifest = parse_manifest(oci_artifact_manifest(SBOM_SPDX), OCI_MANIFEST)
        assert manifest.artifact_type == SBOM_SPDX
        assert manifest.blobs[0] == Descriptor(OCI_EMPTY, Digest.parse(EMPTY_CONFIG[0]), 2)
        assert manifest.annotations == {"org.opencontainers.image.created": "2024-05-14T09:12:44Z"}

    def test_layer_annotations_are_kept_on_the_descriptor(self) -> None:
        manifest = parse_manifest(oci_artifact_manifest(), OCI_MANIFEST)
        assert manifest.blobs[1].annotations == {"org.opencontainers.image.title": "artifact-0"}

    def test_referrer_artifact_exposes_its_subject(self) -> None:
        image = oci_image_manifest()
        body = oci_artifact_manifest(COSIGN_SIGNATURE, subject=ref(image))
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert manifest.subject == Descriptor(OCI_MANIFEST, Digest.parse(ref(image)[0]), len(image))
        assert manifest.artifact_type == COSIGN_SIGNATURE
        assert ref(image)[0] not in digests(manifest.blobs)

    def test_artifact_without_artifact_type_falls_back_to_config_media_type(self) -> None:
        body = oci_image_manifest(
            config=EMPTY_CONFIG, config_media_type="application/vnd.acme.rocket.config"
        )
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert manifest.artifact_type == "application/vnd.acme.rocket.config"

    def test_image_with_subject_and_artifact_type_uses_the_artifact_type(self) -> None:
        body = oci_image_manifest(artifact_type=SBOM_SPDX, subject=ref(b"some image"))
        manifest = parse_manifest(body, OCI_MANIFEST)
        assert manifest.artifact_type == SBOM_SPDX
        assert manifest.subject is not None

    def test_buildkit_manifest_cache_with_cacheconfig_config_is_accepted(self) -> None:
        cache_config = ref(b'{"layers":[],"records":[]}')
        layers = refs("cached 1", "cached 2")
        manifest = parse_manifest(buildkit_cache_manifest(layers, cache_config), OCI_MANIFEST)
        assert manifest.artifact_type == BUILDKIT_CACHE_CONFIG
        assert digests(manifest.blobs) == [cache_config[0], *(d for d, _ in layers)]

    def test_subject_with_a_bad_digest_is_rejected(self) -> None:
        body = orjson.loads(oci_artifact_manifest(subject=ref(b"image")))
        body["subject"]["digest"] = "sha256:nothex"
        with pytest.raises(ManifestInvalid, match="subject"):
            parse_manifest(orjson.dumps(body), OCI_MANIFEST)

    def test_empty_artifact_type_is_rejected(self) -> None:
        body = orjson.loads(oci_artifact_manifest())
        body["artifactType"] = ""
        with pytest.raises(ManifestInvalid, match="artifactType"):
            parse_manifest(orjson.dumps(body), OCI_MANIFEST)


class TestOciIndex:
    def test_index_entries_with_manifest_media_types_are_manifests(self) -> None:
        children = refs("amd64 manifest", "arm64 manifest")
        manifest = parse_manifest(oci_image_index(children), OCI_INDEX)
        assert manifest.media_type == OCI_INDEX
        assert digests(manifest.manifests) == [d for d, _ in children]
        assert manifest.blobs == ()
        assert manifest.artifact_type is None

    def test_index_of_indexes_lists_children_as_manifests(self) -> None:
        body = oci_image_index(refs("inner index"), media_type=OCI_INDEX)
        manifest = parse_manifest(body, OCI_INDEX)
        assert manifest.manifests[0].media_type == OCI_INDEX

    def test_empty_index_is_accepted(self) -> None:
        manifest = parse_manifest(oci_image_index([]), OCI_INDEX)
        assert manifest.manifests == ()

    def test_index_with_artifact_type_subject_and_annotations_exposes_them(self) -> None:
        body = oci_image_index(
            refs("sig"),
            artifact_type=COSIGN_SIGNATURE,
            subject=ref(b"image"),
            annotations={"org.opencontainers.image.ref.name": "v1"},
        )
        manifest = parse_manifest(body, OCI_INDEX)
        assert manifest.artifact_type == COSIGN_SIGNATURE
        assert manifest.subject is not None
        assert manifest.subject.digest == Digest.parse(ref(b"image")[0])
        assert manifest.annotations == {"org.opencontainers.image.ref.name": "v1"}

    def test_index_without_media_type_field_is_accepted(self) -> None:
        body = orjson.loads(oci_image_index(refs("a")))
        del body["mediaType"]
        assert parse_manifest(orjson.dumps(body), OCI_INDEX).media_type == OCI_INDEX

    def test_index_entry_with_negative_size_is_rejected(self) -> None:
        body = orjson.loads(oci_image_index(refs("a")))
        body["manifests"][0]["size"] = -1
        with pytest.raises(ManifestInvalid, match=r"manifests\[0\]\.size"):
            parse_manifest(orjson.dumps(body), OCI_INDEX)


class TestBuildKitLegacyCache:
    def test_legacy_cache_index_lists_its_entries_as_blobs(self) -> None:
        layers = refs("cached layer 1", "cached layer 2")
        cache_config = ref(b'{"layers":[],"records":[]}')
        manifest = parse_manifest(buildkit_cache_index(layers, cache_config), OCI_INDEX)
        assert manifest.manifests == ()
        assert digests(manifest.blobs) == [*(d for d, _ in layers), cache_config[0]]
        assert manifest.blobs[-1].media_type == BUILDKIT_CACHE_CONFIG
        assert manifest.blobs[0].annotations is not None
        assert "buildkit/createdat" in manifest.blobs[0].annotations

    def test_legacy_cache_as_docker_manifest_list_lists_its_entries_as_blobs(self) -> None:
        layers = refs("cached layer")
        cache_config = ref(b'{"layers":[],"records":[]}')
        body = buildkit_cache_index(
            layers,
            cache_config,
            media_type=DOCKER_MANIFEST_LIST,
            layer_media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
        manifest = parse_manifest(body, DOCKER_MANIFEST_LIST)
        assert manifest.media_type == DOCKER_MANIFEST_LIST
        assert digests(manifest.blobs) == [layers[0][0], cache_config[0]]
        assert manifest.manifests == ()

    def test_index_mixing_manifests_and_blobs_splits_them(self) -> None:
        body = orjson.loads(oci_image_index(refs("image")))
        body["manifests"].append(descriptor(OCI_LAYER, ref(b"loose layer")))
        manifest = parse_manifest(orjson.dumps(body), OCI_INDEX)
        assert digests(manifest.manifests) == [ref(b"image")[0]]
        assert digests(manifest.blobs) == [ref(b"loose layer")[0]]
