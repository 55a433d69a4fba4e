"""What the web page shows of a manifest or an image config: plain values made from their bytes.

Everything here is pure (bytes in, frozen dataclasses out) and forgiving: a
stored manifest may have been written by another registry, and every string in
it is the pusher's. A field of the wrong type reads as absent and never raises;
lists are cut to what one page can show (`Cut` says how many there were);
strings are clipped, and control and bidirectional-formatting characters are
made visible (`\\u202e`), so no label can hide or reorder the text around it.
HTML escaping is not done here: the templates autoescape everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from registry.manifest.mediatypes import (
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

#: Config media types of container images; any other config makes an artifact.
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
BUILDKIT_CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"

#: Rows of one table on one page (layers, platforms, history).
PAGE_ROWS = 100
#: Items of a list shown whole on a page (env, labels, annotations, tags).
MAX_ITEMS = 200
#: Characters of one shown value; longer ones end in an ellipsis.
MAX_TEXT = 2_000
#: Characters of pretty-printed JSON shown; the rest is behind the raw link.
MAX_JSON = 256 * 1024

# C0 and C1 controls but tab and newline, and the bidi embeddings, overrides and isolates.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

T = TypeVar("T")


def text(value: object, limit: int = MAX_TEXT) -> str:
    """`value` as text safe to show: controls made visible, at most `limit` characters.

    Non-strings (numbers, nested JSON) are shown as JSON.
    """
    if not isinstance(value, str):
        value = orjson.dumps(value).decode() if value is not None else ""
    if len(value) > limit:
        value = value[:limit] + "…"
    return visible(value)


def visible(value: str) -> str:
    """`value` with control and bidi-formatting characters written as `\\uXXXX` escapes."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


@dataclass(frozen=True, slots=True)
class Cut(Generic[T]):
    """A part of a longer list: `items` start at index `start` of `total`."""

    items: tuple[T, ...]
    start: int
    total: int

    @property
    def more(self) -> int:
        """How many items come after this part."""
        return max(0, self.total - self.start - len(self.items))


def cut(items: Sequence[T], start: int = 0, size: int = MAX_ITEMS) -> Cut[T]:
    """The items of `items` from `start` (clamped), at most `size` of them."""
    start = max(0, min(start, max(0, len(items) - 1)))
    return Cut(tuple(items[start : start + size]), start, len(items))


# -- manifests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """What a manifest is, as people name it: `label`, and the artifact type or signing."""

    label: str
    detail: str = ""

    @property
    def is_list(self) -> bool:
        return self.label in ("manifest list", "index")

    @property
    def is_image(self) -> bool:
        return self.label in ("image", "schema1")


@dataclass(frozen=True, slots=True)
class Platform:
    """An index entry's platform; empty strings where not given."""

    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a manifest list or index."""

    digest: str
    media_type: str
    size: int | None
    platform: Platform | None
    artifact_type: str
    is_manifest: bool


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of an image, with the command that made it where the history says."""

    number: int
    digest: str
    media_type: str
    size: int | None
    command: str = ""


@dataclass(frozen=True, slots=True)
class Document:
    """A manifest read for display: its kind, schema, references and annotations.

    `size` is the manifest's own content (config plus layers) for an image, None
    for a list (whose size is its entries'); `platform` is only known from an
    index entry or the config, so it is not here.
    """

    media_type: str
    schema: str
    kind: Kind
    config_digest: str
    config_media_type: str
    config_size: int | None
    layers: tuple[Layer, ...]
    entries: tuple[Entry, ...]
    subject: str
    annotations: tuple[tuple[str, str], ...]
    size: int | None
    readable: bool = True


