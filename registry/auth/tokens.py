"""Bearer tokens of the Docker token specification: JWTs verified here, and issued by `/token`.

A token is trusted when it is signed with RS256 or ES256 by one of the
configured keys (PEM public keys or certificates, a JWKS file, and the public
half of our own signing key), names our `issuer` as `iss` and our `service`
in `aud`, and is within `nbf`..`exp` give or take `LEEWAY_SECONDS` of clock
skew. Every other algorithm, `none` and HMAC included, is refused before any
key is looked at, so a public key can never be used as an HMAC secret.

PyJWT and cryptography do all signing and verifying; this module only
chooses keys and reads the `access` claim.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.access import Access, Grant
from registry.config import ConfigError
from registry.errors import Unauthorized

#: Clock skew tolerated on `exp` and `nbf`, as Distribution does.
LEEWAY_SECONDS = 60

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_PEM_BLOCK_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)
_JWT_ERRORS = {
    jwt.ExpiredSignatureError: "token has expired",
    jwt.ImmatureSignatureError: "token is not valid yet",
    jwt.InvalidAudienceError: "token is for another service",
    jwt.InvalidIssuerError: "token is from an untrusted issuer",
    jwt.MissingRequiredClaimError: "token lacks a required claim",
}


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key tokens may be signed with; `kid` is its key ID when one is known."""

    key: PublicKey
    kid: str | None = None

    @property
    def algorithm(self) -> str:
        return "RS256" if isinstance(self.key, rsa.RSAPublicKey) else "ES256"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who it was issued to (`""`: anonymous) and what it allows."""

    subject: str
    grant: Grant


class TokenVerifier:
    """Checks bearer tokens against the trusted keys, issuer and service."""

    def __init__(self, keys: Sequence[TrustedKey], issuer: str, service: str) -> None:
        if not keys:
            raise ConfigError("auth.token: no key to verify tokens with")
        self._keys = list(keys)
        self._issuer = issuer
        self._service = service

    def verify(self, raw: str) -> Claims:
        """The claims of `raw` if it is a trusted, current token for us.

        Raises `Unauthorized` (without challenge) whose message says why in
        words safe to log and to show: the token itself is never quoted.
        """
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.InvalidTokenError as e:
            raise Unauthorized("malformed token") from e
        algorithm = header.get("alg")
        if algorithm not in ("RS256", "ES256"):
            raise Unauthorized("token algorithm must be RS256 or ES256")
        # A key ID narrows the keys tried; keys configured without one are always tried.
        kid = header.get("kid")
        candidates = [
            k
            for k in self._keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]
        for trusted in candidates:
            try:
                payload = jwt.decode(
                    raw,
                    trusted.key,
                    algorithms=[algorithm],
                    audience=self._service,
                    issuer=self._issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as e:
                raise Unauthorized(_JWT_ERRORS.get(type(e), "malformed token")) from e
            return Claims(str(payload.get("sub") or ""), Grant(_access_claim(payload)))
        raise Unauthorized("token is not signed by a trusted key")


def _access_claim(payload: dict[str, Any]) -> list[Access]:
    entries = payload.get("access", [])
    if not isinstance(entries, list):
        raise Unauthorized("malformed access claim")
    accesses: list[Access] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise Unauthorized("malformed access claim")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (
            isinstance(kind, str)
            and isinstance(name, str)
            and isinstance(actions, list)
            and all(isinstance(a, str) for a in actions)
        ):
            raise Unauthorized("malformed access claim")
        accesses.extend(Access(kind, name, action) for action in actions)
    return accesses


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as the token endpoint returns it."""

    token: str
    expires_in: int
    issued_at: str


class TokenIssuer:
    """Signs tokens for the built-in token endpoint with one private key."""

    def __init__(self, key: PrivateKey, issuer: str, service: str, expiry_seconds: int) -> None:
        self._key = key
        self.public_key = TrustedKey(key.public_key(), jwk_thumbprint(key.public_key()))
        self._issuer = issuer
        self._service = service
        self._expiry = expiry_seconds

    def issue(self, subject: str, accesses: Iterable[Access]) -> IssuedToken:
        """A token for `subject` ("" for anonymous) allowing exactly `accesses`."""
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        actions: dict[tuple[str, str], list[str]] = {}
        for access in accesses:
            actions.setdefault((access.type, access.name), []).append(access.action)
        claims = {
            "iss": self._issuer,
            "sub": subject,
            "aud": self._service,
            "iat": now,
            "nbf": now,
            "exp": now + datetime.timedelta(seconds=self._expiry),
            "jti": secrets.token_urlsafe(16),
            "access": [
                {"type": kind, "name": name, "actions": names}
                for (kind, name), names in actions.items()
            ],
        }
        token = jwt.encode(
            claims,
            self._key,
            algorithm=self.public_key.algorithm,
            headers={"kid": self.public_key.kid},
        )
        return IssuedToken(token, self._expiry, now.isoformat().replace("+00:00", "Z"))


def load_public_keys(path: str) -> list[TrustedKey]:
    """Every public key and certificate's key in the PEM file at `path`; `ConfigError` if none."""
    data = _read(path)
    keys: list[TrustedKey] = []
    for block in _PEM_BLOCK_RE.finditer(data):
        try:
            if block.group(1) == b"CERTIFICATE":
                key: object = x509.load_pem_x509_certificate(block.group(0)).public_key()
            else:
                key = serialization.load_pem_public_key(block.group(0))
        except ValueError as e:
            raise ConfigError(f"{path}: unreadable {block.group(1).decode()}: {e}") from e
        keys.append(TrustedKey(_supported(key, path)))
    if not keys:
        raise ConfigError(f"{path}: no PEM public key or certificate found")
    return keys


def load_jwks(path: str) -> list[TrustedKey]:
    """The signature keys of the JWKS file at `path`, with their key IDs."""
    try:
        keys = jwt.PyJWKSet.from_json(_read(path).decode()).keys
    except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as e:
        raise ConfigError(f"{path}: not a usable JWKS: {e}") from e
    return [TrustedKey(_supported(k.key, path), k.key_id) for k in keys]


def load_signing_key(path: str) -> PrivateKey:
    """The PEM private key at `path` (RSA, or EC on P-256), unencrypted."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: only RSA and EC P-256 private keys can sign tokens")
    _supported(key.public_key(), path)
    return key


def _supported(key: object, path: str) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ConfigError(f"{path}: only RSA keys (RS256) and EC P-256 keys (ES256) are supported")


def jwk_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of `key`: the key ID of the tokens we sign.

    Distribution 3 looks keys up by this ID too, so it can verify our tokens.
    """
    if isinstance(key, rsa.RSAPublicKey):
        jwk: dict[str, str] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
