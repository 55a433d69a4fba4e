"""Pull records: what garbage collection's retention reads to keep what was pulled."""

from __future__ import annotations

import datetime

from registry.digest import Digest
from registry.drivers.inmemory import InMemoryDriver
from registry.proxy import last_pulled
from tests.proxy.conftest import FakeUpstream, MirrorFactory


class TestPullRecords:
    async def test_a_pulled_proxied_manifest_is_recorded_with_its_time(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        storage = InMemoryDriver()
        mirror = await make_mirror(driver=storage)
        before = datetime.datetime.now(datetime.UTC)
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        pulled = await last_pulled(storage, "up/team/app", Digest.parse(digest))
        assert pulled is not None and pulled >= before

    async def test_a_manifest_never_pulled_has_no_record(self) -> None:
        storage = InMemoryDriver()
        await storage.open()
        assert await last_pulled(storage, "up/team/app", Digest.of(b"never")) is None
