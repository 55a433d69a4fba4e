"""Realistic manifest bodies as docker, skopeo, BuildKit and ORAS push them, for every test package.

Each builder takes references as `Ref` pairs `(digest, size)` and returns the
exact bytes a client would PUT, formatted the way that client formats them.
The defaults make a plausible image, so `oci_image_manifest()` alone is a
valid body; pass the refs of blobs you pushed to make one a registry accepts.

    config = ref(b'{"architecture":"amd64","os":"linux"}')
    body = oci_image_manifest(config=config, layers=[ref(b"layer")])
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Ref = tuple[str, int]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
BUILDKIT_CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
COSIGN_SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"
SBOM_SPDX = "application/spdx+json"


def digest_of(data: bytes) -> str:
    """The sha256 digest string of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ref(data: bytes) -> Ref:
    """The `(digest, size)` of a blob with content `data`."""
    return digest_of(data), len(data)


def _made_up(label: str, size: int) -> Ref:
    return digest_of(label.encode()), size


#: The empty JSON object every ORAS artifact uses as its config.
EMPTY_CONFIG: Ref = ref(b"{}")
CONFIG: Ref = _made_up("debian:bookworm-slim config", 1463)
LAYERS: tuple[Ref, ...] = (
    _made_up("debian:bookworm-slim rootfs", 29126484),
    _made_up("app layer: /usr/local/bin", 4613279),
    _made_up("app layer: /etc/app.toml", 412),
)
PLATFORMS: tuple[dict[str, str], ...] = (
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
)


def descriptor(media_type: str, target: Ref, **extra: Any) -> dict[str, Any]:
    """A descriptor object, with `extra` fields such as `platform` or `annotations`."""
    digest, size = target
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_image_manifest(
    config: Ref = CONFIG,
    layers: Sequence[Ref] = LAYERS,
    *,
    config_media_type: str = OCI_CONFIG,
    layer_media_type: str = OCI_LAYER,
    artifact_type: str | None = None,
    subject: Ref | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An OCI image manifest as BuildKit writes it (two-space indent)."""
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_media_type, config),
        "layers": [descriptor(layer_media_type, layer) for layer in layers],
    }
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if subject is not None:
        body["subject"] = descriptor(OCI_MANIFEST, subject)
    if annotations is not None:
        body["annotations"] = dict(annotations)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


def oci_artifact_manifest(
    artifact_type: str = SBOM_SPDX,
    layers: Sequence[Ref] = (_made_up("sbom.spdx.json", 24731),),
    *,
    subject: Ref | None = None,
    layer_media_type: str = SBOM_SPDX,
) -> bytes:
    """An artifact as `oras attach` pushes it: empty config, compact JSON, optional subject."""
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_CONFIG, data="e30="),
        "layers": [
            descriptor(
                layer_media_type,
                layer,
                annotations={"org.opencontainers.image.title": f"artifact-{i}"},
            )
            for i, layer in enumerate(layers)
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-14T09:12:44Z"},
    }
    if subject is not None:
        body["subject"] = descriptor(OCI_MANIFEST, subject)
    return orjson.dumps(body)


def oci_image_index(
    manifests: Sequence[Ref],
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
    subject: Ref | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """A multi-platform OCI index as `docker buildx` pushes it, one platform per entry."""
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(media_type, target, platform=PLATFORMS[i % len(PLATFORMS)])
            for i, target in enumerate(manifests)
        ],
    }
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if subject is not None:
        body["subject"] = descriptor(OCI_MANIFEST, subject)
    if annotations is not None:
        body["annotations"] = dict(annotations)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


def docker_manifest_v2(
    config: Ref = CONFIG,
    layers: Sequence[Ref] = LAYERS,
    *,
    foreign_layers: Sequence[tuple[Ref, Sequence[str]]] = (),
) -> bytes:
    """A Docker schema2 manifest as `docker push` writes it (three-space indent).

    `foreign_layers` are `(ref, urls)` pairs put before `layers`, as in Windows base images.
    """
    foreign = [
        descriptor(DOCKER_FOREIGN_LAYER, target, urls=list(urls)) for target, urls in foreign_layers
    ]
    return _go_indent(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_SCHEMA2,
            "config": descriptor(DOCKER_CONFIG, config),
            "layers": foreign + [descriptor(DOCKER_LAYER, layer) for layer in layers],
        }
    )


def docker_manifest_list(manifests: Sequence[Ref]) -> bytes:
    """A Docker manifest list of schema2 manifests, as `docker manifest push` writes it."""
    return _go_indent(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                descriptor(DOCKER_SCHEMA2, target, platform=PLATFORMS[i % len(PLATFORMS)])
                for i, target in enumerate(manifests)
            ],
        }
    )


def buildkit_cache_index(
    layers: Sequence[Ref],
    cache_config: Ref,
    *,
    media_type: str = OCI_INDEX,
    layer_media_type: str = OCI_LAYER,
) -> bytes:
    """BuildKit's legacy registry cache (`--cache-to type=registry`, no `image-manifest=true`).

    An index (or, with `media_type=DOCKER_MANIFEST_LIST`, a manifest list)
    whose entries are the cached layers and the cache config: blobs, not manifests.
    """
    entries = [
        descriptor(
            layer_media_type,
            layer,
            annotations={
                "buildkit/createdat": "2024-05-14T09:12:44.117238512Z",
                "containerd.io/uncompressed": _made_up(f"uncompressed {layer[0]}", 0)[0],
            },
        )
        for layer in layers
    ]
    entries.append(descriptor(BUILDKIT_CACHE_CONFIG, cache_config))
    return orjson.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": entries},
        option=orjson.OPT_INDENT_2,
    )


def buildkit_cache_manifest(layers: Sequence[Ref], cache_config: Ref) -> bytes:
    """BuildKit's cache with `image-manifest=true`: an OCI manifest, the cache config as config."""
    return oci_image_manifest(
        config=cache_config, layers=layers, config_media_type=BUILDKIT_CACHE_CONFIG
    )


def docker_schema1_manifest(
    layers: Sequence[Ref] = LAYERS,
    *,
    name: str = "library/debian",
    tag: str = "bookworm-slim",
) -> bytes:
    """An unsigned schema1 manifest (`v1+json`), three-space indented as Docker wrote them.

    Layers are listed top-most first, as schema1 does; sizes are not recorded.
    """
    history = [
        {"v1Compatibility": json.dumps({"id": hashlib.sha256(d.encode()).hexdigest()})}
        for d, _ in layers
    ]
    return _go_indent(
        {
            "schemaVersion": 1,
            "name": name,
            "tag": tag,
            "architecture": "amd64",
            "fsLayers": [{"blobSum": digest} for digest, _ in reversed(layers)],
            "history": history,
        }
    )


#: The curve of each ECDSA algorithm of libtrust; RS* keys are RSA.
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def schema1_key(algorithm: str = "ES256", signer: int = 0) -> SigningKey:
    """A private key for `algorithm`, one per `signer` (made once per test session)."""
    return _new_key(algorithm, signer)


@functools.cache
def _new_key(algorithm: str, signer: int) -> SigningKey:
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def schema1_jwk(key: SigningKey) -> dict[str, str]:
    """The public half of `key` as the JWK libtrust puts in a signature header."""
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return {
            "crv": crv[public.curve.name],
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }
    assert isinstance(public, rsa.RSAPublicKey)
    rsa_numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "n": _b64url(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")),
        "e": _b64url(rsa_numbers.e.to_bytes(3, "big")),
    }


def jws_sign(key: SigningKey, algorithm: str, signed: bytes) -> bytes:
    """The JWS signature of `signed`: raw `r || s` for ECDSA, PKCS #1 v1.5 for RSA."""
    hash_algorithm = _HASHES[algorithm[2:]]()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hash_algorithm)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(signed, padding.PKCS1v15(), hash_algorithm)


