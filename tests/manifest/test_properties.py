"""Property tests: whatever a client sends, parsing ends in a `Manifest` or a registry error."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import ManifestInvalid, Unsupported
from registry.manifest import MANIFEST_MEDIA_TYPES, detect_media_type, parse_manifest
from tests.manifest.samples import EXAMPLES

CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            *sorted(MANIFEST_MEDIA_TYPES),
            *["", "application/json", "application/octet-stream", "text/plain", "a/b; c=d"],
        ]
    ),
    st.text(max_size=40),
)

# Field names the parsers look at, so generated objects reach past the first checks.
KEYS = st.one_of(
    st.sampled_from(
        [
            "schemaVersion",
            "mediaType",
            "config",
            "layers",
            "manifests",
            "subject",
            "artifactType",
            "annotations",
            "digest",
            "size",
            "urls",
            "fsLayers",
            "blobSum",
            "history",
            "name",
            "signatures",
            "header",
            "protected",
            "signature",
            "alg",
            "jwk",
        ]
    ),
    st.text(max_size=10),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from([*sorted(MANIFEST_MEDIA_TYPES), "sha256:" + "a" * 64, 1, 2]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=6)
    ),
    max_leaves=30,
)


def parses_or_rejects(data: bytes, content_type: str | None) -> None:
    """The property: a Manifest consistent with its bytes, or ManifestInvalid/Unsupported."""
    try:
        manifest = parse_manifest(data, content_type)
    except (ManifestInvalid, Unsupported):
        return
    assert manifest.media_type in MANIFEST_MEDIA_TYPES
    assert detect_media_type(data) == manifest.media_type


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[bytes, str]:
    """A realistic body with one value somewhere inside replaced or removed."""
    body, content_type = draw(st.sampled_from(list(EXAMPLES.values())))
    document = orjson.loads(body)
    node: Any = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and draw(st.booleans()):
            node = node[key]
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON_VALUES)
        break
    return orjson.dumps(document), content_type


class TestParseNeverFailsOtherwise:
    @given(st.binary(max_size=300), CONTENT_TYPES)
    def test_arbitrary_bytes_parse_or_raise_manifest_invalid(
        self, data: bytes, content_type: str | None
    ) -> None:
        parses_or_rejects(data, content_type)

    @given(JSON_VALUES, CONTENT_TYPES)
    def test_arbitrary_json_parses_or_raises_manifest_invalid(
        self, value: Any, content_type: str | None
    ) -> None:
        parses_or_rejects(orjson.dumps(value), content_type)

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_examples(), st.booleans())
    def test_mutated_real_manifests_parse_or_raise_manifest_invalid(
        self, example: tuple[bytes, str], generic: bool
    ) -> None:
        data, content_type = example
        parses_or_rejects(data, None if generic else content_type)


class TestDetectNeverFailsOnObjects:
    @given(st.dictionaries(KEYS, JSON_VALUES, max_size=6))
    def test_any_json_object_has_a_media_type(self, document: dict[str, Any]) -> None:
        assert detect_media_type(orjson.dumps(document))
