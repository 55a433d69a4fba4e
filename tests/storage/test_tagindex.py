"""The tag index: rebuilt from Distribution's layout on every driver, and kept in step."""

from __future__ import annotations

import hashlib

from registry.digest import Digest
from registry.storage import layout
from registry.storage.driver import StorageDriver
from registry.storage.tagindex import TagIndex


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
        index = await TagIndex.rebuild(driver)
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
        index = await TagIndex.rebuild(driver)
        assert index.resolve_tag("lib/app", "latest") == str(digest(4))

    async def test_tag_without_current_link_is_not_a_tag(self, driver: StorageDriver) -> None:
        await driver.put_content(
            layout.tag_index_link("lib/app", "gone", digest(1)), str(digest(1)).encode()
        )
        index = await TagIndex.rebuild(driver)
        assert index.resolve_tag("lib/app", "gone") is None

    async def test_uploads_and_foreign_files_are_ignored(self, driver: StorageDriver) -> None:
        await driver.put_content(layout.upload_started_at("lib/app", "some-upload"), b"now")
        await driver.put_content(f"{layout.REPOSITORIES}/stray-file", b"?")
        await driver.put_content(f"{layout.REPOSITORIES}/lib/app/_manifests/junk", b"?")
        await driver.put_content(
            f"{layout.REPOSITORIES}/lib/app/_layers/sha256/nothex/link", b"sha256:nothex"
        )
        index = await TagIndex.rebuild(driver)
        assert index.repositories() == []

    async def test_empty_storage_gives_an_empty_index(self, driver: StorageDriver) -> None:
        index = await TagIndex.rebuild(driver)
        assert index.counts() == (0, 0, 0)


class TestMutations:
    def test_removing_a_manifest_drops_its_tags_and_empty_repository(self) -> None:
        index = TagIndex()
        index.add_manifest("a", "d1")
        index.set_tag("a", "t1", "d1")
        index.set_tag("a", "t2", "d1")
        assert sorted(index.remove_manifest("a", "d1")) == ["t1", "t2"]
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
