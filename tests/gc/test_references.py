"""The mark phase keeps everything each manifest format names, and knows an index's children."""

from __future__ import annotations

from registry.gc.references import references
from tests.manifest import samples as s

LAYER_DIGESTS = {d for d, _ in s.LAYERS}


class TestReferences:
    def test_oci_image_manifest_keeps_config_and_layers(self) -> None:
        found = references(s.oci_image_manifest())
        assert found.content == {s.CONFIG[0]} | LAYER_DIGESTS
        assert found.children == frozenset()
        assert found.subject is None

    def test_docker_schema2_keeps_config_layers_and_foreign_layers(self) -> None:
        foreign = s.ref(b"windows base layer")
        found = references(
            s.docker_manifest_v2(foreign_layers=[(foreign, ["https://example.com/layer"])])
        )
        assert found.content == {s.CONFIG[0], foreign[0]} | LAYER_DIGESTS

    def test_unsigned_schema1_keeps_every_blob_sum(self) -> None:
        assert references(s.docker_schema1_manifest()).content == LAYER_DIGESTS

    def test_signed_schema1_keeps_every_blob_sum(self) -> None:
        signed = s.sign_schema1(s.docker_schema1_manifest())
        assert references(signed).content == LAYER_DIGESTS

    def test_oci_index_children_are_content_and_children(self) -> None:
        children = [s.ref(s.oci_image_manifest(layers=[layer])) for layer in s.LAYERS]
        found = references(s.oci_image_index(children))
        assert found.children == {d for d, _ in children}
        assert found.content == found.children

    def test_docker_manifest_list_children_are_reached(self) -> None:
        children = [s.ref(s.docker_manifest_v2(layers=[layer])) for layer in s.LAYERS]
        found = references(s.docker_manifest_list(children))
        assert found.children == {d for d, _ in children}

    def test_artifact_with_subject_keeps_its_blobs_and_names_its_subject(self) -> None:
        image = s.ref(s.oci_image_manifest())
        sbom = s.ref(b"sbom")
        found = references(s.oci_artifact_manifest(layers=[sbom], subject=image))
        assert found.subject == image[0]
        assert {sbom[0], s.EMPTY_CONFIG[0], image[0]} <= found.content

    def test_buildkit_legacy_cache_index_entries_are_blobs_not_children(self) -> None:
        cache_config = s.ref(b"cache config")
        found = references(s.buildkit_cache_index(s.LAYERS, cache_config))
        assert found.content >= LAYER_DIGESTS | {cache_config[0]}
        assert found.children == frozenset()

    def test_buildkit_cache_as_manifest_keeps_cache_config_and_layers(self) -> None:
        cache_config = s.ref(b"cache config")
        found = references(s.buildkit_cache_manifest(s.LAYERS, cache_config))
        assert found.content == LAYER_DIGESTS | {cache_config[0]}

    def test_manifest_our_parser_refuses_still_keeps_every_digest_it_names(self) -> None:
        odd = b'{"schemaVersion": 3, "things": [{"digest": "%s"}]}' % s.CONFIG[0].encode()
        found = references(odd)
        assert found.content == {s.CONFIG[0]}
        assert found.children == {s.CONFIG[0]}

    def test_bytes_that_are_not_json_name_nothing(self) -> None:
        found = references(b"\x00\xffnot json")
        assert found.content == frozenset() and found.children == frozenset()
