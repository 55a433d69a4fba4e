"""The shared entry: choosing the format, rejecting malformed bodies, detecting stored types."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from registry.errors import ManifestInvalid
from registry.manifest import (
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    detect_media_type,
    parse_manifest,
)
from tests.manifest.samples import (
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    EXAMPLES,
    OCI_INDEX,
    OCI_MANIFEST,
    docker_manifest_v2,
    docker_schema1_manifest,
    oci_image_index,
    oci_image_manifest,
    ref,
)

EVERY_FORMAT = list(EXAMPLES.values())
FORMAT_IDS = list(EXAMPLES)


def with_fields(body: bytes, **fields: Any) -> bytes:
    return orjson.dumps({**orjson.loads(body), **fields})


def without(body: bytes, field: str) -> bytes:
    document = orjson.loads(body)
    del document[field]
    return orjson.dumps(document)


class TestPublicApi:
    def test_manifest_media_types_are_the_six_formats(self) -> None:
        six = {
            DOCKER_SCHEMA1,
            DOCKER_SCHEMA1_SIGNED,
            DOCKER_SCHEMA2,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            OCI_INDEX,
        }
        assert six == MANIFEST_MEDIA_TYPES

    def test_max_manifest_size_is_4_mib(self) -> None:
        assert MAX_MANIFEST_SIZE == 4 * 1024 * 1024

    @pytest.mark.parametrize(("body", "content_type"), EVERY_FORMAT, ids=FORMAT_IDS)
    def test_every_format_is_served_as_detected_from_its_bytes(
        self, body: bytes, content_type: str
    ) -> None:
        """What storage detects after a restart is what was accepted at push."""
        manifest = parse_manifest(body, content_type)
        assert manifest.media_type == content_type
        assert detect_media_type(body) == content_type


class TestContentType:
    @pytest.mark.parametrize(("body", "content_type"), EVERY_FORMAT, ids=FORMAT_IDS)
    @pytest.mark.parametrize(
        "generic", [None, "", "application/json", "application/octet-stream; q=1"]
    )
    def test_missing_or_generic_content_type_falls_back_to_detection(
        self, body: bytes, content_type: str, generic: str | None
    ) -> None:
        assert parse_manifest(body, generic).media_type == content_type

    def test_parameters_and_case_are_ignored(self) -> None:
        content_type = "Application/VND.oci.image.manifest.v1+json ; charset=utf-8"
        assert parse_manifest(oci_image_manifest(), content_type).media_type == OCI_MANIFEST

    def test_media_type_contradicting_content_type_is_rejected(self) -> None:
        with pytest.raises(ManifestInvalid, match="does not match"):
            parse_manifest(oci_image_manifest(), DOCKER_SCHEMA2)

    def test_index_pushed_as_manifest_is_rejected(self) -> None:
        with pytest.raises(ManifestInvalid, match="does not match"):
            parse_manifest(oci_image_index([ref(b"a")]), OCI_MANIFEST)

    def test_index_without_media_type_pushed_as_manifest_is_rejected(self) -> None:
        body = without(oci_image_index([ref(b"a")]), "mediaType")
        with pytest.raises(ManifestInvalid, match="reads as"):
            parse_manifest(body, OCI_MANIFEST)

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/vnd.oci.artifact.manifest.v1+json", "garbage"],
    )
    def test_unknown_content_type_is_rejected_as_unsupported(self, content_type: str) -> None:
        with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
            parse_manifest(oci_image_manifest(), content_type)

    def test_unknown_media_type_in_body_with_generic_content_type_is_unsupported(self) -> None:
        body = with_fields(oci_image_manifest(), mediaType="application/vnd.acme.manifest+json")
        with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
            parse_manifest(body, "application/json")

    @pytest.mark.parametrize("media_type", [5, "", None, ["a/b"], "not a media type"])
    def test_malformed_media_type_field_is_rejected(self, media_type: Any) -> None:
        body = with_fields(oci_image_manifest(), mediaType=media_type)
        with pytest.raises(ManifestInvalid):
            parse_manifest(body, OCI_MANIFEST)


class TestRejections:
    def test_manifest_over_4_mib_is_rejected(self) -> None:
        body = with_fields(oci_image_manifest(), pad="x" * MAX_MANIFEST_SIZE)
        with pytest.raises(ManifestInvalid, match="limit"):
            parse_manifest(body, OCI_MANIFEST)

    @pytest.mark.parametrize(
        "body",
        [b"", b"{not json", b'{"a": 1} trailing', b"\xff\xfe{}", b'{"a": "\xff"}', b"{'a': 1}"],
    )
    def test_bytes_that_are_not_utf8_json_are_rejected(self, body: bytes) -> None:
        with pytest.raises(ManifestInvalid, match="not valid JSON"):
            parse_manifest(body, OCI_MANIFEST)

    @pytest.mark.parametrize("body", [b"[]", b'"manifest"', b"2", b"null", b"true"])
    def test_json_that_is_not_an_object_is_rejected(self, body: bytes) -> None:
        with pytest.raises(ManifestInvalid, match="not a JSON object"):
            parse_manifest(body, OCI_MANIFEST)

    def test_json_nested_deeper_than_orjson_allows_is_rejected(self) -> None:
        deep = b'{"schemaVersion":2,"x":' + b"[" * 2000 + b"]" * 2000 + b"}"
        with pytest.raises(ManifestInvalid, match="not valid JSON"):
            parse_manifest(deep, OCI_MANIFEST)

    @pytest.mark.parametrize("version", [1, 3, "2", True, None, 2.5])
    def test_wrong_schema_version_is_rejected(self, version: Any) -> None:
        with pytest.raises(ManifestInvalid, match="schemaVersion"):
            parse_manifest(with_fields(oci_image_manifest(), schemaVersion=version), OCI_MANIFEST)

    @pytest.mark.parametrize(
        ("body", "content_type", "field"),
        [
            (oci_image_manifest(), OCI_MANIFEST, "config"),
            (oci_image_manifest(), OCI_MANIFEST, "layers"),
            (oci_image_manifest(), OCI_MANIFEST, "schemaVersion"),
            (oci_image_index([ref(b"a")]), OCI_INDEX, "schemaVersion"),
            (docker_manifest_v2(), DOCKER_SCHEMA2, "config"),
            (docker_manifest_v2(), DOCKER_SCHEMA2, "layers"),
            (docker_schema1_manifest(), DOCKER_SCHEMA1, "fsLayers"),
            (docker_schema1_manifest(), DOCKER_SCHEMA1, "name"),
        ],
    )
    def test_missing_required_field_is_rejected(
        self, body: bytes, content_type: str, field: str
    ) -> None:
        with pytest.raises(ManifestInvalid, match=field):
            parse_manifest(without(body, field), content_type)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("digest", "sha256:" + "a" * 63),
            ("digest", "sha256:" + "A" * 64),
            ("digest", "md5:d41d8cd98f00b204e9800998ecf8427e"),
            ("digest", "not a digest"),
            ("digest", 42),
            ("size", -1),
            ("size", 1.5),
            ("size", "12"),
            ("size", 2**64),
            ("mediaType", 7),
            ("mediaType", "no slash"),
            ("annotations", {"key": 1}),
            ("annotations", ["a"]),
            ("urls", "https://example.com"),
        ],
    )
    def test_malformed_layer_descriptor_field_is_rejected(self, field: str, value: Any) -> None:
        document = orjson.loads(oci_image_manifest())
        document["layers"][1][field] = value
        # The stdlib encoder, since orjson refuses to write integers past 64 bits.
        with pytest.raises(ManifestInvalid, match=rf"layers\[1\]\.{field}"):
            parse_manifest(json.dumps(document).encode(), OCI_MANIFEST)

    def test_descriptor_missing_its_digest_is_rejected(self) -> None:
        document = orjson.loads(oci_image_manifest())
        del document["config"]["digest"]
        with pytest.raises(ManifestInvalid, match="config"):
            parse_manifest(orjson.dumps(document), OCI_MANIFEST)

    def test_sha512_digests_are_accepted(self) -> None:
        document = orjson.loads(oci_image_manifest())
        document["layers"][0]["digest"] = "sha512:" + "ab" * 64
        manifest = parse_manifest(orjson.dumps(document), OCI_MANIFEST)
        assert manifest.blobs[1].digest.algorithm == "sha512"

    def test_layers_that_are_not_a_list_are_rejected(self) -> None:
        body = with_fields(oci_image_manifest(), layers={"0": {}})
        with pytest.raises(ManifestInvalid, match="layers"):
            parse_manifest(body, OCI_MANIFEST)

    def test_top_level_annotations_with_non_string_values_are_rejected(self) -> None:
        body = with_fields(oci_image_manifest(), annotations={"a": None})
        with pytest.raises(ManifestInvalid, match="annotations"):
            parse_manifest(body, OCI_MANIFEST)

    def test_digest_errors_carry_the_field_in_their_detail(self) -> None:
        document = orjson.loads(oci_image_manifest())
        document["config"]["digest"] = "sha256:short"
        with pytest.raises(ManifestInvalid) as raised:
            parse_manifest(orjson.dumps(document), OCI_MANIFEST)
        assert raised.value.detail == {"field": "config.digest"}


class TestDetectMediaType:
    def test_media_type_field_wins(self) -> None:
        assert detect_media_type(b'{"mediaType":"application/vnd.acme+json"}') == (
            "application/vnd.acme+json"
        )

    @pytest.mark.parametrize(
        ("document", "expected"),
        [
            ({"schemaVersion": 1, "fsLayers": []}, DOCKER_SCHEMA1),
            ({"schemaVersion": 1, "signatures": []}, DOCKER_SCHEMA1_SIGNED),
            ({"schemaVersion": 2, "manifests": []}, OCI_INDEX),
            ({"schemaVersion": 2, "config": {}}, OCI_MANIFEST),
            ({}, OCI_MANIFEST),
            ({"schemaVersion": True, "signatures": []}, OCI_MANIFEST),
        ],
    )
    def test_without_media_type_the_shape_decides(
        self, document: dict[str, Any], expected: str
    ) -> None:
        assert detect_media_type(orjson.dumps(document)) == expected

    @pytest.mark.parametrize("media_type", [None, 3, "", "bad\nvalue/x", "a/b; charset=x"])
    def test_media_type_field_unfit_for_a_header_is_ignored(self, media_type: Any) -> None:
        body = orjson.dumps({"mediaType": media_type, "manifests": []})
        assert detect_media_type(body) == OCI_INDEX

    @pytest.mark.parametrize("body", [b"", b"\x00\x01", b"{", b"[]", b"1"])
    def test_non_object_bytes_raise_manifest_invalid(self, body: bytes) -> None:
        with pytest.raises(ManifestInvalid):
            detect_media_type(body)