def read_manifest(data: bytes, media_type: str) -> Document:
    """The `Document` of stored manifest bytes served as `media_type`; never raises.

    Bytes that are not a JSON object give an unreadable document of kind "unknown".
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        return Document(
            media_type, "not JSON", Kind("unknown"), "", "", None, (), (), "", (), None, False
        )
    config = _dict(document.get("config"))
    layers = _layers(document, media_type)
    entries = tuple(_entry(e) for e in _list(document.get("manifests")) if isinstance(e, dict))
    config_size = json_size(config.get("size"))
    size: int | None = None
    if media_type not in (DOCKER_MANIFEST_LIST, OCI_INDEX):
        sizes = [config_size or 0, *(layer.size or 0 for layer in layers)]
        size = sum(sizes)
    return Document(
        media_type=media_type,
        schema=_schema(media_type, document),
        kind=_kind(media_type, document, config, entries),
        config_digest=_str(config.get("digest")),
        config_media_type=_str(config.get("mediaType")),
        config_size=config_size,
        layers=layers,
        entries=entries,
        subject=_str(_dict(document.get("subject")).get("digest")),
        annotations=pairs(document.get("annotations")),
        size=size,
    )


def _schema(media_type: str, document: dict[str, Any]) -> str:
    version = document.get("schemaVersion")
    names = {
        DOCKER_SCHEMA1: "Docker schema 1, unsigned",
        DOCKER_SCHEMA1_SIGNED: "Docker schema 1, signed",
        DOCKER_SCHEMA2: "Docker schema 2",
        DOCKER_MANIFEST_LIST: "Docker schema 2 manifest list",
        OCI_MANIFEST: "OCI image manifest",
        OCI_INDEX: "OCI image index",
    }
    name = names.get(media_type, "unknown format")
    return f"{name} (schemaVersion {version})" if isinstance(version, int) else name


def _kind(
    media_type: str, document: dict[str, Any], config: dict[str, Any], entries: Sequence[Entry]
) -> Kind:
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        return Kind("schema1", "signed" if media_type == DOCKER_SCHEMA1_SIGNED else "unsigned")
    artifact_type = _str(document.get("artifactType"))
    if media_type in (DOCKER_MANIFEST_LIST, OCI_INDEX):
        # BuildKit's legacy cache is an index of layer blobs and its cache config.
        if entries and not all(entry.is_manifest for entry in entries):
            return Kind("BuildKit cache")
        if artifact_type:
            return Kind("artifact", artifact_type)
        return Kind("manifest list" if media_type == DOCKER_MANIFEST_LIST else "index")
    config_type = _str(config.get("mediaType"))
    if config_type == BUILDKIT_CACHE_CONFIG:
        return Kind("BuildKit cache")
    if artifact_type or (config_type and config_type not in IMAGE_CONFIG_TYPES):
        return Kind("artifact", artifact_type or config_type)
    return Kind("image")


def _entry(raw: dict[str, Any]) -> Entry:
    platform = raw.get("platform")
    media_type = _str(raw.get("mediaType"))
    return Entry(
        digest=_str(raw.get("digest")),
        media_type=media_type,
        size=json_size(raw.get("size")),
        platform=_platform(platform) if isinstance(platform, dict) else None,
        artifact_type=_str(raw.get("artifactType")),
        is_manifest=media_type in MANIFEST_MEDIA_TYPES,
    )


def _platform(raw: dict[str, Any]) -> Platform:
    return Platform(
        os=_str(raw.get("os")),
        architecture=_str(raw.get("architecture")),
        variant=_str(raw.get("variant")),
        os_version=_str(raw.get("os.version")),
    )


def _layers(document: dict[str, Any], media_type: str) -> tuple[Layer, ...]:
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        # fsLayers and history run from the top layer down; show them bottom first.
        fs_layers = list(reversed(_list(document.get("fsLayers"))))
        history = list(reversed(_list(document.get("history"))))
        layers = []
        for i, raw in enumerate(fs_layers):
            entry = _dict(history[i]) if i < len(history) else {}
            command = _schema1_command(entry.get("v1Compatibility"))
            layers.append(
                Layer(
                    i + 1,
                    _str(_dict(raw).get("blobSum")),
                    "application/vnd.docker.container.image.rootfs.diff+x-gtar",
                    None,
                    command,
                )
            )
        return tuple(layers)
    return tuple(
        Layer(
            i + 1, _str(raw.get("digest")), _str(raw.get("mediaType")), json_size(raw.get("size"))
        )
        for i, raw in enumerate(_list(document.get("layers")))
        if isinstance(raw, dict)
    )


def _schema1_command(v1_compatibility: object) -> str:
    if not isinstance(v1_compatibility, str):
        return ""
    try:
        v1 = orjson.loads(v1_compatibility)
    except orjson.JSONDecodeError:
        return ""
    command = _dict(_dict(v1).get("container_config")).get("Cmd")
    return " ".join(_strings(command))


def with_commands(layers: Sequence[Layer], history: Sequence[HistoryRow]) -> tuple[Layer, ...]:
    """`layers` with the command of each, from the config's non-empty history entries.

    The history has one entry per layer plus entries marked `empty_layer`; when
    the counts do not match, the commands cannot be matched and are left out.
    """
    made = [row for row in history if not row.empty_layer]
    if len(made) != len(layers):
        return tuple(layers)
    return tuple(
        Layer(layer.number, layer.digest, layer.media_type, layer.size, row.created_by)
        for layer, row in zip(layers, made, strict=True)
    )


# -- image configs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One entry of an image's history."""

    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class Config:
    """The summary of an image config people look for; empty where the config has nothing."""

    platform: Platform = field(default_factory=Platform)
    created: str = ""
    author: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    history: tuple[HistoryRow, ...] = ()
    readable: bool = True


