"""Verifying the JWS signatures of signed schema1 manifests, as libtrust writes them.

Each signature carries its key in its header, as a JWK (`EC` P-256/P-384/P-521,
or `RSA`) or as an `x5c` certificate chain whose first certificate holds it.
The signed bytes are libtrust's: `protected + "." + base64url(payload)`, where
`protected` is the signature's protected header exactly as written and the
payload is the manifest without its signatures. ECDSA signatures are the raw
`r || s` of JWS (RFC 7518 3.4), RSA ones PKCS #1 v1.5.

The keys are self-signed, so a valid signature proves only that the manifest
is what its signer sent, which is what Distribution checks too: no chain is
checked against trusted roots.

`cryptography` is imported on first use: most registries never see a schema1
manifest, and it adds several MiB to a process.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from registry.errors import ManifestUnverified

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

# alg -> (hash name, the curve an ES key must be on)
_ALGORITHMS = {
    "ES256": ("sha256", "secp256r1"),
    "ES384": ("sha384", "secp384r1"),
    "ES512": ("sha512", "secp521r1"),
    "RS256": ("sha256", None),
    "RS384": ("sha384", None),
    "RS512": ("sha512", None),
}


def verify_signature(signature: dict[str, Any], payload: bytes, where: str) -> None:
    """Check one libtrust signature of `payload`; `ManifestUnverified` if it does not hold.

    `signature` has already been checked for shape (a `header` with `alg` and
    `jwk` or `x5c`, base64url `signature` and `protected`).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    header = signature["header"]
    alg = header["alg"]
    if alg not in _ALGORITHMS:
        raise ManifestUnverified(f"{where}: unsupported signature algorithm {str(alg)[:20]!r}")
    hash_name, curve = _ALGORITHMS[alg]
    hash_algorithm: hashes.HashAlgorithm = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }[hash_name]
    key = _public_key(header, where)
    signed = f"{signature['protected']}.".encode() + _b64url_encode(payload)
    raw = _b64url_decode(signature["signature"], f"{where}.signature")
    try:
        if curve is not None:
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
                raise ManifestUnverified(f"{where}: {alg} needs an EC key on {curve}")
            size = (key.curve.key_size + 7) // 8
            if len(raw) != 2 * size:
                raise ManifestUnverified(f"{where}: an {alg} signature is {2 * size} bytes")
            r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hash_algorithm))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise ManifestUnverified(f"{where}: {alg} needs an RSA key")
            key.verify(raw, signed, padding.PKCS1v15(), hash_algorithm)
    except InvalidSignature:
        raise ManifestUnverified(f"{where}: the signature does not match the manifest") from None


def _public_key(header: dict[str, Any], where: str) -> EllipticCurvePublicKey | RSAPublicKey:
    """The key of a signature: its `jwk`, or the first certificate of its `x5c`."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if "jwk" in header:
            jwk = header["jwk"]
            kty = jwk.get("kty")
            if kty == "EC":
                curves: dict[str, ec.EllipticCurve] = {
                    "P-256": ec.SECP256R1(),
                    "P-384": ec.SECP384R1(),
                    "P-521": ec.SECP521R1(),
                }
                curve = curves[jwk["crv"]]
                x, y = _jwk_int(jwk, "x", where), _jwk_int(jwk, "y", where)
                return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
            if kty == "RSA":
                numbers = rsa.RSAPublicNumbers(_jwk_int(jwk, "e", where), _jwk_int(jwk, "n", where))
                return numbers.public_key()
            raise ManifestUnverified(f"{where}.header.jwk: unsupported key type {str(kty)[:20]!r}")
        der = base64.b64decode(header["x5c"][0], validate=True)
        key = x509.load_der_x509_certificate(der).public_key()
    except ManifestUnverified:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
        raise ManifestUnverified(f"{where}.header: unusable key: {e}"[:300]) from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ManifestUnverified(f"{where}.header.x5c: neither an EC nor an RSA key")
    return key


def _jwk_int(jwk: dict[str, Any], field: str, where: str) -> int:
    value = jwk.get(field)
    if not isinstance(value, str):
        raise ManifestUnverified(f"{where}.header.jwk.{field} is missing")
    return int.from_bytes(_b64url_decode(value, f"{where}.header.jwk.{field}"), "big")


def _b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64url_decode(text: str, where: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ManifestUnverified(f"{where} is not base64url") from None