def sign_schema1(
    payload: bytes,
    *,
    signers: int = 1,
    algorithm: str = "ES256",
    header: Mapping[str, Any] | None = None,
) -> bytes:
    """`payload` signed as libtrust's `PrettySignature` does, by `signers` keys of `algorithm`.

    The result's canonical payload (what its digest is computed over) is
    exactly `payload`, and every signature is valid. `header` replaces the
    default header (`alg` and the key's `jwk`), e.g. with an `x5c` chain.
    """
    stripped = payload.rstrip()
    if not stripped.endswith(b"}"):
        raise ValueError("a schema1 payload is a JSON object")
    format_length = len(stripped[:-1].rstrip())
    protected = {
        "formatLength": format_length,
        "formatTail": _b64url(payload[format_length:]),
        "time": "2016-06-15T21:49:48Z",
    }
    encoded = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    signed = f"{encoded}.{_b64url(payload)}".encode()
    signatures = []
    for i in range(signers):
        key = schema1_key(algorithm, i)
        signatures.append(
            {
                "header": dict(header or {"jwk": schema1_jwk(key), "alg": algorithm}),
                "signature": _b64url(jws_sign(key, algorithm, signed)),
                "protected": encoded,
            }
        )
    block = json.dumps(signatures, indent=3).replace("\n", "\n   ")
    return payload[:format_length] + b',\n   "signatures": ' + block.encode() + b"\n}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _go_indent(body: dict[str, Any]) -> bytes:
    # Go's json.MarshalIndent(v, "", "   "), which Docker and Distribution use.
    return json.dumps(body, indent=3).encode()


#: One realistic body of each format, by name, with the Content-Type its client sends.
EXAMPLES: dict[str, tuple[bytes, str]] = {
    "docker-schema1": (docker_schema1_manifest(), DOCKER_SCHEMA1),
    "docker-schema1-signed": (sign_schema1(docker_schema1_manifest()), DOCKER_SCHEMA1_SIGNED),
    "docker-schema2": (docker_manifest_v2(), DOCKER_SCHEMA2),
    "docker-manifest-list": (docker_manifest_list(LAYERS[:2]), DOCKER_MANIFEST_LIST),
    "oci-image-manifest": (oci_image_manifest(), OCI_MANIFEST),
    "oci-artifact-referrer": (oci_artifact_manifest(subject=CONFIG), OCI_MANIFEST),
    "oci-image-index": (oci_image_index(LAYERS[:2]), OCI_INDEX),
    "buildkit-legacy-cache": (buildkit_cache_index(LAYERS, EMPTY_CONFIG), OCI_INDEX),
}
