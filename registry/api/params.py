"""Numbers clients put in query parameters and headers, parsed by full matches of ASCII digits.

`str.isdigit` and `int` accept far more than the spec's grammars: `'²'.isdigit()`
is true while `int('²')` fails, `int` takes Arabic-Indic and full-width digits,
and it refuses strings past Python's integer-string limit. Every number read
from a request goes through here, so bad input is a 4xx, never an exception.
"""

from __future__ import annotations

import re

from registry.errors import BlobUploadInvalid, PaginationInvalid

#: 18 digits are below 2**63: every offset and count we accept fits an int64.
_NUMBER = r"[0-9]{1,18}"
_COUNT_RE = re.compile(_NUMBER)
# `<start>-<end>` as the distribution-spec writes it; RFC 9110's `bytes <start>-<end>/<total>`
# form, which some clients send, is accepted too.
_CONTENT_RANGE_RE = re.compile(
    rf"(?:bytes )?(?P<first>{_NUMBER})-(?P<last>{_NUMBER})(?:/(?:{_NUMBER}|\*))?"
)


def parse_count(raw: str) -> int:
    """The `n` of a paginated listing: a non-negative integer, else `PaginationInvalid`."""
    if not _COUNT_RE.fullmatch(raw):
        raise PaginationInvalid(f"n must be a non-negative integer, got {raw[:50]!r}")
    return int(raw)


def parse_content_range(value: str) -> tuple[int, int]:
    """A chunk's `Content-Range` as (start, length); `BlobUploadInvalid` if malformed."""
    match = _CONTENT_RANGE_RE.fullmatch(value.strip())
    if match is None:
        raise BlobUploadInvalid(f"malformed Content-Range {value[:100]!r}")
    first, last = int(match["first"]), int(match["last"])
    if last < first:
        raise BlobUploadInvalid(f"malformed Content-Range {value[:100]!r}")
    return first, last - first + 1
