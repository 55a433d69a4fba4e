"""Content digests: parsing the `algorithm:hex` form and hashing bytes as they stream.

Only sha256 and sha512 are accepted, as the OCI image-spec registers them. Any
other algorithm, like anything malformed, is `DigestInvalid` (400): a 405
`UNSUPPORTED` would tell clients that this registry takes no pushes at all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from registry.errors import DigestInvalid

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX_RE = {name: re.compile(f"[0-9a-f]{{{length}}}") for name, length in _HEX_LENGTH.items()}
# The image-spec's grammar: algorithm-component ([+._-] algorithm-component)* ":" encoded
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SUPPORTED = ", ".join(_HEX_LENGTH)


class Hasher(Protocol):
    """What `hashlib` objects offer that streaming code relies on."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated content digest such as `sha256:9f86...`."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate `text`; raise `DigestInvalid`, naming the supported
        algorithms when `text` uses another one."""
        if not is_digest_shaped(text):
            raise DigestInvalid(f"invalid digest {text[:200]!r}")
        algorithm, _, hexpart = text.partition(":")
        hex_re = _HEX_RE.get(algorithm)
        if hex_re is None:
            raise DigestInvalid(
                f"unsupported digest algorithm {algorithm[:50]!r}: this registry supports "
                f"{_SUPPORTED}",
                detail={"digest": text[:200]},
            )
        if not hex_re.fullmatch(hexpart):
            raise DigestInvalid(f"invalid {algorithm} digest {text[:200]!r}")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of `data` (small payloads such as manifests)."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        """A fresh hasher of this digest's algorithm."""
        return new_hasher(self.algorithm)


def is_digest_shaped(text: str) -> bool:
    """True if `text` follows the image-spec's digest grammar, whatever its algorithm."""
    return _DIGEST_RE.fullmatch(text) is not None


def new_hasher(algorithm: str = "sha256") -> Hasher:
    """A fresh streaming hasher for `algorithm` (sha256 or sha512)."""
    if algorithm not in _HEX_LENGTH:
        raise DigestInvalid(
            f"unsupported digest algorithm {algorithm!r}: this registry supports {_SUPPORTED}"
        )
    return hashlib.new(algorithm)
