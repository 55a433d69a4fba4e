"""A collection deletes what nothing references once older than the grace period, and nothing else.

Runs on every driver. Files are made to look old with a clock set ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from registry import layout
from registry.config import RetentionRule, UpstreamConfig
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.drivers.wrapper import DriverWrapper
from registry.gc import GcOptions, Lease, LeaseHeld, collect
from registry.gc.collector import BULK_CONCURRENCY
from registry.gc.pulls import PullLog
from registry.gc.retention import DAY, mirror_rules
from registry.services.feed import Change
from tests.gc.storage import (
    Published,
    blob_exists,
    every_file,
    exists,
    later,
    put_blob,
    put_manifest,
)
from tests.manifest import samples as s
from tests.services.stores import body, uploads

GRACE = GcOptions(grace=3600.0)
T = TypeVar("T")


def lease(driver: StorageDriver) -> Lease:
    return Lease(driver, settle=0.0)


async def image(driver: StorageDriver, name: str, label: str, tag: str | None) -> dict[str, str]:
    """An image of a config and two layers (one shared by every image), pushed to `name`."""
    config = await put_blob(driver, name, f"config {label}".encode())
    own = await put_blob(driver, name, f"layer {label}".encode())
    shared = await put_blob(driver, name, b"shared base layer")
    sizes = {config: 1, own: 1, shared: 1}
    manifest = await put_manifest(
        driver,
        name,
        s.oci_image_manifest(config=(config, 1), layers=[(d, n) for d, n in sizes.items()][1:]),
        tag,
    )
    return {"config": config, "own": own, "shared": shared, "manifest": manifest}


class TestSweep:
    async def test_unreferenced_old_blobs_go_and_referenced_ones_stay(
        self, driver: StorageDriver
    ) -> None:
        kept = await image(driver, "team/app", "kept", "v1")
        orphan = await put_blob(driver, "team/app", b"uploaded, never referenced")
        published = Published()
        report = await collect(driver, GRACE, published, lease=lease(driver), clock=later(2))
        assert not await blob_exists(driver, orphan)
        for digest in kept.values():
            assert await blob_exists(driver, digest)
        assert not await exists(driver, layout.layer_link("team/app", Digest.parse(orphan)))
        assert Change("blob", digest=orphan) in published
        assert Change("layer", "team/app", digest=orphan) in published
        assert report.freed["blobs"].count == 1
        assert report.freed["blobs"].bytes == len(b"uploaded, never referenced")
        assert report.examined["blobs"].count == 5
        assert report.requests["delete_files"] == 1  # the blob and its one link, together
        assert report.removed == []  # listed in dry runs only: a real run may delete millions

    async def test_blobs_younger_than_the_grace_period_stay(self, driver: StorageDriver) -> None:
        orphan = await put_blob(driver, "team/app", b"just uploaded")
        report = await collect(driver, GRACE, Published(), lease=lease(driver))
        assert await blob_exists(driver, orphan)
        assert report.freed["blobs"].count == 0

    async def test_an_old_blob_linked_within_the_grace_period_stays(
        self, driver: StorageDriver
    ) -> None:
        orphan = await put_blob(driver, "team/app", b"uploaded long ago", link=False)
        clock = later(2)
        # Linked "now" by the later clock's measure: re-uploaded or mounted.
        report = await collect(
            driver,
            GRACE,
            Published(),
            lease=lease(driver),
            clock=lambda: clock() - 2 * 3600 + 10,
        )
        assert report.freed["blobs"].count == 0
        assert await blob_exists(driver, orphan)

    async def test_dry_run_changes_nothing_and_lists_what_would_go(
        self, driver: StorageDriver
    ) -> None:
        await image(driver, "team/app", "kept", "v1")
        untagged = await image(driver, "team/app", "untagged", None)
        orphan = await put_blob(driver, "team/app", b"orphan")
        before = await every_file(driver)
        published = Published()
        options = GcOptions(grace=3600.0, dry_run=True, delete_untagged=True)
        report = await collect(driver, options, published, lease=lease(driver), clock=later(2))
        assert await every_file(driver) == before
        assert published == []
        assert layout.blob_data(Digest.parse(orphan)) in report.removed
        assert layout.blob_data(Digest.parse(untagged["own"])) in report.removed
        assert (
            layout.manifest_revision_dir("team/app", Digest.parse(untagged["manifest"]))
            in report.removed
        )
        assert report.freed["manifests"].count == 1

    async def test_dangling_layer_links_go(self, driver: StorageDriver) -> None:
        digest = Digest.of(b"content deleted by hand")
        await driver.put_content(layout.layer_link("team/app", digest), str(digest).encode())
        report = await collect(driver, GRACE, Published(), lease=lease(driver), clock=later(2))
        assert not await exists(driver, layout.layer_link("team/app", digest))
        assert report.freed["layer_links"].count == 1

    async def test_expired_upload_sessions_go(self, driver: StorageDriver) -> None:
        await driver.put_content(layout.upload_data("team/app", "abandoned"), b"half a layer")
        options = GcOptions(grace=3600.0, upload_expiry=3600.0)
        report = await collect(driver, options, Published(), lease=lease(driver), clock=later(2))
        assert not await exists(driver, layout.upload_dir("team/app", "abandoned"))
        assert report.freed["uploads"].count == 1

    async def test_sessions_opened_by_a_first_chunk_go_once_expired(
        self, driver: StorageDriver
    ) -> None:
        """A session is stored from its first chunk on, aged from the time it was opened."""
        store = await uploads(driver)
        abandoned = store.start("team/app")
        await store.append("team/app", abandoned, body(b"half a layer"), fresh=True)
        never_written = store.start("team/app")
        options = GcOptions(grace=3600.0, upload_expiry=3600.0)
        young = await collect(driver, options, Published(), lease=lease(driver))
        assert young.freed["uploads"].count == 0
        assert await store.size("team/app", abandoned) == len(b"half a layer")
        report = await collect(driver, options, Published(), lease=lease(driver), clock=later(2))
        assert report.freed["uploads"].count == 1
        assert not await exists(driver, layout.upload_dir("team/app", abandoned))
        assert [i async for i in driver.walk(layout.ROOT)] == []
        assert await store.size("team/app", never_written, fresh=True) == 0

    async def test_writes_abandoned_mid_way_go_once_older_than_the_grace_period(
        self, driver: StorageDriver
    ) -> None:
        """A process killed mid-upload leaves a staging file, or on S3 a multipart upload."""
        digest = Digest.of(b"never finished")
        writer = await driver.staged_writer(layout.blob_data(digest))
        await writer.write(b"x" * (5 * 1024 * 1024 + 1))  # over one S3 part
        # The process dies here: neither commit nor cancel. In memory, that frees it.
        backend = driver.inner if isinstance(driver, DriverWrapper) else driver
        left = 0 if isinstance(backend, InMemoryDriver) else 1
        young = await collect(driver, GRACE, Published(), lease=lease(driver))
        assert young.freed["staged"].count + young.freed["multipart"].count == 0
        report = await collect(driver, GRACE, Published(), lease=lease(driver), clock=later(2))
        assert report.freed["staged"].count + report.freed["multipart"].count == left
        assert [w async for w in driver.incomplete_writes(layout.ROOT)] == []
        assert [i async for i in driver.walk(layout.ROOT)] == []

    async def test_a_manifest_blob_without_revision_goes_with_untagged_delete(
        self, driver: StorageDriver
    ) -> None:
        kept = await image(driver, "team/app", "kept", "v1")
        gone = await image(driver, "team/app", "gone", None)
        options = GcOptions(grace=3600.0, delete_untagged=True)
        published = Published()
        await collect(driver, options, published, lease=lease(driver), clock=later(2))
        for digest in (gone["manifest"], gone["own"], gone["config"]):
            assert not await blob_exists(driver, digest)
        for digest in kept.values():
            assert await blob_exists(driver, digest)
        assert Change("manifest", "team/app", digest=gone["manifest"]) in published


class _HeldRequests(DriverWrapper):
    """`inner`, each request held a moment so that those side by side overlap; the most
    in flight at once is `load["peak"]` (a dict: views of this driver share it)."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self.load = {"now": 0, "peak": 0}

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        load = self.load
        load["now"] += 1
        load["peak"] = max(load["peak"], load["now"])
        try:
            await asyncio.sleep(0.005)
            return await call
        finally:
            load["now"] -= 1


