"""Request metrics: counts by route template, latency, bytes, uploads in flight, refusals."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from registry.config import AccessRule, AuthConfig, Config, HtpasswdConfig, LimitsConfig
from tests.api.oci import OCI_MANIFEST, push_image
from tests.auth.conftest import basic, write_htpasswd
from tests.metrics.conftest import Serve, sample

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
REQUESTS = "cargobay_http_request_duration_seconds_count"
START_ROUTE = "/v2/{name}/blobs/uploads/"
UPLOAD_ROUTE = "/v2/{name}/blobs/uploads/{upload_id}"


class TestRequestCounts:
    async def test_push_and_pull_count_by_route_template_method_and_status(
        self, serve: Serve
    ) -> None:
        client = await serve()
        put = {"route": MANIFEST_ROUTE, "method": "PUT", "status": "201"}
        get = {"route": MANIFEST_ROUTE, "method": "GET", "status": "200"}
        missing = {"route": MANIFEST_ROUTE, "method": "GET", "status": "404"}
        before = [sample(REQUESTS, **labels) for labels in (put, get, missing)]

        await push_image(client, "team/app", "v1")
        for _ in range(3):
            assert (await client.get("/v2/team/app/manifests/v1")).status == 200
        assert (await client.get("/v2/other/manifests/v1")).status == 404

        after = [sample(REQUESTS, **labels) for labels in (put, get, missing)]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 3, 1]

    async def test_repository_names_never_become_label_values(self, serve: Serve) -> None:
        client = await serve()
        await push_image(client, "secret-project/app", "v1")
        await client.get("/v2/secret-project/app/manifests/v1")

        assert b"secret-project" not in generate_latest(REGISTRY)

    async def test_unknown_methods_are_counted_as_other(self, serve: Serve) -> None:
        client = await serve()
        labels = {"route": "unmatched", "method": "other", "status": "405"}
        before = sample(REQUESTS, **labels)

        response = await client.request("PURGE", "/v2/")

        assert response.status == 405
        assert sample(REQUESTS, **labels) - before == 1


class TestLatencyAndBytes:
    async def test_histogram_observes_each_request_once(self, serve: Serve) -> None:
        client = await serve()
        await push_image(client, "team/app", "v1")
        labels = {"route": MANIFEST_ROUTE, "method": "GET", "status": "200"}
        count = sample(REQUESTS, **labels)
        total = sample("cargobay_http_request_duration_seconds_sum", **labels)

        for _ in range(4):
            await client.get("/v2/team/app/manifests/v1")

        assert sample(REQUESTS, **labels) - count == 4
        assert sample("cargobay_http_request_duration_seconds_sum", **labels) > total

    async def test_bytes_received_and_sent_count_the_bodies(self, serve: Serve) -> None:
        client = await serve()
        image = await push_image(client, "team/app", "v1")
        received = sample("cargobay_http_received_bytes_total", route=MANIFEST_ROUTE)
        sent = sample("cargobay_http_sent_bytes_total", route=MANIFEST_ROUTE)

        response = await client.put(
            "/v2/team/app/manifests/v2", data=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 201
        got = await client.get("/v2/team/app/manifests/v2")
        assert await got.read() == image.manifest

        assert sample("cargobay_http_received_bytes_total", route=MANIFEST_ROUTE) - received == len(
            image.manifest
        )
        # The body, plus the status line and headers of both answers.
        sent_now = sample("cargobay_http_sent_bytes_total", route=MANIFEST_ROUTE) - sent
        assert len(image.manifest) < sent_now < len(image.manifest) + 2000


class TestUploadsInFlight:
    async def test_gauge_counts_an_upload_while_its_body_streams(self, serve: Serve) -> None:
        client = await serve()
        started = await client.post("/v2/team/app/blobs/uploads/")
        location = started.headers["Location"]
        baseline = sample("cargobay_uploads_in_flight")
        gate = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"first part "
            await gate.wait()
            yield b"second part"

        patch = asyncio.ensure_future(client.patch(location, data=body()))
        for _ in range(200):
            if sample("cargobay_uploads_in_flight") == baseline + 1:
                break
            await asyncio.sleep(0.01)
        during = sample("cargobay_uploads_in_flight")
        gate.set()
        response = await patch

        assert response.status == 202
        assert during == baseline + 1
        assert sample("cargobay_uploads_in_flight") == baseline


class TestRefusals:
    async def test_auth_failures_are_counted_by_reason(self, serve: Serve, tmp_path: Path) -> None:
        write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-secret"})
        auth = AuthConfig(
            mode="htpasswd",
            htpasswd=HtpasswdConfig(str(tmp_path / "htpasswd")),
            access=(AccessRule(repositories=("team/*",), users=("alice",), actions=("pull",)),),
        )
        client = await serve(Config(auth=auth))
        reasons = ("no_credentials", "invalid_credentials", "denied")
        before = {r: sample("cargobay_auth_failures_total", reason=r) for r in reasons}

        assert (await client.get("/v2/")).status == 401
        for _ in range(2):
            assert (await client.get("/v2/", headers=basic("alice", "wrong"))).status == 401
        refused = await client.get("/v2/other/tags/list", headers=basic("alice"))
        assert refused.status == 403

        after = {r: sample("cargobay_auth_failures_total", reason=r) - before[r] for r in reasons}
        assert after == {"no_credentials": 1, "invalid_credentials": 2, "denied": 1}

    async def test_rate_limit_refusals_are_counted(self, serve: Serve) -> None:
        limits = LimitsConfig(rate_limit_per_second=0.001, rate_limit_burst=2)
        client = await serve(dataclasses.replace(Config(), limits=limits))
        before = sample("cargobay_rate_limited_total")

        statuses = [(await client.get("/v2/")).status for _ in range(5)]

        assert statuses == [200, 200, 429, 429, 429]
        assert sample("cargobay_rate_limited_total") - before == 3


class TestCaches:
    async def test_manifest_reads_count_cache_hits(self, serve: Serve) -> None:
        client = await serve()
        await push_image(client, "team/app", "v1")
        hits = sample("cargobay_cache_lookups_total", cache="manifests", result="hit")

        for _ in range(3):
            await client.get("/v2/team/app/manifests/v1")

        assert sample("cargobay_cache_lookups_total", cache="manifests", result="hit") - hits == 3
