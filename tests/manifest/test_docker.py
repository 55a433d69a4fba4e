"""Docker formats: schema2 manifests, manifest lists, and schema1 signed and unsigned."""

from __future__ import annotations

import base64
import datetime
import json

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.digest import Digest
from registry.errors import ManifestInvalid, ManifestUnverified
from registry.manifest import detect_media_type, parse_manifest
from tests.manifest.samples import (
    CONFIG,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    LAYERS,
    SigningKey,
    docker_manifest_list,
    docker_manifest_v2,
    docker_schema1_manifest,
    ref,
    schema1_jwk,
    schema1_key,
    sign_schema1,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def edit_signature(signed: bytes, **changes: object) -> bytes:
    """`signed` with fields of its first signature replaced (the payload bytes stay in place)."""
    body = json.loads(signed)
    body["signatures"][0].update(changes)
    return json.dumps(body, indent=3).encode()


def edit_protected(signed: bytes, **changes: object) -> bytes:
    body = json.loads(signed)
    signature = body["signatures"][0]
    protected = json.loads(base64.urlsafe_b64decode(signature["protected"] + "=="))
    signature["protected"] = b64url(json.dumps({**protected, **changes}).encode())
    return json.dumps(body, indent=3).encode()


class TestDockerSchema2:
    def test_schema2_manifest_lists_config_and_layers_as_blobs(self) -> None:
        manifest = parse_manifest(docker_manifest_v2(), DOCKER_SCHEMA2)
        assert manifest.media_type == DOCKER_SCHEMA2
        assert [str(b.digest) for b in manifest.blobs] == [CONFIG[0], *(d for d, _ in LAYERS)]
        assert manifest.blobs[0].media_type == DOCKER_CONFIG
        assert {b.media_type for b in manifest.blobs[1:]} == {DOCKER_LAYER}
        assert manifest.artifact_type == DOCKER_CONFIG
        assert manifest.subject is None
        assert manifest.annotations is None

    def test_foreign_layers_with_urls_need_not_be_in_the_registry(self) -> None:
        foreign = ref(b"windows servercore base")
        body = docker_manifest_v2(
            foreign_layers=[(foreign, ["https://go.microsoft.com/fwlink/?linkid=837858"])]
        )
        manifest = parse_manifest(body, DOCKER_SCHEMA2)
        assert foreign[0] not in [str(b.digest) for b in manifest.blobs]
        assert len(manifest.blobs) == 1 + len(LAYERS)

    def test_foreign_layer_without_urls_is_rejected(self) -> None:
        body = docker_manifest_v2(foreign_layers=[(ref(b"base"), [])])
        with pytest.raises(ManifestInvalid, match="urls"):
            parse_manifest(body, DOCKER_SCHEMA2)

    def test_schema2_without_media_type_field_is_rejected(self) -> None:
        body = orjson.loads(docker_manifest_v2())
        del body["mediaType"]
        with pytest.raises(ManifestInvalid, match="mediaType"):
            parse_manifest(orjson.dumps(body), DOCKER_SCHEMA2)

    def test_schema2_pushed_as_application_json_is_detected(self) -> None:
        manifest = parse_manifest(docker_manifest_v2(), "application/json")
        assert manifest.media_type == DOCKER_SCHEMA2


class TestDockerManifestList:
    def test_manifest_list_entries_are_manifests(self) -> None:
        children = [ref(b"amd64"), ref(b"arm64")]
        manifest = parse_manifest(docker_manifest_list(children), DOCKER_MANIFEST_LIST)
        assert manifest.media_type == DOCKER_MANIFEST_LIST
        assert [str(m.digest) for m in manifest.manifests] == [d for d, _ in children]
        assert {m.media_type for m in manifest.manifests} == {DOCKER_SCHEMA2}
        assert manifest.blobs == ()

    def test_manifest_list_without_media_type_field_is_rejected(self) -> None:
        body = orjson.loads(docker_manifest_list([ref(b"amd64")]))
        del body["mediaType"]
        with pytest.raises(ManifestInvalid, match="mediaType"):
            parse_manifest(orjson.dumps(body), DOCKER_MANIFEST_LIST)

    def test_manifest_list_without_manifests_is_rejected(self) -> None:
        body = orjson.loads(docker_manifest_list([]))
        del body["manifests"]
        with pytest.raises(ManifestInvalid, match="manifests"):
            parse_manifest(orjson.dumps(body), DOCKER_MANIFEST_LIST)


class TestDockerSchema1Unsigned:
    def test_unsigned_schema1_lists_blob_sums_with_size_zero(self) -> None:
        manifest = parse_manifest(docker_schema1_manifest(), DOCKER_SCHEMA1)
        assert manifest.media_type == DOCKER_SCHEMA1
        assert [str(b.digest) for b in manifest.blobs] == [d for d, _ in reversed(LAYERS)]
        assert {b.size for b in manifest.blobs} == {0}
        assert manifest.canonical is None
        assert manifest.artifact_type is None

    def test_repeated_blob_sums_are_listed_once(self) -> None:
        empty_layer = ref(b"empty tar")
        body = docker_schema1_manifest([empty_layer, LAYERS[0], empty_layer])
        manifest = parse_manifest(body, DOCKER_SCHEMA1)
        assert [str(b.digest) for b in manifest.blobs] == [empty_layer[0], LAYERS[0][0]]

    def test_fs_layers_and_history_of_different_lengths_are_rejected(self) -> None:
        body = orjson.loads(docker_schema1_manifest())
        body["history"].pop()
        with pytest.raises(ManifestInvalid, match="history"):
            parse_manifest(orjson.dumps(body), DOCKER_SCHEMA1)

    def test_bad_blob_sum_is_rejected(self) -> None:
        body = orjson.loads(docker_schema1_manifest())
        body["fsLayers"][1]["blobSum"] = "tarsum.dev+sha256:abc"
        with pytest.raises(ManifestInvalid, match=r"fsLayers\[1\]"):
            parse_manifest(orjson.dumps(body), DOCKER_SCHEMA1)

    def test_unsigned_schema1_labelled_signed_is_rejected(self) -> None:
        with pytest.raises(ManifestInvalid, match="reads as"):
            parse_manifest(docker_schema1_manifest(), DOCKER_SCHEMA1_SIGNED)

    def test_schema1_with_schema_version_2_is_rejected(self) -> None:
        body = orjson.loads(docker_schema1_manifest())
        body["schemaVersion"] = 2
        with pytest.raises(ManifestInvalid):
            parse_manifest(orjson.dumps(body), DOCKER_SCHEMA1)


def self_signed_certificate(key: SigningKey) -> bytes:
    """A DER certificate of `key`'s public key, signed by itself, as libtrust's x5c chains hold."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schema1 signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


class TestDockerSchema1Signatures:
    """Every signature is checked against the key in its header, as Distribution does."""

    @pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"])
    def test_valid_signature_of_each_libtrust_algorithm_is_accepted(self, algorithm: str) -> None:
        payload = docker_schema1_manifest()
        manifest = parse_manifest(sign_schema1(payload, algorithm=algorithm), DOCKER_SCHEMA1_SIGNED)
        assert manifest.canonical == payload

    @pytest.mark.parametrize("algorithm", ["ES256", "RS512"])
    def test_signature_of_another_payload_is_manifest_unverified(self, algorithm: str) -> None:
        signed = sign_schema1(docker_schema1_manifest(), algorithm=algorithm)
        other = sign_schema1(docker_schema1_manifest(name="other/app"), algorithm=algorithm)
        forged = edit_signature(signed, signature=json.loads(other)["signatures"][0]["signature"])
        with pytest.raises(ManifestUnverified):
            parse_manifest(forged, DOCKER_SCHEMA1_SIGNED)

    def test_payload_edited_after_signing_is_manifest_unverified(self) -> None:
        signed = sign_schema1(docker_schema1_manifest(name="library/app"))
        edited = signed.replace(b'"library/app"', b'"library/apq"', 1)
        with pytest.raises(ManifestUnverified):
            parse_manifest(edited, DOCKER_SCHEMA1_SIGNED)

    def test_made_up_signature_and_key_is_manifest_unverified(self) -> None:
        """What was accepted before: a well-formed signature by a key nobody holds."""
        signed = sign_schema1(docker_schema1_manifest())
        other_key = ec.generate_private_key(ec.SECP256R1())
        forged = edit_signature(signed, header={"jwk": schema1_jwk(other_key), "alg": "ES256"})
        with pytest.raises(ManifestUnverified, match="does not match"):
            parse_manifest(forged, DOCKER_SCHEMA1_SIGNED)

    def test_one_bad_signature_among_good_ones_is_manifest_unverified(self) -> None:
        signed = json.loads(sign_schema1(docker_schema1_manifest(), signers=2))
        signed["signatures"][1]["signature"] = signed["signatures"][0]["signature"]
        with pytest.raises(ManifestUnverified, match=r"signatures\[1\]"):
            parse_manifest(json.dumps(signed, indent=3).encode(), DOCKER_SCHEMA1_SIGNED)

    @pytest.mark.parametrize(
        ("alg", "key"),
        [("ES384", "ES256"), ("RS256", "ES256"), ("ES256", "RS256"), ("HS256", "ES256")],
    )
    def test_algorithm_not_matching_the_key_is_manifest_unverified(
        self, alg: str, key: str
    ) -> None:
        signed = sign_schema1(docker_schema1_manifest(), algorithm=key)
        header = {"jwk": schema1_jwk(schema1_key(key)), "alg": alg}
        with pytest.raises(ManifestUnverified):
            parse_manifest(edit_signature(signed, header=header), DOCKER_SCHEMA1_SIGNED)

    @pytest.mark.parametrize(
        "jwk",
        [
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},  # not on the curve
            {"kty": "EC", "crv": "P-999", "x": "AAAA", "y": "AAAA"},
            {"kty": "EC", "crv": "P-256"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "!!", "e": "AQAB"},
        ],
    )
    def test_unusable_key_is_manifest_unverified(self, jwk: dict[str, str]) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        with pytest.raises(ManifestUnverified):
            parse_manifest(
                edit_signature(signed, header={"jwk": jwk, "alg": "ES256"}), DOCKER_SCHEMA1_SIGNED
            )

    def test_unusable_certificate_chain_is_manifest_unverified(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        header = {"alg": "RS256", "x5c": ["MIIBdzCCAR2gAwIBAgIB"]}
        with pytest.raises(ManifestUnverified):
            parse_manifest(edit_signature(signed, header=header), DOCKER_SCHEMA1_SIGNED)


class TestDockerSchema1Signed:
    def test_signed_schema1_is_identified_by_its_canonical_payload(self) -> None:
        payload = docker_schema1_manifest()
        signed = sign_schema1(payload)
        manifest = parse_manifest(signed, DOCKER_SCHEMA1_SIGNED)
        assert manifest.media_type == DOCKER_SCHEMA1_SIGNED
        assert manifest.canonical == payload
        assert Digest.of(manifest.canonical) != Digest.of(signed)
        assert [str(b.digest) for b in manifest.blobs] == [d for d, _ in reversed(LAYERS)]

    def test_several_signatures_over_the_same_payload_are_accepted(self) -> None:
        payload = docker_schema1_manifest()
        manifest = parse_manifest(sign_schema1(payload, signers=2), DOCKER_SCHEMA1_SIGNED)
        assert manifest.canonical == payload

    def test_signed_schema1_pushed_as_application_json_is_detected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        manifest = parse_manifest(signed, "application/json")
        assert manifest.media_type == DOCKER_SCHEMA1_SIGNED
        assert detect_media_type(signed) == DOCKER_SCHEMA1_SIGNED

    def test_signed_schema1_labelled_unsigned_is_rejected(self) -> None:
        with pytest.raises(ManifestInvalid, match="reads as"):
            parse_manifest(sign_schema1(docker_schema1_manifest()), DOCKER_SCHEMA1)

    def test_references_are_read_from_the_signed_payload_not_the_outer_bytes(self) -> None:
        """What Docker pulls and verifies is the payload; the outer fields are not signed."""
        payload = docker_schema1_manifest([ref(b"signed layer")])
        head, marker, signatures = sign_schema1(payload).partition(b',\n   "signatures": ')
        unsigned = json.dumps([{"blobSum": ref(b"unsigned layer")[0]}]).encode()
        # A second fsLayers after the payload: JSON parsers keep the last one.
        outer = head + b',\n   "fsLayers": ' + unsigned + marker + signatures
        assert orjson.loads(outer)["fsLayers"][0]["blobSum"] == ref(b"unsigned layer")[0]
        manifest = parse_manifest(outer, DOCKER_SCHEMA1_SIGNED)
        assert manifest.canonical == payload
        assert [str(b.digest) for b in manifest.blobs] == [ref(b"signed layer")[0]]

    def test_empty_signatures_are_rejected(self) -> None:
        body = json.loads(sign_schema1(docker_schema1_manifest()))
        body["signatures"] = []
        with pytest.raises(ManifestInvalid, match="signatures"):
            parse_manifest(json.dumps(body).encode(), DOCKER_SCHEMA1_SIGNED)

    def test_signature_without_key_is_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        with pytest.raises(ManifestInvalid, match="header"):
            parse_manifest(edit_signature(signed, header={"alg": "ES256"}), DOCKER_SCHEMA1_SIGNED)

    def test_signature_with_certificate_chain_instead_of_jwk_is_accepted(self) -> None:
        chain = [base64.b64encode(self_signed_certificate(schema1_key("RS256"))).decode()]
        body = sign_schema1(
            docker_schema1_manifest(), algorithm="RS256", header={"alg": "RS256", "x5c": chain}
        )
        assert parse_manifest(body, DOCKER_SCHEMA1_SIGNED).canonical is not None

    @pytest.mark.parametrize("field", ["signature", "protected"])
    def test_signature_field_that_is_not_base64url_is_rejected(self, field: str) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        with pytest.raises(ManifestInvalid, match="base64url"):
            parse_manifest(edit_signature(signed, **{field: "not base64!"}), DOCKER_SCHEMA1_SIGNED)

    def test_protected_header_that_is_not_json_is_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        body = edit_signature(signed, protected=b64url(b"not json"))
        with pytest.raises(ManifestInvalid, match="protected"):
            parse_manifest(body, DOCKER_SCHEMA1_SIGNED)

    def test_protected_header_without_format_length_is_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        body = edit_signature(signed, protected=b64url(b'{"formatTail":"Cn0"}'))
        with pytest.raises(ManifestInvalid, match="formatLength"):
            parse_manifest(body, DOCKER_SCHEMA1_SIGNED)

    def test_format_length_past_the_end_is_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        with pytest.raises(ManifestInvalid, match="formatLength"):
            parse_manifest(edit_protected(signed, formatLength=10**9), DOCKER_SCHEMA1_SIGNED)

    def test_payload_that_is_not_json_is_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest())
        with pytest.raises(ManifestInvalid, match="signed payload"):
            parse_manifest(edit_protected(signed, formatLength=8), DOCKER_SCHEMA1_SIGNED)

    def test_signatures_disagreeing_on_the_payload_are_rejected(self) -> None:
        signed = sign_schema1(docker_schema1_manifest(), signers=2)
        body = json.loads(signed)
        protected = json.loads(base64.urlsafe_b64decode(body["signatures"][1]["protected"] + "=="))
        protected["formatTail"] = b64url(b"  \n}")
        body["signatures"][1]["protected"] = b64url(json.dumps(protected).encode())
        with pytest.raises(ManifestInvalid, match="disagree"):
            parse_manifest(json.dumps(body, indent=3).encode(), DOCKER_SCHEMA1_SIGNED)