class TestBackgroundWork:
    async def test_a_collection_keeps_at_most_bulk_concurrency_requests_in_flight(
        self,
    ) -> None:
        """However wide the driver's own bulk work: the registries serving from it come first."""
        inner = InMemoryDriver()
        repositories = 3 * BULK_CONCURRENCY
        for n in range(repositories):
            await image(inner, f"team/app{n}", str(n), "v1")
            await put_blob(inner, f"team/app{n}", f"orphan {n}".encode())
        held = _HeldRequests(inner)
        assert held.bulk_concurrency > BULK_CONCURRENCY
        report = await collect(held, GRACE, Published(), lease=lease(inner), clock=later(2))
        assert report.freed["blobs"].count == repositories
        assert held.load["peak"] == BULK_CONCURRENCY


class TestPushesDuringTheSweep:
    @pytest.mark.parametrize("feed_knows", [True, False])
    async def test_a_manifest_pushed_during_the_sweep_keeps_the_old_blobs_it_names(
        self, driver: StorageDriver, feed_knows: bool
    ) -> None:
        """Pushed after the mark, reusing blobs the mark found unreferenced: the feed
        says so before the next deletion; when it cannot, storage is walked again."""
        orphans = [await put_blob(driver, "team/app", b"old layer %d" % i) for i in range(40)]
        reused = orphans[-1]
        calls = 0

        async def follow() -> list[Change] | None:
            nonlocal calls
            calls += 1
            if calls > 1:
                return []
            manifest = s.oci_image_manifest(config=(reused, 1), layers=[(reused, 1)])
            digest = await put_manifest(driver, "team/app", manifest, "late")
            return [Change("manifest", "team/app", digest=digest)] if feed_knows else None

        await collect(
            driver, GRACE, Published(), follow=follow, lease=lease(driver), clock=later(2)
        )
        assert await blob_exists(driver, reused)
        assert not await blob_exists(driver, orphans[0])


