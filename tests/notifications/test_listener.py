"""Events from the services: each push, pull, delete and mount the API serves, once, with the
request that caused it; none for an action that failed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import Config, EndpointConfig, NotificationsConfig
from registry.drivers.inmemory import InMemoryDriver
from tests.api.oci import OCI_MANIFEST, digest_of, push_blob, push_image
from tests.notifications.conftest import Receiver

BLOB = "application/octet-stream"


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[TestClient]:
    """A registry sending every event to `receiver`."""
    endpoint = EndpointConfig(name="test", url=receiver.url, threshold=1, backoff=0.05)
    config = Config(notifications=NotificationsConfig(endpoints=(endpoint,)))
    test_client = TestClient(TestServer(create_app(config, InMemoryDriver())))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def events(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    """The first `count` events the receiver got (waiting for them), in order."""
    found: list[dict[str, Any]] = []
    deliveries = 0
    while len(found) < count:
        deliveries += 1
        found = [
            e for d in await receiver.wait_for(deliveries) for e in json.loads(d.body)["events"]
        ]
    return found


def summary(event: dict[str, Any]) -> tuple[str, str, str, str | None]:
    t = event["target"]
    return event["action"], t["repository"], t.get("mediaType", ""), t.get("tag")


class TestPushAndPull:
    async def test_push_sends_blob_and_manifest_pushes_with_the_request(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        layers = [b"only layer"]
        image = await push_image(client, "team/app", "v1", layers=layers)

        found = await events(receiver, 3)

        assert [summary(e) for e in found] == [
            ("push", "team/app", BLOB, None),
            ("push", "team/app", BLOB, None),
            ("push", "team/app", OCI_MANIFEST, "v1"),
        ]
        manifest = found[2]
        assert manifest["target"]["digest"] == image.digest
        assert manifest["target"]["size"] == len(image.manifest)
        assert manifest["request"]["method"] == "PUT"
        assert len(manifest["request"]["id"]) == 32
        assert found[1]["target"]["digest"] == digest_of(layers[0])

    async def test_pull_event_carries_the_clients_request_id(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        image = await push_image(client, "team/app", "v1", layers=[b"x"])
        await events(receiver, 3)

        response = await client.get(
            "/v2/team/app/manifests/v1",
            headers={"X-Request-Id": "pull-7", "User-Agent": "containerd/2.0"},
        )
        assert response.status == 200

        pull = (await events(receiver, 4))[3]
        assert summary(pull) == ("pull", "team/app", OCI_MANIFEST, "v1")
        assert pull["target"]["digest"] == image.digest
        assert pull["request"]["id"] == "pull-7"
        assert pull["request"]["useragent"] == "containerd/2.0"

    async def test_a_refused_push_sends_no_event(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        refused = await client.put(
            "/v2/team/app/manifests/v1",
            data=b'{"schemaVersion": 2, "layers": [{"digest": "sha256:' + b"0" * 64 + b'"}]}',
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert refused.status == 400
        await push_blob(client, "team/app", b"marker")

        (only,) = await events(receiver, 1)
        assert summary(only) == ("push", "team/app", BLOB, None)

    async def test_a_look_at_the_web_page_sends_no_pull(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        """A page reads manifests and configs to describe them: no client pulled anything."""
        image = await push_image(client, "team/app", "v1", layers=[b"only layer"])
        for page in ("/ui/r/team/app", "/ui/r/team/app/-/m/v1"):
            assert (await client.get(page)).status == 200, page
        raw = await client.get("/ui/r/team/app/-/raw/v1")
        assert await raw.read() == image.manifest
        assert (await client.get("/v2/team/app/manifests/v1")).status == 200

        found = await events(receiver, 4)

        assert [summary(e) for e in found[3:]] == [("pull", "team/app", OCI_MANIFEST, "v1")]
        assert [e["action"] for e in found[:3]] == ["push", "push", "push"]

    async def test_a_delete_from_the_web_page_sends_its_event(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        await push_image(client, "team/app", "v1", layers=[b"only layer"])
        form = await (await client.get("/ui/r/team/app/-/delete?reference=v1")).text()
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token is not None
        response = await client.post(
            "/ui/r/team/app/-/delete",
            data={"reference": "v1", "csrf": token.group(1)},
            allow_redirects=False,
        )
        assert response.status == 303

        found = await events(receiver, 4)

        assert summary(found[3]) == ("delete", "team/app", "", "v1")


class TestBlobPulls:
    async def test_blob_get_and_head_each_send_one_pull(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        """Distribution serves GET and HEAD of a blob alike, and sends a pull for each."""
        layer = b"pulled layer"
        await push_image(client, "team/app", "v1", layers=[layer])
        digest = digest_of(layer)
        await events(receiver, 3)

        got = await client.get(f"/v2/team/app/blobs/{digest}", headers={"X-Request-Id": "get-1"})
        assert (got.status, await got.read()) == (200, layer)
        headed = await client.head(f"/v2/team/app/blobs/{digest}")
        assert headed.status == 200
        await push_blob(client, "team/app", b"marker")

        get, head, marker = (await events(receiver, 6))[3:]
        assert summary(get) == summary(head) == ("pull", "team/app", BLOB, None)
        for pull in (get, head):
            assert pull["target"]["digest"] == digest
            assert pull["target"]["size"] == len(layer)
            assert pull["target"]["url"].endswith(f"/v2/team/app/blobs/{digest}")
        assert (get["request"]["method"], get["request"]["id"]) == ("GET", "get-1")
        assert head["request"]["method"] == "HEAD"
        # One event per pull: the next one is the marker's push.
        assert summary(marker) == ("push", "team/app", BLOB, None)

    async def test_pulls_of_blobs_the_repository_lacks_send_no_event(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        elsewhere = await push_blob(client, "team/other", b"only in team/other")
        await events(receiver, 1)

        for digest in (digest_of(b"never pushed"), elsewhere):
            path = f"/v2/team/app/blobs/{digest}"
            assert (await client.get(path)).status == 404
            assert (await client.head(path)).status == 404
        await push_blob(client, "team/app", b"marker")

        assert summary((await events(receiver, 2))[1]) == ("push", "team/app", BLOB, None)


class TestDeleteAndMount:
    async def test_delete_and_mount_send_their_events(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        layer = b"shared layer"
        await push_image(client, "team/app", "v1", layers=[layer])
        digest = digest_of(layer)

        mounted = await client.post(f"/v2/team/copy/blobs/uploads/?mount={digest}&from=team/app")
        assert mounted.status == 201
        assert (await client.delete("/v2/team/app/manifests/v1")).status == 202

        mount, delete = (await events(receiver, 5))[3:]
        assert summary(mount) == ("mount", "team/copy", BLOB, None)
        assert mount["target"]["fromRepository"] == "team/app"
        assert delete["action"] == "delete"
        assert delete["target"]["tag"] == "v1"


class TestSlowEndpoint:
    async def test_a_hanging_endpoint_does_not_hold_up_pushes(
        self, client: TestClient, receiver: Receiver
    ) -> None:
        receiver.hang = True

        for n in range(5):
            await push_image(client, "team/app", f"v{n}", layers=[b"layer %d" % n])

        assert receiver.deliveries == []
