"""Token keys, verification and issuing, below the HTTP layer."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.utils import base64url_decode

from registry.auth.access import Access
from registry.auth.tokens import (
    TokenIssuer,
    TokenVerifier,
    jwk_thumbprint,
    load_jwks,
    load_public_keys,
    load_signing_key,
)
from registry.config import ConfigError
from registry.errors import Unauthorized
from tests.auth.conftest import ISSUER, SERVICE, KeyPair, repo_access, token_claims

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def self_signed(keys: KeyPair, path: Path) -> Path:
    """A certificate for the key pair, as Harbor and GitLab configure their token signer."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(keys.private, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


class TestKeys:
    def test_certificate_bundle_and_public_keys_are_read(
        self, tmp_path: Path, rsa_keys: KeyPair, ec_keys: KeyPair
    ) -> None:
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(
            self_signed(rsa_keys, tmp_path / "c.pem").read_bytes() + ec_keys.public_pem.read_bytes()
        )
        keys = load_public_keys(str(bundle))
        assert [k.algorithm for k in keys] == ["RS256", "ES256"]
        verifier = TokenVerifier(keys, ISSUER, SERVICE)
        assert verifier.verify(rsa_keys.sign(token_claims())).subject == "alice"

    def test_jwks_keys_are_read_with_their_key_ids(
        self, tmp_path: Path, rsa_keys: KeyPair, ec_keys: KeyPair
    ) -> None:
        jwks = {
            "keys": [
                {
                    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_keys.private.public_key())),
                    "kid": "r1",
                },
                {
                    **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_keys.private.public_key())),
                    "kid": "e1",
                },
            ]
        }
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        keys = load_jwks(str(path))
        assert [(k.kid, k.algorithm) for k in keys] == [("r1", "RS256"), ("e1", "ES256")]
        verifier = TokenVerifier(keys, ISSUER, SERVICE)
        assert verifier.verify(ec_keys.sign(token_claims(), headers={"kid": "e1"}))
        with pytest.raises(Unauthorized, match="not signed by a trusted key"):
            verifier.verify(ec_keys.sign(token_claims(), headers={"kid": "r1"}))

    @pytest.mark.parametrize(
        "content",
        [b"", b"not pem", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
    )
    def test_unusable_public_key_file_is_a_config_error(
        self, tmp_path: Path, content: bytes
    ) -> None:
        path = tmp_path / "k.pem"
        path.write_bytes(content)
        with pytest.raises(ConfigError):
            load_public_keys(str(path))

    def test_unsupported_key_types_are_config_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "k.pem"
        for key in (ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP384R1())):
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            with pytest.raises(ConfigError):
                load_signing_key(str(path))

    def test_bad_jwks_and_missing_files_are_config_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "jwks.json"
        path.write_text('{"keys": "no"}')
        with pytest.raises(ConfigError):
            load_jwks(str(path))
        with pytest.raises(ConfigError, match="cannot read"):
            load_public_keys(str(tmp_path / "missing.pem"))

    def test_no_keys_at_all_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError):
            TokenVerifier([], ISSUER, SERVICE)


class TestVerifier:
    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"exp": 1}, "expired"),
            ({"nbf": 4_000_000_000}, "not valid yet"),
            ({"aud": "other"}, "another service"),
            ({"iss": "other"}, "untrusted issuer"),
            ({"access": [{"type": "repository"}]}, "malformed access"),
            ({"access": ["x"]}, "malformed access"),
        ],
    )
    def test_each_failure_says_why(
        self, rsa_keys: KeyPair, overrides: dict[str, object], reason: str
    ) -> None:
        verifier = TokenVerifier(load_public_keys(str(rsa_keys.public_pem)), ISSUER, SERVICE)
        with pytest.raises(Unauthorized, match=reason):
            verifier.verify(rsa_keys.sign({**token_claims(), **overrides}))

    def test_audience_may_be_a_list(self, rsa_keys: KeyPair) -> None:
        verifier = TokenVerifier(load_public_keys(str(rsa_keys.public_pem)), ISSUER, SERVICE)
        claims = verifier.verify(rsa_keys.sign(token_claims(aud=["x", SERVICE])))
        assert claims.subject == "alice"

    def test_access_claim_becomes_the_grant(self, rsa_keys: KeyPair) -> None:
        verifier = TokenVerifier(load_public_keys(str(rsa_keys.public_pem)), ISSUER, SERVICE)
        claims = verifier.verify(rsa_keys.sign(token_claims([repo_access("a", "pull")])))
        assert claims.grant.covers(Access("repository", "a", "pull"))
        assert not claims.grant.covers(Access("repository", "a", "push"))

    def test_rs256_header_on_an_ec_key_is_not_tried(self, ec_keys: KeyPair) -> None:
        verifier = TokenVerifier(load_public_keys(str(ec_keys.public_pem)), ISSUER, SERVICE)
        with pytest.raises(Unauthorized):
            verifier.verify(jwt.encode(token_claims(), "x" * 64, algorithm="HS256"))


class TestIssuer:
    @pytest.mark.parametrize("fixture", ["rsa_keys", "ec_keys"])
    def test_issued_tokens_verify_and_carry_exactly_their_access(
        self, fixture: str, request: pytest.FixtureRequest
    ) -> None:
        keys: KeyPair = request.getfixturevalue(fixture)
        issuer = TokenIssuer(load_signing_key(str(keys.private_pem)), ISSUER, SERVICE, 60)
        issued = issuer.issue(
            "carol", [Access("repository", "a", "pull"), Access("repository", "a", "push")]
        )
        header = jwt.get_unverified_header(issued.token)
        assert header["alg"] == keys.algorithm
        assert header["kid"] == issuer.public_key.kid
        verified = TokenVerifier([issuer.public_key], ISSUER, SERVICE).verify(issued.token)
        assert verified.subject == "carol"
        assert verified.grant.covers(Access("repository", "a", "push"))
        assert issued.expires_in == 60

    def test_key_id_is_the_rfc7638_thumbprint(self) -> None:
        """The example key of RFC 7638 section 3.1 and the thumbprint the RFC gives for it."""
        key = rsa.RSAPublicNumbers(65537, int.from_bytes(base64url_decode(RFC7638_N), "big"))
        thumbprint = jwk_thumbprint(key.public_key())
        assert thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
