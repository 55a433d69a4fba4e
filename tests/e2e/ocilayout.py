"""Write OCI image layouts from Python, so the end-to-end tests need no internet.

An OCI image layout is a folder with `oci-layout`, `index.json` and
`blobs/sha256/<hex>`; skopeo reads it as `oci:DIR:TAG`. The images written here
are real ones: each layer is a gzip'd tar built with `tarfile`, and the image
config lists the layers' uncompressed digests as `rootfs.diff_ids`. Everything is
deterministic (fixed mtimes, owners and gzip headers), so the same call always
yields the same digests.

    layout = OciLayout(tmp_path / "src")
    image = layout.add_image("v1", [{"etc/hello": b"hi"}, {"bin/tool": b"..."}])
    index = layout.add_index("multi", ["amd64", "arm64"])
    layout.write()
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_LAYOUT_VERSION = "1.0.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

#: A layer's content: path inside the image -> file bytes.
LayerFiles = Mapping[str, bytes]


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted JSON: stable bytes, so stable digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Layer:
    """One gzip'd tar layer: its compressed bytes and the digest of the uncompressed tar."""

    compressed: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.compressed)


def make_layer(files: LayerFiles) -> Layer:
    """A reproducible gzip'd tar holding `files` (directories are created as needed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen_dirs:
                    seen_dirs.add(directory)
                    tar.addfile(_tar_info(directory, tarfile.DIRTYPE, 0o755))
            data = files[path]
            info = _tar_info("/".join(parts), tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    compressed = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return Layer(compressed=compressed, diff_id=sha256_digest(tar_bytes))


def _tar_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


@dataclass(frozen=True)
class Image:
    """A single-platform image as written to the layout."""

    manifest: bytes
    config: bytes
    layers: tuple[Layer, ...]
    architecture: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def blob_digests(self) -> list[str]:
        """The config's digest, then each layer's, in manifest order."""
        return [sha256_digest(self.config), *(layer.digest for layer in self.layers)]


@dataclass(frozen=True)
class Index:
    """A multi-platform image index and the images it lists."""

    manifest: bytes
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


@dataclass
class OciLayout:
    """An OCI image layout being assembled in memory; `write()` puts it on disk."""

    path: Path
    _blobs: dict[str, bytes] = field(default_factory=dict)
    _refs: list[dict[str, Any]] = field(default_factory=list)

    def add_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        self._blobs[digest] = data
        return digest

    def build_image(
        self,
        layers: Sequence[LayerFiles],
        *,
        architecture: str = "amd64",
        labels: Mapping[str, str] | None = None,
    ) -> Image:
        """Store the blobs of an image made of `layers` (bottom first); tag nothing."""
        built = tuple(make_layer(files) for files in layers)
        config = canonical_json(
            {
                "architecture": architecture,
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": {
                    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                    "Cmd": ["/bin/sh"],
                    "Labels": dict(labels or {}),
                },
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
                "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ocilayout.py"}]
                * len(built),
            }
        )
        self.add_blob(config)
        for layer in built:
            self.add_blob(layer.compressed)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [_descriptor(OCI_LAYER_GZIP, layer.compressed) for layer in built],
            }
        )
        self.add_blob(manifest)
        return Image(manifest=manifest, config=config, layers=built, architecture=architecture)

    def add_image(
        self,
        tag: str,
        layers: Sequence[LayerFiles],
        *,
        architecture: str = "amd64",
        labels: Mapping[str, str] | None = None,
    ) -> Image:
        """A multi-layer image, referenced from `index.json` as `tag`."""
        image = self.build_image(layers, architecture=architecture, labels=labels)
        self._refs.append(_descriptor(OCI_MANIFEST, image.manifest, annotations={REF_NAME: tag}))
        return image

    def add_index(self, tag: str, architectures: Sequence[str] = ("amd64", "arm64")) -> Index:
        """An image index with one two-layer image per architecture, referenced as `tag`."""
        images = tuple(
            self.build_image(
                [
                    {"etc/os-release": b"ID=cargobay-e2e\n"},
                    {f"opt/{arch}/bin": f"binary for {arch}\n".encode() * 64},
                ],
                architecture=arch,
            )
            for arch in architectures
        )
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    _descriptor(
                        OCI_MANIFEST,
                        image.manifest,
                        platform={"architecture": image.architecture, "os": "linux"},
                    )
                    for image in images
                ],
            }
        )
        self.add_blob(manifest)
        self._refs.append(_descriptor(OCI_INDEX, manifest, annotations={REF_NAME: tag}))
        return Index(manifest=manifest, images=images)

    def write(self) -> Path:
        """Write `oci-layout`, `index.json` and every blob below `path`; return `path`."""
        blob_dir = self.path / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for digest, data in self._blobs.items():
            (blob_dir / digest.removeprefix("sha256:")).write_bytes(data)
        (self.path / "oci-layout").write_bytes(
            canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
        )
        (self.path / "index.json").write_bytes(
            canonical_json({"schemaVersion": 2, "manifests": self._refs})
        )
        return self.path


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def read_layout_manifest(path: Path, tag: str) -> tuple[bytes, str]:
    """The manifest (or index) bytes `index.json` of the layout at `path` names `tag`, and
    their media type."""
    index = json.loads((path / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            return read_layout_blob(path, entry["digest"]), entry["mediaType"]
    raise KeyError(f"no manifest tagged {tag!r} in {path}/index.json")


def read_layout_blob(path: Path, digest: str) -> bytes:
    """A blob of the layout at `path`, checked against its digest."""
    algorithm, _, hexdigest = digest.partition(":")
    data = (path / "blobs" / algorithm / hexdigest).read_bytes()
    assert sha256_digest(data) == digest, f"blob {digest} in {path} is corrupt"
    return data
