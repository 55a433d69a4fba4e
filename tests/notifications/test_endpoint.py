"""One endpoint: filters, the bounded queue, delivery with retries, and both wire formats."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from registry.config import EndpointConfig
from registry.logs import RequestContext, enter_request
from registry.notifications.endpoint import Endpoint
from registry.notifications.events import ENVELOPE_MEDIA_TYPE, Event, Source, Target
from tests.metrics.conftest import sample
from tests.notifications.conftest import Receiver

SOURCE = Source("registry.test:5000", "instance-1")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32


def event(action: str = "push", repository: str = "team/app", media_type: str = MANIFEST) -> Event:
    target = Target(media_type, 123, DIGEST, repository, "manifests", tag="v1")
    return Event.now(action, target, SOURCE)


async def deliver(endpoint: Endpoint, receiver: Receiver, count: int) -> list[bytes]:
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(endpoint.run(session))
        try:
            return [d.body for d in await receiver.wait_for(count)]
        finally:
            task.cancel()


class TestFilters:
    @pytest.mark.parametrize(
        ("filters", "wanted"),
        [
            ({}, True),
            ({"actions": ("push",)}, True),
            ({"actions": ("pull", "delete")}, False),
            ({"media_types": (MANIFEST,)}, True),
            ({"media_types": ("application/octet-stream",)}, False),
            ({"repositories": ("team/*",)}, True),
            ({"repositories": ("other/**", "x")}, False),
        ],
    )
    def test_filters_let_through_only_matching_events(
        self, filters: dict[str, tuple[str, ...]], wanted: bool
    ) -> None:
        endpoint = Endpoint(EndpointConfig(url="http://127.0.0.1:1/", **filters))  # type: ignore[arg-type]
        assert endpoint.wants(event()) is wanted


class TestQueue:
    def test_a_full_queue_drops_the_oldest_events_and_counts_them(self) -> None:
        endpoint = Endpoint(EndpointConfig(name="q", url="http://127.0.0.1:1/"), queue_events=3)
        before = sample("cargobay_notification_events_total", endpoint="q", outcome="dropped")
        events = [event() for _ in range(5)]

        for e in events:
            endpoint.offer(e)

        assert list(endpoint._queue) == events[2:]
        dropped = sample("cargobay_notification_events_total", endpoint="q", outcome="dropped")
        assert dropped - before == 2


class TestDelivery:
    async def test_events_arrive_in_distributions_envelope(self, receiver: Receiver) -> None:
        endpoint = Endpoint(
            EndpointConfig(url=receiver.url, headers=("Authorization: Bearer hook-secret",))
        )
        enter_request(
            RequestContext(
                request_id="req-1",
                client="10.0.0.7",
                method="PUT",
                route="/v2/{name}/manifests/{reference}",
                host="registry.test:5000",
                scheme="https",
                useragent="skopeo/1.0",
                started=0.0,
                user="alice",
            )
        )
        endpoint.offer(event())

        (body,) = await deliver(endpoint, receiver, 1)

        delivery = receiver.deliveries[0]
        assert delivery.headers["Content-Type"] == ENVELOPE_MEDIA_TYPE
        assert delivery.headers["Authorization"] == "Bearer hook-secret"
        assert delivery.headers["User-Agent"] == "cargobay"  # no Python or aiohttp version
        (sent,) = json.loads(body)["events"]
        assert sent["action"] == "push"
        assert sent["target"] == {
            "mediaType": MANIFEST,
            "size": 123,
            "digest": DIGEST,
            "length": 123,
            "repository": "team/app",
            "url": f"https://registry.test:5000/v2/team/app/manifests/{DIGEST}",
            "tag": "v1",
        }
        assert sent["request"] == {
            "id": "req-1",
            "addr": "10.0.0.7",
            "host": "registry.test:5000",
            "method": "PUT",
            "useragent": "skopeo/1.0",
        }
        assert sent["actor"] == {"name": "alice"}
        assert sent["source"] == {"addr": "registry.test:5000", "instanceID": "instance-1"}

    async def test_cloudevents_format_sends_one_structured_cloudevent(
        self, receiver: Receiver
    ) -> None:
        endpoint = Endpoint(EndpointConfig(url=receiver.url, format="cloudevents"))
        first, second = event(), event("pull")
        endpoint.offer(first)
        endpoint.offer(second)

        await deliver(endpoint, receiver, 2)

        parsed = [
            from_http_event(HTTPMessage(d.headers, d.body))  # type: ignore[arg-type]
            for d in receiver.deliveries
        ]
        assert [p.get_type() for p in parsed] == [
            "dev.cargobay.registry.push",
            "dev.cargobay.registry.pull",
        ]
        assert parsed[0].get_id() == first.id
        assert parsed[0].get_subject() == f"team/app@{DIGEST}"
        data = parsed[0].get_data()
        assert isinstance(data, dict)
        assert data["target"]["digest"] == DIGEST

    async def test_failed_posts_are_retried_until_delivered(self, receiver: Receiver) -> None:
        receiver.fail = 4
        config = EndpointConfig(name="flaky", url=receiver.url, threshold=2, backoff=0.05)
        endpoint = Endpoint(config)
        failed = sample("cargobay_notification_events_total", endpoint="flaky", outcome="failed")
        endpoint.offer(event())

        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(endpoint.run(session))
            try:
                sent = {"endpoint": "flaky", "outcome": "sent"}
                for _ in range(1000):
                    if sample("cargobay_notification_events_total", **sent):
                        break
                    await asyncio.sleep(0.02)
            finally:
                task.cancel()

        assert receiver.attempts == 5
        assert len(receiver.deliveries) == 1
        now = sample("cargobay_notification_events_total", endpoint="flaky", outcome="failed")
        assert now - failed == 4

    async def test_a_hanging_endpoint_times_out_and_is_retried(self, receiver: Receiver) -> None:
        receiver.hang = True
        config = EndpointConfig(url=receiver.url, timeout=0.2, threshold=1, backoff=0.05)
        endpoint = Endpoint(config)
        endpoint.offer(event())
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(endpoint.run(session))
            try:
                for _ in range(200):
                    if receiver.attempts >= 2:
                        break
                    await asyncio.sleep(0.05)
                receiver.hang = False
                await receiver.wait_for(1)
            finally:
                task.cancel()

        assert len(receiver.deliveries) == 1

    async def test_queued_events_are_batched_into_one_envelope(self, receiver: Receiver) -> None:
        endpoint = Endpoint(EndpointConfig(url=receiver.url))
        for _ in range(3):
            endpoint.offer(event())

        (body,) = await deliver(endpoint, receiver, 1)

        assert len(json.loads(body)["events"]) == 3


def test_endpoint_config_rejects_a_header_without_a_colon() -> None:
    from registry.config import ConfigError

    with pytest.raises(ConfigError, match="headers"):
        dataclasses.replace(EndpointConfig(url="http://x/"), headers=("Authorization Bearer x",))