def read_config(data: bytes) -> Config:
    """The `Config` of image config bytes (OCI or Docker, or a schema1 v1Compatibility)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Config(readable=False)
    if not isinstance(document, dict):
        return Config(readable=False)
    inner = _dict(document.get("config")) or _dict(document.get("container_config"))
    return Config(
        platform=Platform(
            os=_str(document.get("os")),
            architecture=_str(document.get("architecture")),
            variant=_str(document.get("variant")),
            os_version=_str(document.get("os.version")),
        ),
        created=_str(document.get("created")),
        author=_str(document.get("author")),
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")),
        working_dir=_str(inner.get("WorkingDir")),
        user=_str(inner.get("User")),
        exposed_ports=tuple(sorted(str(port) for port in _dict(inner.get("ExposedPorts")))),
        labels=pairs(inner.get("Labels")),
        history=tuple(
            HistoryRow(
                created=_str(row.get("created")),
                created_by=_str(row.get("created_by")),
                comment=_str(row.get("comment")),
                empty_layer=row.get("empty_layer") is True,
            )
            for row in (_dict(raw) for raw in _list(document.get("history")))
        ),
    )


def schema1_config(data: bytes) -> Config:
    """The config a schema1 manifest carries in its top `history` entry, or an unreadable one."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Config(readable=False)
    history = _list(_dict(document).get("history"))
    top = _dict(history[0]).get("v1Compatibility") if history else None
    return read_config(top.encode()) if isinstance(top, str) else Config(readable=False)


def pretty_json(data: bytes, limit: int = MAX_JSON) -> tuple[str, bool]:
    """The manifest pretty-printed (its bytes as text if not JSON), and whether it was cut.

    Control and bidi characters are made visible, as by `text`.
    """
    try:
        shown = orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        shown = data.decode("utf-8", errors="replace")
    if len(shown) <= limit:
        return visible(shown), False
    return visible(shown[:limit]), True


# -- reading untrusted JSON --------------------------------------------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def json_size(value: object) -> int | None:
    """A JSON size field: a non-negative integer, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(item for item in _list(value) if isinstance(item, str))


def pairs(value: object) -> tuple[tuple[str, str], ...]:
    """The string entries of a JSON object (labels, annotations), sorted by key."""
    return tuple(sorted((str(k), v) for k, v in _dict(value).items() if isinstance(v, str)))
