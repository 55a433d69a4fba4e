"""A live `cargobay serve` seen as an operator sees it: a webhook receiving the events of a
skopeo push and pull, `/metrics` on its own port, `/readyz`, and JSON logs."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.checks import SourceImages, docker_ref, http_get
from tests.e2e.processes import ServerFactory, ServerProcess, Skopeo, free_port

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WAIT = 30.0


class Receiver:
    """A webhook receiver (aiohttp, on 127.0.0.1) in a thread of its own, recording events."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.events: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/events", self._receive)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._changed:
            self.content_types.append(request.content_type)
            self.events.extend(body["events"])
            self._changed.notify_all()
        return web.Response()

    def start(self) -> Receiver:
        self._thread.start()
        assert self._started.wait(WAIT), "the receiver did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)

    def wait_for(self, action: str, media_type: str) -> dict[str, Any]:
        """The first event of `action` on a target of `media_type`, waiting for it."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: self._find(action, media_type) is not None, timeout=WAIT
            )
            assert found, f"no {action} event of {media_type}; got {self.events}"
            event = self._find(action, media_type)
            assert event is not None
            return event

    def _find(self, action: str, media_type: str) -> dict[str, Any] | None:
        for event in self.events:
            if event["action"] == action and event["target"]["mediaType"] == media_type:
                return event
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


def scrape(port: int) -> dict[str, float]:
    """The samples of `/metrics`, keyed by their text (name and labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def json_log(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line the server logged, each parsed as JSON (the test's start marker aside)."""
    lines = server.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if not line.startswith("--- starting ")]


class TestOperatorView:
    def test_push_and_pull_are_seen_in_events_metrics_and_logs(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        receiver: Receiver,
    ) -> None:
        metrics_port = free_port()
        cargobay = cargobay_factory(
            extra_config=(
                f'[metrics]\naddr = "127.0.0.1:{metrics_port}"\n'
                f'[[notifications.endpoints]]\nname = "e2e"\nurl = "{receiver.url}"\n'
            ),
            env={"CARGOBAY_LOG__FORMAT": "json"},
        )
        image = images.app

        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))
        push = receiver.wait_for("push", OCI_MANIFEST)
        skopeo.inspect_raw(docker_ref(cargobay, "e2e/app", "1.0"))
        pull = receiver.wait_for("pull", OCI_MANIFEST)

        assert receiver.content_types[0] == "application/vnd.docker.distribution.events.v1+json"
        target = push["target"]
        assert target["digest"] == image.digest
        assert target["repository"] == "e2e/app"
        assert target["tag"] == "1.0"
        assert target["size"] == target["length"] == len(image.manifest)
        assert target["url"] == f"{cargobay.url}/v2/e2e/app/manifests/{image.digest}"
        assert push["request"]["method"] == "PUT"
        assert "skopeo" in push["request"]["useragent"]
        assert pull["target"]["digest"] == image.digest
        assert pull["request"]["method"] == "GET"

        # The event's request id is the one of the push's log lines.
        log = json_log(cargobay)
        (put,) = [line for line in log if line.get("request_id") == push["request"]["id"]]
        assert (put["method"], put["route"], put["status"]) == (
            "PUT",
            "/v2/{name}/manifests/{reference}",
            201,
        )
        assert put["repository"] == "e2e/app"
        # Every request's lines share its id, and each has exactly one access line.
        by_request: dict[str, list[dict[str, Any]]] = {}
        for line in log:
            if "request_id" in line:
                by_request.setdefault(line["request_id"], []).append(line)
        for lines in by_request.values():
            assert [x["logger"] for x in lines].count("registry.access") == 1

        samples = scrape(metrics_port)
        route = 'route="/v2/{name}/manifests/{reference}"'
        requests = "cargobay_http_request_duration_seconds_count"
        assert samples[f'{requests}{{method="PUT",{route},status="201"}}'] == 1
        assert samples[f'{requests}{{method="GET",{route},status="200"}}'] >= 1
        puts = [
            v
            for k, v in samples.items()
            if k.startswith("cargobay_storage_operation_duration_seconds_count")
            and 'operation="put_content"' in k
            and 'outcome="ok"' in k
        ]
        assert sum(puts) >= 4  # manifest, its revision link, the tag's two links
        assert samples['cargobay_notification_events_total{endpoint="e2e",outcome="sent"}'] >= 1

        status, headers, body = http_get(cargobay, "/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
        assert headers["Server"] == "cargobay"


class TestWorkers:
    def test_one_scrape_counts_the_requests_of_every_worker(
        self, cargobay_factory: ServerFactory
    ) -> None:
        metrics_port = free_port()
        cargobay = cargobay_factory(
            extra_config=f'[metrics]\naddr = "127.0.0.1:{metrics_port}"\n', workers=2
        )
        key = 'cargobay_http_request_duration_seconds_count{method="GET",route="/v2/",status="200"}'
        # Workers write their tallies once a second: wait until both have.
        time.sleep(2.5)
        before = scrape(metrics_port).get(key, 0.0)
        sent = 60

        for _ in range(sent):  # a new connection each, for either worker to accept
            status, _, _ = http_get(cargobay, "/v2/")
            assert status == 200

        counted = before
        for _ in range(50):
            counted = scrape(metrics_port).get(key, 0.0)
            if counted - before >= sent:
                break
            time.sleep(0.2)
        assert counted - before == sent
        access = re.compile(r' INFO \[(\d+)\] registry\.access .*"GET /v2/ HTTP/1\.1" 200')
        pids = set(access.findall(cargobay.log_path.read_text()))
        assert len(pids) == 2, f"the requests reached workers {pids}"
