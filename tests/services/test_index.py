"""The tag index: rebuilt from Distribution's layout on every driver, and kept in step."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from registry import layout
from registry.digest import Digest
from registry.drivers.base import FileInfo, StorageDriver
from registry.errors import StorageError
from registry.services.blobs import BlobStore
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore
from registry.services.registry import Registry
from tests.manifest import samples


async def rebuild(driver: StorageDriver) -> TagIndex:
    """The index as it stands once start-up discovery and the background warm-up are done."""
    index = await TagIndex.discover(driver)
    await index.warm()
    return index


def digest(n: int) -> Digest:
    return Digest("sha256", hashlib.sha256(str(n).encode()).hexdigest())


async def write_tag(driver: StorageDriver, name: str, tag: str, *history: Digest) -> None:
    """Write a tag as Distribution does: one index entry per digest, current = the last."""
    for d in history:
        await driver.put_content(layout.tag_index_link(name, tag, d), str(d).encode())
    await driver.put_content(layout.tag_current_link(name, tag), str(history[-1]).encode())


class TestRebuild:
    async def test_rebuild_finds_repositories_tags_manifests_and_layers(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content(layout.layer_link("lib/app", digest(1)), str(digest(1)).encode())
        for n in (2, 3):
            await driver.put_content(
                layout.manifest_revision_link("lib/app", digest(n)), str(digest(n)).encode()
            )
        await write_tag(driver, "lib/app", "v1", digest(2))
        await write_tag(driver, "other", "latest", digest(3))
        await write_tag(driver, "lib/app/nested", "v9", digest(3))
        index = await rebuild(driver)
        assert index.repositories() == ["lib/app", "lib/app/nested", "other"]
        assert index.resolve_tag("lib/app/nested", "v9") == str(digest(3))
        assert index.tags("lib/app") == ["v1"]
        assert index.resolve_tag("lib/app", "v1") == str(digest(2))
        assert index.has_manifest("lib/app", str(digest(3)))
        assert index.has_layer("lib/app", str(digest(1)))
        assert not index.has_layer("other", str(digest(1)))

    async def test_moved_tag_resolves_to_its_current_link_not_its_history(
        self, driver: StorageDriver
    ) -> None:
        await write_tag(driver, "lib/app", "latest", digest(5), digest(4))
        index = await rebuild(driver)
        assert index.resolve_tag("lib/app", "latest") == str(digest(4))

    async def test_tag_without_current_link_is_not_a_tag(self, driver: StorageDriver) -> None:
        await driver.put_content(
            layout.tag_index_link("lib/app", "gone", digest(1)), str(digest(1)).encode()
        )
        index = await rebuild(driver)
        assert index.resolve_tag("lib/app", "gone") is None

    async def test_uploads_and_foreign_files_are_ignored(self, driver: StorageDriver) -> None:
        await driver.put_content(layout.upload_started_at("lib/app", "some-upload"), b"now")
        await driver.put_content(f"{layout.REPOSITORIES}/stray-file", b"?")
        await driver.put_content(f"{layout.REPOSITORIES}/lib/app/_manifests/junk", b"?")
        await driver.put_content(
            f"{layout.REPOSITORIES}/lib/app/_layers/sha256/nothex/link", b"sha256:nothex"
        )
        index = await rebuild(driver)
        assert index.repositories() == []

    async def test_empty_storage_gives_an_empty_index(self, driver: StorageDriver) -> None:
        index = await rebuild(driver)
        assert index.counts() == (0, 0, 0)


class TestMutations:
    def test_removing_a_manifest_drops_its_tags_and_empty_repository(self) -> None:
        index = TagIndex()
        index.add_manifest("a", "d1")
        index.set_tag("a", "t1", "d1")
        index.set_tag("a", "t2", "d1")
        index.remove_manifest("a", "d1")
        assert index.tags("a") == []
        assert not index.has_repository("a")

    def test_tag_listing_stays_sorted_after_changes(self) -> None:
        index = TagIndex()
        for tag in ["b", "c", "a"]:
            index.set_tag("r", tag, "d")
        assert index.tags("r") == ["a", "b", "c"]
        index.remove_tag("r", "b")
        index.set_tag("r", "0", "d")
        assert index.tags("r") == ["0", "a", "c"]
        assert index.tags("r", last="0", n=1) == ["a"]


class TestLoading:
    """Start-up finds repositories; each is loaded on first use or by the warm-up."""

    async def test_discovered_repositories_are_listed_before_they_are_loaded(
        self, driver: StorageDriver
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        await write_tag(driver, "other", "latest", digest(2))
        index = await TagIndex.discover(driver)
        assert index.repositories() == ["lib/app", "other"]
        assert index.has_repository("other")
        with pytest.raises(RuntimeError):
            index.resolve_tag("lib/app", "v1")
        await index.load("lib/app")
        assert index.resolve_tag("lib/app", "v1") == str(digest(1))
        with pytest.raises(RuntimeError):
            index.tags("other")

    async def test_concurrent_loads_share_one_walk(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        index = await TagIndex.discover(driver)
        walked: list[str] = []
        walk = driver.walk

        def counting_walk(path: str) -> AsyncIterator[FileInfo]:
            walked.append(path)
            return walk(path)

        monkeypatch.setattr(driver, "walk", counting_walk)
        await asyncio.gather(*(index.load("lib/app") for _ in range(10)))
        assert sorted(walked) == [
            f"{layout.REPOSITORIES}/lib/app/_layers",
            f"{layout.REPOSITORIES}/lib/app/_manifests",
        ]
        assert index.tags("lib/app") == ["v1"]

    async def test_warm_up_keeps_within_the_drivers_bulk_concurrency(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """So a client's request for a repository is not queued behind the whole warm-up."""
        repos = driver.bulk_concurrency * 2 + 3
        await asyncio.gather(
            *(write_tag(driver, f"repo{n}", "v1", digest(n)) for n in range(repos))
        )
        index = await TagIndex.discover(driver)
        in_flight = peak = 0
        walk = driver.walk

        async def slow_walk(path: str) -> AsyncIterator[FileInfo]:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.01)
                async for info in walk(path):
                    yield info
            finally:
                in_flight -= 1

        monkeypatch.setattr(driver, "walk", slow_walk)
        await index.warm()
        assert peak == driver.bulk_concurrency
        assert index.tags(f"repo{repos - 1}") == ["v1"]

    async def test_a_failed_load_leaves_the_repository_to_be_loaded_again(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        index = await TagIndex.discover(driver)
        walk = driver.walk

        def failing_walk(path: str) -> AsyncIterator[FileInfo]:
            raise StorageError(driver.name, path, "backend down")

        monkeypatch.setattr(driver, "walk", failing_walk)
        await index.warm()  # logs, does not raise
        with pytest.raises(StorageError):
            await index.load("lib/app")
        assert index.repositories() == ["lib/app"]
        monkeypatch.setattr(driver, "walk", walk)
        await index.load("lib/app")
        assert index.resolve_tag("lib/app", "v1") == str(digest(1))

    async def test_repository_with_nothing_valid_disappears_once_loaded(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content(f"{layout.REPOSITORIES}/lib/app/_manifests/junk", b"?")
        index = await TagIndex.discover(driver)
        assert index.repositories() == ["lib/app"]
        await index.load("lib/app")
        assert index.repositories() == []
        assert not index.has_repository("lib/app")


class TestServicesOnPendingRepositories:
    """What a request sees of a repository the warm-up has not reached yet."""

    async def test_reads_and_writes_load_the_repository_first(self, driver: StorageDriver) -> None:
        config_bytes, layer_bytes = b"{}", b"layer bytes"
        config, layer = samples.ref(config_bytes), samples.ref(layer_bytes)
        data = samples.oci_image_manifest(config, [layer])
        manifest = Digest.parse(samples.digest_of(data))
        for blob, content in ((config, config_bytes), (layer, layer_bytes)):
            blob_digest = Digest.parse(blob[0])
            await driver.put_content(layout.blob_data(blob_digest), content)
            for repo in ("lib/app", "lib/copy"):
                await driver.put_content(layout.layer_link(repo, blob_digest), blob[0].encode())
        await driver.put_content(layout.blob_data(manifest), data)
        await driver.put_content(layout.manifest_revision_link("lib/app", manifest), b"")
        await write_tag(driver, "lib/app", "v1", manifest)

        index = await TagIndex.discover(driver)
        blobs = BlobStore(driver, index, delete_enabled=True)
        manifests = ManifestStore(driver, index, blobs, delete_enabled=True)
        assert (await manifests.get("lib/app", "v1")).data == data
        assert (await blobs.stat("lib/copy", Digest.parse(layer[0]))).size == len(layer_bytes)

        # Writes to repositories not loaded yet keep what storage held.
        index = await TagIndex.discover(driver)
        blobs = BlobStore(driver, index, delete_enabled=True)
        manifests = ManifestStore(driver, index, blobs, delete_enabled=True)
        await manifests.put("lib/app", "v2", samples.OCI_MANIFEST, data)
        assert index.tags("lib/app") == ["v1", "v2"]
        assert await blobs.mount("lib/new", Digest.parse(layer[0]), "lib/copy") is not None
        assert index.has_layer("lib/copy", config[0])

    async def test_registry_serves_while_warming_and_closes_cleanly(
        self, driver: StorageDriver
    ) -> None:
        for n in range(20):
            await write_tag(driver, f"repo-{n:02}", "latest", digest(n))
        registry = await Registry.open(driver)
        try:
            assert registry.index.repositories()[:2] == ["repo-00", "repo-01"]
            await registry.index.load("repo-19")
            assert registry.index.resolve_tag("repo-19", "latest") == str(digest(19))
        finally:
            await registry.close()
            await driver.open()  # the fixture closes it again
        assert registry.warming.done()


class TestReadThrough:
    """A miss in the index asks storage: another process may have written it."""

    async def test_a_tag_written_by_another_process_is_found_on_a_miss(
        self, driver: StorageDriver
    ) -> None:
        index = await rebuild(driver)
        await write_tag(driver, "lib/app", "v1", digest(1))
        assert await index.find_tag("lib/app", "v1") == str(digest(1))
        assert index.tags("lib/app") == ["v1"]

    async def test_a_missing_tag_is_remembered_as_absent_only_briefly(
        self, driver: StorageDriver
    ) -> None:
        index = TagIndex(driver, negative_ttl=0.2)
        await write_tag(driver, "lib/app", "v0", digest(0))
        assert await index.find_tag("lib/app", "v1") is None
        await write_tag(driver, "lib/app", "v1", digest(1))
        assert await index.find_tag("lib/app", "v1") is None  # still remembered as absent
        await asyncio.sleep(0.3)
        assert await index.find_tag("lib/app", "v1") == str(digest(1))

    async def test_a_manifest_or_layer_by_digest_is_never_remembered_as_absent(
        self, driver: StorageDriver
    ) -> None:
        index = await rebuild(driver)
        assert not await index.find_manifest("lib/app", str(digest(2)))
        assert not await index.find_layer("lib/app", str(digest(3)))
        await driver.put_content(
            layout.manifest_revision_link("lib/app", digest(2)), str(digest(2)).encode()
        )
        await driver.put_content(layout.layer_link("lib/app", digest(3)), str(digest(3)).encode())
        assert await index.find_manifest("lib/app", str(digest(2)))
        assert await index.find_layer("lib/app", str(digest(3)))

    async def test_a_repository_created_by_another_process_is_loaded_on_first_use(
        self, driver: StorageDriver
    ) -> None:
        index = await rebuild(driver)
        await write_tag(driver, "new/repo", "v1", digest(1))
        await index.load("new/repo")
        assert index.tags("new/repo") == ["v1"]
        assert "new/repo" in index.repositories()


class TestRefresh:
    async def test_a_refresh_follows_a_tag_moved_or_deleted_in_storage(
        self, driver: StorageDriver
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        index = await rebuild(driver)
        await write_tag(driver, "lib/app", "v1", digest(1), digest(2))
        assert await index.refresh_tag("lib/app", "v1") == str(digest(2))
        assert index.resolve_tag("lib/app", "v1") == str(digest(2))
        await driver.delete(layout.tag_dir("lib/app", "v1"))
        assert await index.refresh_tag("lib/app", "v1") is None
        assert index.resolve_tag("lib/app", "v1") is None

    async def test_a_local_write_during_a_refresh_is_not_overwritten_by_what_it_read(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        index = await rebuild(driver)
        get_content = driver.get_content

        async def slow_get(path: str) -> bytes:
            data = await get_content(path)  # reads the old digest...
            index.set_tag("lib/app", "v1", str(digest(9)))  # ...while a push moves the tag
            return data

        monkeypatch.setattr(driver, "get_content", slow_get)
        await index.refresh_tag("lib/app", "v1")
        assert index.resolve_tag("lib/app", "v1") == str(digest(9))

    async def test_reconcile_takes_what_storage_says_of_every_repository(
        self, driver: StorageDriver
    ) -> None:
        await write_tag(driver, "lib/app", "v1", digest(1))
        await write_tag(driver, "gone", "v1", digest(1))
        index = await rebuild(driver)
        await write_tag(driver, "lib/app", "v2", digest(2))
        await write_tag(driver, "added", "v1", digest(3))
        await driver.delete(layout.repository("gone"))
        assert await index.reconcile() == 3
        assert index.repositories() == ["added", "lib/app"]
        assert index.tags("lib/app") == ["v1", "v2"]
        assert await index.reconcile() == 0


class TestWritesDuringALoad:
    async def test_a_write_recorded_while_a_load_is_under_way_is_kept_after_it(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The load read storage before the write; the write must not vanish when it lands."""
        index = TagIndex(driver, negative_ttl=0)
        walk = driver.walk
        walking = asyncio.Event()
        release = asyncio.Event()

        async def slow_walk(path: str, start_after: str | None = None) -> AsyncIterator[FileInfo]:
            walking.set()
            await release.wait()
            async for info in walk(path, start_after):
                yield info

        monkeypatch.setattr(driver, "walk", slow_walk)
        load = asyncio.create_task(index.load("lib/new"))
        await walking.wait()
        # A push into the new repository finishes while the load reads storage.
        await driver.put_content(layout.layer_link("lib/new", digest(1)), b"x")
        index.add_layer("lib/new", str(digest(1)))
        index.set_tag("lib/new", "v1", str(digest(2)))
        release.set()
        await load
        assert index.has_layer("lib/new", str(digest(1)))
        assert index.resolve_tag("lib/new", "v1") == str(digest(2))


class TestReconcileCost:
    @pytest.fixture(autouse=True)
    def short_clock_margin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A reconciliation trusts an unchanged link time 1.5 s after the write, not 10 s."""
        monkeypatch.setattr("registry.services.listing._UNCHANGED_AFTER", 1.5)

    @staticmethod
    def count_reads(driver: StorageDriver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        reads: list[str] = []
        get_content = driver.get_content

        async def counting_get(path: str) -> bytes:
            reads.append(path)
            return await get_content(path)

        monkeypatch.setattr(driver, "get_content", counting_get)
        return reads

    async def test_reconcile_reads_again_only_the_current_links_rewritten_since(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Tags moved before (several history entries) cost a read only when they move again."""
        for n in range(5):
            await write_tag(driver, "lib/app", f"t{n}", digest(1), digest(2))
        await asyncio.sleep(1.6)
        index = await rebuild(driver)
        reads = self.count_reads(driver, monkeypatch)
        assert await index.reconcile() == 0
        assert reads == []
        await write_tag(driver, "lib/app", "t3", digest(2), digest(1))
        assert await index.reconcile() == 1
        assert reads == [layout.tag_current_link("lib/app", "t3")]
        assert index.resolve_tag("lib/app", "t3") == str(digest(1))

    async def test_a_link_rewritten_right_after_it_was_read_is_not_missed(
        self, driver: StorageDriver
    ) -> None:
        """Storage may keep whole seconds: the rewrite can carry the time the read saw."""
        await write_tag(driver, "lib/app", "t", digest(1), digest(2))
        index = await rebuild(driver)
        await write_tag(driver, "lib/app", "t", digest(2), digest(1))
        await index.reconcile()
        assert index.resolve_tag("lib/app", "t") == str(digest(1))
