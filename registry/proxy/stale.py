"""How a service tells the HTTP layer that what it serves is stale, for a `Warning` header.

The proxy middleware opens a collection per request (`collecting`); the
manifest store adds to it (`warn`) when it serves a cached tag it could not
revalidate, or the cached tag list in place of the upstream's. Outside a
request, `warn` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_WARNINGS: ContextVar[list[str] | None] = ContextVar("cargobay_proxy_warnings", default=None)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """A list that receives the warnings of the code run inside the block."""
    found: list[str] = []
    token = _WARNINGS.set(found)
    try:
        yield found
    finally:
        _WARNINGS.reset(token)


def warn(text: str) -> None:
    """Record that the current answer is stale because of `text` (one line, no quotes)."""
    found = _WARNINGS.get()
    if found is not None:
        found.append(text.replace('"', "'"))


def header_value(text: str) -> str:
    """`text` as an RFC 9111 `Warning` header value: 110, Response is Stale."""
    return f'110 cargobay "Response is stale: {text}"'
