"""The distribution-spec grammar for repository names and tags.

Names are checked before any storage path is built from them, so a name can
never climb out of its repository directory (`..`, absolute paths, empty
components and upper case are all outside the grammar).
"""

from __future__ import annotations

import re

from registry.errors import NameInvalid

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Distribution's limit; Docker Hub and most clients assume it too.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise `NameInvalid`."""
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name[:300]!r}", detail={"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    """True if `reference` is shaped like a tag (as opposed to a digest)."""
    return _TAG_RE.fullmatch(reference) is not None
