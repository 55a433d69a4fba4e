"""The pull-through cache with real clients and a real upstream on loopback.

The upstream is CNCF Distribution 2.8 with the source images pushed by skopeo
(and its access log on, to count what the mirror asks of it), or Cargobay
itself in token-auth mode for the Bearer flow. The mirror is a Cargobay with
`[[proxy.upstreams]]`; skopeo, podman and the Docker engine pull through it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.checks import (
    SourceImages,
    assert_serves_image,
    assert_serves_index,
    docker_ref,
)
from tests.e2e.processes import ServerFactory, ServerProcess, Skopeo

pytestmark = pytest.mark.e2e

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def upstream_config(
    upstream: ServerProcess,
    prefix: str = "dist",
    *,
    name: str = "dist",
    default: bool = False,
    tag_ttl_seconds: int = 300,
    credentials: tuple[str, str] | None = None,
) -> str:
    """The `[[proxy.upstreams]]` table mirroring `upstream` under `prefix`."""
    lines = [
        "[[proxy.upstreams]]",
        f'name = "{name}"',
        f'url = "{upstream.url}"',
        f'prefix = "{prefix}"',
        f"default = {'true' if default else 'false'}",
        f"tag_ttl_seconds = {tag_ttl_seconds}",
        "connect_timeout = 2.0",
        "read_timeout = 10.0",
    ]
    if credentials is not None:
        lines += [f'username = "{credentials[0]}"', f'password = "{credentials[1]}"']
    return "\n".join(lines) + "\n"


def push(skopeo: Skopeo, images: SourceImages, server: ServerProcess, repo: str, tag: str) -> None:
    """Push the source image `tag` (every platform of an index) to `server` as `repo:tag`."""
    skopeo.copy(images.oci(tag), docker_ref(server, repo, tag), "--all")


def upstream_gets(upstream: ServerProcess, path_part: str) -> int:
    """How many GETs of a path containing `path_part` Distribution's access log holds."""
    pattern = re.compile(r'"GET (\S+) HTTP')
    text = upstream.log_path.read_text(errors="replace")
    return sum(1 for m in pattern.finditer(text) if path_part in m.group(1))


@pytest.fixture
def upstream(distribution_factory: ServerFactory) -> ServerProcess:
    """Distribution 2.8 with its access log on."""
    return distribution_factory(access_log=True)


class TestPrefixRoute:
    def test_skopeo_pulls_an_image_and_an_index_through_the_prefix(
        self,
        upstream: ServerProcess,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        tmp_path: Path,
    ) -> None:
        push(skopeo, images, upstream, "team/app", "app")
        push(skopeo, images, upstream, "team/app", "multi")
        mirror = cargobay_factory(extra_config=upstream_config(upstream))
        assert_serves_image(skopeo, mirror, "dist/team/app", "app", images.app, tmp_path)
        assert_serves_index(skopeo, mirror, "dist/team/app", "multi", images.multi, tmp_path)
