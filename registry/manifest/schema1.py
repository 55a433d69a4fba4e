"""Docker image manifest schema 1, unsigned (`v1+json`) and signed (`v1+prettyjws`).

A signed manifest is the unsigned one with a `signatures` array spliced in
before its closing brace, in libtrust's "pretty JWS" form. Its identity is the
digest of the JWS payload, recovered as libtrust does from the signatures'
protected header: `data[:formatLength] + base64url_decode(formatTail)`.
The references are read from that payload, which is what Docker pulls and
verifies, not from the bytes around it.

Every signature is verified against the key in its own header (`jws`), as
Distribution 2.8 does: a signature that does not hold is `ManifestUnverified`.
The keys are self-signed, which Distribution accepts in a trust-on-first-use
spirit, and so do we.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from registry.errors import ManifestInvalid
from registry.manifest.descriptor import Descriptor, Manifest, parse_digest, unique
from registry.manifest.jws import verify_signature
from registry.manifest.mediatypes import DOCKER_SCHEMA1, DOCKER_SCHEMA1_LAYER, DOCKER_SCHEMA1_SIGNED
from registry.manifest.validation import compile_schema, load_object

_check_payload = compile_schema(
    {
        "type": "object",
        "required": ["schemaVersion", "name", "fsLayers", "history"],
        "properties": {
            "schemaVersion": {"type": "integer", "enum": [1]},
            "name": {"type": "string", "minLength": 1},
            "tag": {"type": "string"},
            "architecture": {"type": "string"},
            "fsLayers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["blobSum"],
                    "properties": {"blobSum": {"type": "string"}},
                },
            },
            "history": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["v1Compatibility"],
                    "properties": {"v1Compatibility": {"type": "string"}},
                },
            },
        },
    },
    "Docker schema1 manifest",
)

_check_signatures = compile_schema(
    {
        "type": "object",
        "required": ["signatures"],
        "properties": {
            "signatures": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["header", "signature", "protected"],
                    "properties": {
                        "header": {
                            "type": "object",
                            "required": ["alg"],
                            "properties": {
                                "alg": {"type": "string", "minLength": 1},
                                "jwk": {"type": "object"},
                                "x5c": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "string"},
                                },
                            },
                            # libtrust verifies with the embedded key or certificate chain.
                            "anyOf": [{"required": ["jwk"]}, {"required": ["x5c"]}],
                        },
                        "signature": {"type": "string", "minLength": 1},
                        "protected": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
    },
    "Docker schema1 signature",
)

_check_protected = compile_schema(
    {
        "type": "object",
        "required": ["formatLength", "formatTail"],
        "properties": {
            "formatLength": {"type": "integer", "minimum": 0},
            "formatTail": {"type": "string"},
        },
    },
    "Docker schema1 signature",
    root="protected",
)

_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def parse_unsigned(document: dict[str, Any]) -> Manifest:
    """Check a decoded unsigned schema1 manifest and list its blobs; raise `ManifestInvalid`."""
    return Manifest(
        media_type=DOCKER_SCHEMA1,
        blobs=_layers(document),
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=None,
    )


def parse_signed(document: dict[str, Any], data: bytes) -> Manifest:
    """Check a signed schema1 manifest (`document` decoded from `data`); raise `ManifestInvalid`.

    The result's `canonical` is the JWS payload, whose digest is the manifest's.
    Every signature must describe the same payload, as libtrust requires, and
    hold for it: else `ManifestUnverified` (a `ManifestInvalid`).
    """
    _check_signatures(document)
    formats = {
        _payload_format(signature, f"signatures[{i}]")
        for i, signature in enumerate(document["signatures"])
    }
    if len(formats) != 1:
        raise ManifestInvalid("schema1 signatures disagree on the signed payload")
    ((length, tail),) = formats
    if length > len(data):
        raise ManifestInvalid("schema1 signature's formatLength is past the end of the manifest")
    canonical = data[:length] + tail
    blobs = _layers(load_object(canonical, "signed payload"))
    # Checked last: a malformed manifest is told so before any costly signature check.
    for i, signature in enumerate(document["signatures"]):
        verify_signature(signature, canonical, f"signatures[{i}]")
    return Manifest(
        media_type=DOCKER_SCHEMA1_SIGNED,
        blobs=blobs,
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=None,
        canonical=canonical,
    )


def _layers(payload: dict[str, Any]) -> tuple[Descriptor, ...]:
    _check_payload(payload)
    fs_layers, history = payload["fsLayers"], payload["history"]
    # Docker pairs each layer with its history entry and refuses to pull otherwise.
    if len(fs_layers) != len(history):
        raise ManifestInvalid(
            f"schema1 manifest has {len(fs_layers)} fsLayers but {len(history)} history entries"
        )
    return unique(
        [
            Descriptor(DOCKER_SCHEMA1_LAYER, parse_digest(layer["blobSum"], f"fsLayers[{i}]"), 0)
            for i, layer in enumerate(fs_layers)
        ]
    )


def _payload_format(signature: dict[str, Any], where: str) -> tuple[int, bytes]:
    """`(formatLength, decoded formatTail)` from a signature's protected header."""
    _base64url_decode(signature["signature"], f"{where}.signature")
    header = load_object(
        _base64url_decode(signature["protected"], f"{where}.protected"), f"{where}.protected"
    )
    _check_protected(header)
    tail = _base64url_decode(header["formatTail"], f"{where}.protected.formatTail")
    return int(header["formatLength"]), tail


def _base64url_decode(text: str, where: str) -> bytes:
    # As libtrust: padding is optional, and any other character than the URL alphabet is refused.
    text = text.rstrip("=")
    if not _BASE64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ManifestInvalid(f"{where} is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