class TestUntagged:
    async def test_children_of_a_tagged_index_and_referrers_of_reached_subjects_stay(
        self, driver: StorageDriver
    ) -> None:
        name = "team/app"
        children = [await image(driver, name, f"arch{i}", None) for i in range(2)]
        index = s.oci_image_index([(c["manifest"], 1) for c in children])
        await put_manifest(driver, name, index, "multi")
        sbom_layer = await put_blob(driver, name, b"sbom")
        await put_blob(driver, name, b"{}")
        referrer = await put_manifest(
            driver,
            name,
            s.oci_artifact_manifest(layers=[(sbom_layer, 4)], subject=(children[0]["manifest"], 1)),
        )
        loose = await image(driver, name, "loose", None)
        options = GcOptions(grace=3600.0, delete_untagged=True)
        await collect(driver, options, Published(), lease=lease(driver), clock=later(2))
        for child in children:
            assert await exists(
                driver, layout.manifest_revision_link(name, Digest.parse(child["manifest"]))
            )
        assert await exists(driver, layout.manifest_revision_link(name, Digest.parse(referrer)))
        assert await blob_exists(driver, sbom_layer)
        assert not await exists(
            driver, layout.manifest_revision_link(name, Digest.parse(loose["manifest"]))
        )

    async def test_untagged_manifests_younger_than_the_grace_period_stay(
        self, driver: StorageDriver
    ) -> None:
        pending = await image(driver, "team/app", "child pushed before its index", None)
        options = GcOptions(grace=3600.0, delete_untagged=True)
        await collect(driver, options, Published(), lease=lease(driver))
        assert await exists(
            driver, layout.manifest_revision_link("team/app", Digest.parse(pending["manifest"]))
        )


class TestRetention:
    async def test_tags_no_rule_keeps_go_and_with_untagged_days_their_blobs_too(
        self, driver: StorageDriver
    ) -> None:
        old = await image(driver, "ci/cache", "old", "pr-1")
        new = await image(driver, "ci/cache", "new", "main")
        rule = RetentionRule(repositories=("ci/*",), keep_tags=("main",), untagged_days=0.01)
        options = GcOptions(grace=3600.0, retention=(rule,))
        published = Published()
        await collect(driver, options, published, lease=lease(driver), clock=later(2))
        assert not await exists(driver, layout.tag_dir("ci/cache", "pr-1"))
        assert Change("tag", "ci/cache", tag="pr-1") in published
        assert not await blob_exists(driver, old["own"])
        assert await exists(driver, layout.tag_current_link("ci/cache", "main"))
        for digest in new.values():
            assert await blob_exists(driver, digest)


class TestMirrorRetention:
    async def test_what_was_not_pulled_within_the_days_goes_and_what_was_stays(
        self, driver: StorageDriver
    ) -> None:
        """An upstream's default rule: tags and pinned digests pulled within 30 days stay."""
        name = "hub/team/app"
        used = await image(driver, name, "used", "used")
        idle = await image(driver, name, "idle", "idle")
        children = [await image(driver, name, f"arch{i}", None) for i in range(2)]
        pinned = await put_manifest(
            driver, name, s.oci_image_index([(c["manifest"], 1) for c in children])
        )
        forgotten = await image(driver, name, "forgotten", None)
        clock = later(40 * 24)  # all of it cached 40 days ago
        pulls = PullLog(driver, clock=lambda: clock() - 29 * DAY)
        pulls.record(name, "used")
        pulls.record(name, pinned)
        await pulls.flush()
        upstream = UpstreamConfig(name="hub", url="https://hub.test", prefix="hub")
        options = GcOptions(grace=3600.0, retention=mirror_rules([upstream]))
        await collect(driver, options, Published(), lease=lease(driver), clock=clock)
        assert await exists(driver, layout.tag_current_link(name, "used"))
        assert not await exists(driver, layout.tag_dir(name, "idle"))
        for kept in (pinned, *(c["manifest"] for c in children), used["manifest"]):
            assert await exists(driver, layout.manifest_revision_link(name, Digest.parse(kept)))
        for gone in (idle, forgotten):
            link = layout.manifest_revision_link(name, Digest.parse(gone["manifest"]))
            assert not await exists(driver, link)
            assert not await blob_exists(driver, gone["own"])
        for digest in (*used.values(), *children[0].values()):
            assert await blob_exists(driver, digest)


class TestLease:
    async def test_a_collection_refuses_to_start_while_another_holds_the_lease(
        self, driver: StorageDriver
    ) -> None:
        holder = lease(driver)
        await holder.acquire()
        with pytest.raises(LeaseHeld):
            await collect(driver, GRACE, Published(), lease=lease(driver))
        await holder.release()
        await collect(driver, GRACE, Published(), lease=lease(driver))
