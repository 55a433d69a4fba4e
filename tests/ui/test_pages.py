"""The web page's handlers through aiohttp's test client: what pages show, who may do what."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.config import AuthConfig, Config, StorageConfig, TokenConfig, UiConfig
from registry.ui import handlers, views
from tests.api.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    push_blob,
    push_image,
    put_manifest,
)
from tests.manifest.samples import DOCKER_SCHEMA1
from tests.ui.conftest import UiFactory, csrf_of, log_in, without_tags

HTML = {"Accept": "text/html,application/xhtml+xml"}
HOSTILE = '<script>alert("x")</script>\u202egnp.exe \u0000 Zoë 🐳'


async def page(client: TestClient, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=HTML)
    body = await response.text()
    assert response.status == status, body[:2000]
    assert response.headers["Content-Type"].startswith("text/html")
    return body


async def push_custom_image(
    client: TestClient,
    name: str,
    tag: str,
    config: dict[str, Any],
    layers: list[bytes],
    annotations: dict[str, str] | None = None,
) -> str:
    """Push an image of this config and these layers as `tag`; its digest."""
    image = await push_image(client, name, tag, layers, config_json=config, annotations=annotations)
    return image.digest


async def push_index(client: TestClient, name: str, tag: str) -> tuple[str, list[str]]:
    """An index of an amd64 and an arm64/v8 image; its digest and the children's."""
    children = []
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        config = {"architecture": arch, "os": "linux", "variant": variant}
        children.append(
            await push_custom_image(client, name, f"child-{arch}", config, [arch.encode() * 10])
        )
    platforms = [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    entries = []
    for digest, platform in zip(children, platforms, strict=True):
        manifest = await client.get(f"/v2/{name}/manifests/{digest}")
        data = await manifest.read()
        entries.append({**descriptor(OCI_MANIFEST, data), "platform": platform})
    index = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return await put_manifest(client, name, tag, index, OCI_INDEX), children


class TestEntry:
    async def test_a_browser_asking_for_the_root_is_sent_to_the_page(self, ui: UiFactory) -> None:
        client = await ui()
        response = await client.get("/", headers=HTML, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/ui/"

    async def test_the_page_without_its_slash_is_sent_to_the_page(self, ui: UiFactory) -> None:
        client = await ui()
        response = await client.get("/ui", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/ui/"

    async def test_an_api_client_asking_for_the_root_gets_the_oci_404(self, ui: UiFactory) -> None:
        client = await ui()
        response = await client.get("/", headers={"Accept": "application/json"})
        assert response.status == 404
        assert (await response.json())["errors"][0]["code"] == "NOT_FOUND"

    async def test_the_api_is_untouched(self, ui: UiFactory) -> None:
        client = await ui()
        response = await client.get("/v2/")
        assert response.status == 200
        assert await response.json() == {}

    async def test_disabled_page_is_not_served(self, ui: UiFactory) -> None:
        client = await ui(Config(ui=UiConfig(enabled=False)))
        assert (await client.get("/ui/")).status == 404
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 404

    async def test_page_is_off_when_another_token_server_knows_the_users(
        self, ui: UiFactory, tmp_path: Path
    ) -> None:
        key = tmp_path / "issuer.pem"
        key.write_bytes(
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        token = TokenConfig(realm="https://auth.example/token", public_keys=(str(key),))
        client = await ui(Config(auth=AuthConfig(mode="token", token=token)))
        assert (await client.get("/ui/")).status == 404

    async def test_pages_forbid_framing_and_inline_scripts(self, ui: UiFactory) -> None:
        client = await ui()
        response = await client.get("/ui/")
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


class TestRepositories:
    async def test_listing_shows_each_repository_with_its_tag_count(self, ui: UiFactory) -> None:
        client = await ui()
        await push_image(client, "team/app", "v1")
        await push_image(client, "team/app", "v2")
        await push_image(client, "other/tool", "latest")
        text = without_tags(await page(client, "/ui/"))
        assert re.search(r"team/app\s*2", text)
        assert re.search(r"other/tool\s*1", text)

    async def test_filter_keeps_names_containing_the_text(self, ui: UiFactory) -> None:
        client = await ui()
        await push_image(client, "team/app", "v1")
        await push_image(client, "other/tool", "v1")
        body = await page(client, "/ui/?q=tool")
        assert "other/tool" in body
        assert "team/app" not in body

    async def test_listing_is_paged_by_name(
        self, ui: UiFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(handlers, "LISTING_ROWS", 2)
        client = await ui()
        for name in ("a/one", "a/two", "b/three"):
            await push_image(client, name, "v1")
        first = await page(client, "/ui/")
        assert "a/one" in first and "a/two" in first and "b/three" not in first
        next_link = re.search(r'id="next" href="([^"]+)"', first)
        assert next_link is not None
        second = await page(client, next_link.group(1).replace("&amp;", "&"))
        assert "b/three" in second and "a/one" not in second
        assert 'id="next"' not in second


class TestRepositoryPage:
    async def test_tags_say_kind_size_platforms_and_how_to_pull(self, ui: UiFactory) -> None:
        client = await ui()
        index, _ = await push_index(client, "team/multi", "latest")
        body = await page(client, "/ui/r/team/multi")
        row = re.search(r'<tr data-tag="latest">(.*?)</tr>', body, re.S)
        assert row is not None
        cells = without_tags(row.group(1))
        assert "index" in cells
        assert "linux/amd64, linux/arm64/v8" in cells
        assert views.text(index[:19]) in cells  # the short digest
        assert f"docker pull 127.0.0.1:{client.port}/team/multi:latest" in row.group(1)
        # The two children's config and one layer each, added up.
        assert "100 B" not in cells and "B" in cells

    async def test_a_list_with_a_child_not_stored_is_of_unknown_size(self, ui: UiFactory) -> None:
        """As on a pull-through cache, which holds only the platforms pulled."""
        client = await ui()
        _, children = await push_index(client, "team/multi", "latest")
        assert (await client.delete(f"/v2/team/multi/manifests/{children[1]}")).status == 202
        body = await page(client, "/ui/r/team/multi")
        row = re.search(r'<tr data-tag="latest">(.*?)</tr>', body, re.S)
        assert row is not None
        assert "unknown" in without_tags(row.group(1))

    async def test_push_times_are_shown_on_tags_and_repositories(self, ui: UiFactory) -> None:
        client = await ui()
        before = time.time()
        await push_image(client, "team/app", "v1")
        today = handlers.format_time(before)[:10]  # the minute may turn; the date hardly
        row = re.search(r'<tr data-tag="v1">(.*?)</tr>', await page(client, "/ui/r/team/app"), re.S)
        assert row is not None and today in row.group(1)
        assert today in await page(client, "/ui/")
        assert "unknown" not in without_tags(await page(client, "/ui/"))

    async def test_unknown_repository_is_not_found(self, ui: UiFactory) -> None:
        client = await ui()
        body = await page(client, "/ui/r/no/such", 404)
        assert "no such repository" in body


class TestManifestPage:
    async def test_index_shows_its_platform_table_linking_each_manifest(
        self, ui: UiFactory
    ) -> None:
        client = await ui()
        _, children = await push_index(client, "team/multi", "latest")
        body = await page(client, "/ui/r/team/multi/-/m/latest")
        table = re.search(r'<table id="platforms">.*?<tbody>(.*?)</tbody>', body, re.S)
        assert table is not None
        rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
        assert [without_tags(r).split()[:3] for r in rows] == [
            ["linux", "amd64", "sha256:" + children[0][7:19]],
            ["linux", "arm64", "v8"],
        ]
        for child in children:
            assert f'href="/ui/r/team/multi/-/m/{child.replace(":", "%3A")}"' in body

    async def test_image_shows_config_layers_and_the_command_of_each(self, ui: UiFactory) -> None:
        client = await ui()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-05-01T10:00:00Z",
            "config": {
                "Cmd": ["serve"],
                "Env": ["MODE=prod"],
                "WorkingDir": "/srv",
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": {"team": "infra"},
            },
            "history": [{"created_by": "ADD base /"}, {"created_by": "RUN build"}],
        }
        await push_custom_image(client, "team/app", "v1", config, [b"base", b"build"])
        text = without_tags(await page(client, "/ui/r/team/app/-/m/v1"))
        for expected in (
            "linux/amd64",
            "2024-05-01T10:00:00Z",
            "serve",
            "MODE=prod",
            "/srv",
            "8080/tcp",
            "infra",
            "ADD base /",
            "RUN build",
            "image",
        ):
            assert expected in text

    async def test_tags_of_the_digest_are_listed(self, ui: UiFactory) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        await put_manifest(client, "team/app", "stable", image.manifest)
        body = await page(client, f"/ui/r/team/app/-/m/{image.digest}")
        tags = re.search(r'<dd id="tags-here">(.*?)</dd>', body, re.S)
        assert tags is not None
        assert re.findall(r">(\w+)</a>", tags.group(1)) == ["stable", "v1"]

    async def test_referrers_are_grouped_by_artifact_type(self, ui: UiFactory) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        subject = descriptor(OCI_MANIFEST, image.manifest)
        sbom = await push_image(
            client,
            "team/app",
            None,
            [b"sbom"],
            subject=subject,
            artifact_type="application/spdx+json",
            annotations={"org.example": "sbom"},
        )
        body = await page(client, "/ui/r/team/app/-/m/v1")
        assert "application/spdx+json" in body
        assert sbom.digest[:19] in body
        assert 'id="no-referrers"' not in body

    async def test_raw_json_is_pretty_printed_and_the_bytes_are_linked(self, ui: UiFactory) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        body = await page(client, "/ui/r/team/app/-/m/v1")
        assert "&#34;schemaVersion&#34;: 2" in body
        raw = await client.get(f"/ui/r/team/app/-/raw/{image.digest}")
        assert raw.headers["Content-Type"].startswith("text/plain")
        assert await raw.read() == image.manifest

    async def test_schema1_shows_its_inline_config_and_the_command_of_each_layer(
        self, ui: UiFactory
    ) -> None:
        client = await ui()
        layers = [b"bottom", b"top"]
        for layer in layers:
            await push_blob(client, "old/app", layer)
        v1 = [  # top layer first, as schema1 lists them
            {"id": "b", "architecture": "amd64", "os": "linux",
             "container_config": {"Cmd": ["/bin/sh", "-c", "make top"]}},
            {"id": "a", "container_config": {"Cmd": ["/bin/sh", "-c", "ADD bottom"]}},
        ]  # fmt: skip
        manifest = orjson.dumps(
            {
                "schemaVersion": 1,
                "name": "old/app",
                "tag": "v1",
                "architecture": "amd64",
                "fsLayers": [{"blobSum": digest_of(layer)} for layer in reversed(layers)],
                "history": [{"v1Compatibility": orjson.dumps(h).decode()} for h in v1],
            }
        )
        await put_manifest(client, "old/app", "v1", manifest, DOCKER_SCHEMA1)
        row = re.search(r'<tr data-tag="v1">(.*?)</tr>', await page(client, "/ui/r/old/app"), re.S)
        assert row is not None
        assert "schema1 <small>unsigned</small>" in row.group(1)
        assert "linux/amd64" in row.group(1)
        body = await page(client, "/ui/r/old/app/-/m/v1")
        assert "Docker schema 1, unsigned (schemaVersion 1)" in without_tags(body)
        table = re.search(r'<table id="layers">.*?<tbody>(.*?)</tbody>', body, re.S)
        assert table is not None
        commands = re.findall(r'<td class="command"><code>([^<]*)</code>', table.group(1))
        assert commands == ["/bin/sh -c ADD bottom", "/bin/sh -c make top"]

    async def test_the_raw_view_is_sandboxed_text(self, ui: UiFactory) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        raw = await client.get(f"/ui/r/team/app/-/raw/{image.digest}")
        assert raw.headers["Content-Security-Policy"] == "sandbox"
        assert raw.headers["X-Content-Type-Options"] == "nosniff"

    async def test_unknown_tag_is_not_found(self, ui: UiFactory) -> None:
        client = await ui()
        await push_image(client, "team/app", "v1")
        await page(client, "/ui/r/team/app/-/m/nope", 404)


class TestHostileContent:
    async def test_labels_annotations_env_and_history_are_escaped(self, ui: UiFactory) -> None:
        client = await ui()
        config = {
            "architecture": HOSTILE,
            "os": "linux",
            "author": HOSTILE,
            "config": {
                "Env": [f"X={HOSTILE}"],
                "Labels": {HOSTILE: HOSTILE},
                "Cmd": [HOSTILE],
                "ExposedPorts": {HOSTILE: {}},
            },
            "history": [{"created_by": HOSTILE, "comment": HOSTILE}],
        }
        await push_custom_image(
            client, "team/app", "evil", config, [b"one"], annotations={HOSTILE: HOSTILE}
        )
        for path in ("/ui/r/team/app/-/m/evil", "/ui/r/team/app", "/ui/"):
            body = await page(client, path)
            assert "<script>alert" not in body
            assert "\u202e" not in body
            assert "\x00" not in body
        body = await page(client, "/ui/r/team/app/-/m/evil")
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\\u202egnp.exe" in body
        assert "Zoë 🐳" in body

    async def test_a_4_mib_manifest_renders_as_a_bounded_page(self, ui: UiFactory) -> None:
        client = await ui()
        annotations = {f"key.{i:06d}": "v" * 100 for i in range(36_000)}
        digest = await push_custom_image(
            client, "team/big", "v1", {"os": "linux"}, [b"x"], annotations=annotations
        )
        raw = await client.get(f"/v2/team/big/manifests/{digest}")
        assert len(await raw.read()) > 3_900_000
        body = await page(client, "/ui/r/team/big/-/m/v1")
        assert len(body) < 600_000
        assert "and 35800 more" in body

    async def test_a_2000_layer_image_shows_its_layers_a_page_at_a_time(
        self, ui: UiFactory
    ) -> None:
        client = await ui()
        layers = [f"layer {i}".encode() for i in range(2000)]
        history = [{"created_by": f"RUN step {i}"} for i in range(2000)]
        config = {"os": "linux", "architecture": "amd64", "history": history}
        await push_custom_image(client, "team/deep", "v1", config, layers)
        first = await page(client, "/ui/r/team/deep/-/m/v1")
        rows = re.search(r'<table id="layers">(.*?)</table>', first, re.S)
        assert rows is not None and rows.group(1).count("<tr>") == 1 + views.PAGE_ROWS
        assert "rows 1\N{EN DASH}100 of 2000" in first
        last = await page(client, "/ui/r/team/deep/-/m/v1?page=19")
        assert "RUN step 1999" in last
        assert "RUN step 1899" not in last
        assert "rows 1901\N{EN DASH}2000 of 2000" in last


class TestDelete:
    async def test_confirmation_names_the_other_tags_that_go_with_a_manifest(
        self, ui: UiFactory
    ) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        await put_manifest(client, "team/app", "stable", image.manifest)
        body = await page(client, f"/ui/r/team/app/-/delete?reference={image.digest}")
        doomed = re.search(r'id="doomed-tags">([^<]*)<', body)
        assert doomed is not None and doomed.group(1) == "stable, v1"

    async def test_deleting_a_tag_through_the_form_removes_it_from_the_api(
        self, ui: UiFactory
    ) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        await put_manifest(client, "team/app", "stable", image.manifest)
        form = await page(client, "/ui/r/team/app/-/delete?reference=v1")
        response = await client.post(
            "/ui/r/team/app/-/delete",
            data={"reference": "v1", "csrf": csrf_of(form)},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == "/ui/r/team/app?deleted=v1"
        assert (await client.get("/v2/team/app/manifests/v1")).status == 404
        assert (await client.get("/v2/team/app/manifests/stable")).status == 200

    async def test_deleting_a_manifest_removes_every_tag_of_it(self, ui: UiFactory) -> None:
        client = await ui()
        image = await push_image(client, "team/app", "v1")
        await put_manifest(client, "team/app", "stable", image.manifest)
        form = await page(client, f"/ui/r/team/app/-/delete?reference={image.digest}")
        response = await client.post(
            "/ui/r/team/app/-/delete", data={"reference": image.digest, "csrf": csrf_of(form)}
        )
        assert response.status == 200  # the repository page after the redirect
        for reference in ("v1", "stable", image.digest):
            assert (await client.get(f"/v2/team/app/manifests/{reference}")).status == 404

    @pytest.mark.parametrize("token", ["", "forged"])
    async def test_a_form_without_the_session_token_deletes_nothing(
        self, ui: UiFactory, token: str
    ) -> None:
        client = await ui()
        await push_image(client, "team/app", "v1")
        await page(client, "/ui/")  # has a session, but does not send its token
        response = await client.post(
            "/ui/r/team/app/-/delete", data={"reference": "v1", "csrf": token}
        )
        assert response.status == 403
        assert (await client.get("/v2/team/app/manifests/v1")).status == 200

    @pytest.mark.parametrize(
        ("origin", "status", "left"),
        [
            ("https://evil.example", 403, 200),  # another site's form
            # Behind a proxy that terminates TLS, the browser's https Origin names this host.
            ("https://127.0.0.1:{port}", 303, 404),
        ],
    )
    async def test_a_form_is_taken_only_from_a_page_of_this_host(
        self, ui: UiFactory, origin: str, status: int, left: int
    ) -> None:
        client = await ui()
        await push_image(client, "team/app", "v1")
        form = await page(client, "/ui/r/team/app/-/delete?reference=v1")
        response = await client.post(
            "/ui/r/team/app/-/delete",
            data={"reference": "v1", "csrf": csrf_of(form)},
            headers={"Origin": origin.format(port=client.port)},
            allow_redirects=False,
        )
        assert response.status == status
        assert (await client.get("/v2/team/app/manifests/v1")).status == left

    async def test_with_deletes_disabled_there_is_no_button_and_no_delete(
        self, ui: UiFactory, htpasswd_config: Config
    ) -> None:
        """Even alice, whom the rules let delete, with her session's valid token."""
        client = await ui()
        await push_image(client, "team/app", "v1")
        storage = StorageConfig(driver="inmemory", delete=False)
        client = await ui(dataclasses.replace(htpasswd_config, storage=storage))
        await log_in(client, "alice")
        body = await page(client, "/ui/r/team/app/-/m/v1")
        assert "delete-tag" not in body
        response = await client.post(
            "/ui/r/team/app/-/delete", data={"reference": "v1", "csrf": csrf_of(body)}
        )
        assert response.status == 403
        assert "v1" in await page(client, "/ui/r/team/app")


class TestAuth:
    @pytest.fixture
    async def seeded(self, ui: UiFactory, htpasswd_config: Config) -> TestClient:
        client = await ui()
        for name in ("team/app", "secret/db", "public/base"):
            await push_image(client, name, "v1")
        return await ui(htpasswd_config)

    async def test_anonymous_visitors_see_only_what_anonymous_rules_let_them_pull(
        self, seeded: TestClient
    ) -> None:
        body = await page(seeded, "/ui/")
        assert "public/base" in body
        assert "team/app" not in body and "secret/db" not in body
        assert 'id="login"' in body

    async def test_a_user_sees_only_repositories_they_may_pull(self, seeded: TestClient) -> None:
        assert await log_in(seeded, "bob") == 303
        body = await page(seeded, "/ui/")
        assert "team/app" in body and "public/base" in body
        assert "secret/db" not in body
        await page(seeded, "/ui/r/secret/db", 404)
        await page(seeded, "/ui/r/secret/db/-/m/v1", 404)

    async def test_delete_buttons_appear_only_for_users_who_may_delete(
        self, seeded: TestClient
    ) -> None:
        await log_in(seeded, "bob")
        body = await page(seeded, "/ui/r/team/app/-/m/v1")
        assert "delete-tag" not in body
        denied = await seeded.post(
            "/ui/r/team/app/-/delete", data={"reference": "v1", "csrf": csrf_of(body)}
        )
        assert denied.status == 403
        await log_in(seeded, "alice")
        assert "delete-tag" in await page(seeded, "/ui/r/team/app/-/m/v1")

    async def test_in_token_mode_the_users_of_the_built_in_token_endpoint_log_in(
        self, ui: UiFactory, htpasswd_config: Config, tmp_path: Path
    ) -> None:
        key = tmp_path / "token.key"
        key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        client = await ui()
        for name in ("team/app", "secret/db"):
            await push_image(client, name, "v1")
        auth = dataclasses.replace(
            htpasswd_config.auth, mode="token", token=TokenConfig(signing_key=str(key))
        )
        client = await ui(dataclasses.replace(htpasswd_config, auth=auth))
        assert "team/app" not in await page(client, "/ui/")
        assert await log_in(client, "bob") == 303
        body = await page(client, "/ui/")
        assert "team/app" in body and "secret/db" not in body

    async def test_a_wrong_password_is_refused(self, seeded: TestClient) -> None:
        assert await log_in(seeded, "bob", "wrong") == 401
        assert "team/app" not in await page(seeded, "/ui/")

    async def test_a_tampered_session_cookie_counts_as_no_session(self, seeded: TestClient) -> None:
        await log_in(seeded, "bob")
        cookie = seeded.session.cookie_jar.filter_cookies(seeded.make_url("/ui/"))["cargobay_ui"]
        sid, _, rest = cookie.value.split(".", 2)
        forged = f"{sid}.{'YWxpY2U'}.{rest}"  # "alice", with bob's signature
        seeded.session.cookie_jar.update_cookies({"cargobay_ui": forged}, seeded.make_url("/ui/"))
        body = await page(seeded, "/ui/")
        assert "team/app" not in body
        assert 'id="user"' not in body

    async def test_login_sends_only_to_pages_of_the_ui(self, seeded: TestClient) -> None:
        form = await page(seeded, "/ui/login")
        response = await seeded.post(
            "/ui/login",
            data={
                "username": "bob",
                "password": "bob-pw",
                "csrf": csrf_of(form),
                "next": "//evil.example/",
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/ui/"

    async def test_no_password_hash_or_key_reaches_the_page(
        self, seeded: TestClient, htpasswd_config: Config
    ) -> None:
        await log_in(seeded, "alice")
        hashes = Path(htpasswd_config.auth.htpasswd.path).read_text()  # noqa: ASYNC240
        body = await page(seeded, "/ui/r/team/app/-/m/v1")
        for line in hashes.splitlines():
            assert line.split(":", 1)[1] not in body
        assert "alice-pw" not in body


class TestFormatting:
    def test_short_digest_keeps_what_eyes_compare(self) -> None:
        digest = "sha256:" + "ab" * 32
        assert handlers.short_digest(digest) == "sha256:abababababab"

    def test_a_foreign_digest_is_cut_and_shown_safely(self) -> None:
        shown = handlers.short_digest("\u202e" * 500 + ":deadbeef")
        assert "\u202e" not in shown
        assert shown == "\\u202e" * 19 + "…"  # 19 characters, each written out

    def test_sizes_read_as_people_say_them(self) -> None:
        assert [handlers.format_size(n) for n in (None, 532, 2_500_000)] == [
            "unknown",
            "532 B",
            "2.4 MiB",
        ]
