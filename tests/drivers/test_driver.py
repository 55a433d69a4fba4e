"""The contract of `StorageDriver`, checked against every driver.

Each test states one sentence of a docstring in `registry/drivers/base.py`;
the `driver` fixture (tests/conftest.py) runs it once per backend. Only what
the contract promises is asserted, so a test that fails for one driver is a
bug in that driver, not a difference in taste.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from registry.drivers.base import FileInfo, FileWriter, StorageDriver
from registry.errors import InvalidOffset, InvalidPath, PathNotFound, StorageError

# A file a driver leaves for the garbage collector to close fails the test.
pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

MiB = 1024 * 1024


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def walk_paths(driver: StorageDriver, path: str, start_after: str | None = None) -> list[str]:
    return [info.path async for info in driver.walk(path, start_after)]


async def put_all(driver: StorageDriver, paths: list[str]) -> None:
    for path in paths:
        await driver.put_content(path, path.encode())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc"
)


BAD_PATHS = [
    "",
    "/",
    "a/b",
    "/a/",
    "/a//b",
    "/a/../b",
    "/a/..",
    "/./a",
    "/a b",
    "/a/b c",
    "/a\\b",
    "/a:b",
    "/caf\u00e9",
    "/a/b\x00",
]

PathCall = Callable[[StorageDriver, str], Awaitable[object]]

PATH_METHODS: dict[str, PathCall] = {
    "get_content": lambda d, p: d.get_content(p),
    "put_content": lambda d, p: d.put_content(p, b"x"),
    "reader": lambda d, p: d.reader(p),
    "writer": lambda d, p: d.writer(p),
    "writer-append": lambda d, p: d.writer(p, append=True),
    "resume_or_start_writer": lambda d, p: d.resume_or_start_writer(p),
    "stat": lambda d, p: d.stat(p),
    "list": lambda d, p: d.list(p),
    "move-source": lambda d, p: d.move(p, "/ok"),
    "move-dest": lambda d, p: d.move("/ok", p),
    "delete": lambda d, p: d.delete(p),
    "delete_files": lambda d, p: d.delete_files(["/ok", p]),
    "redirect_url": lambda d, p: d.redirect_url(p),
}


class TestPaths:
    @pytest.mark.parametrize("path", BAD_PATHS)
    @pytest.mark.parametrize("method", list(PATH_METHODS))
    async def test_malformed_path_raises_invalid_path(
        self, driver: StorageDriver, method: str, path: str
    ) -> None:
        await driver.put_content("/ok", b"x")
        with pytest.raises(InvalidPath) as caught:
            await PATH_METHODS[method](driver, path)
        assert caught.value.driver == driver.name

    @pytest.mark.parametrize("path", BAD_PATHS)
    def test_walk_with_malformed_path_raises_before_iteration(
        self, driver: StorageDriver, path: str
    ) -> None:
        with pytest.raises(InvalidPath):
            driver.walk(path)

    @pytest.mark.parametrize("path", BAD_PATHS)
    def test_local_file_with_malformed_path_raises_invalid_path(
        self, driver: StorageDriver, path: str
    ) -> None:
        with pytest.raises(InvalidPath):
            driver.local_file(path)

    async def test_path_with_trailing_newline_raises_invalid_path(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(InvalidPath):
            await driver.put_content("/a\n", b"x")

    @pytest.mark.parametrize("path", ["/AZaz09._-", "/...", "/a/.b/c.", "/-/_"])
    async def test_path_of_allowed_characters_round_trips(
        self, driver: StorageDriver, path: str
    ) -> None:
        await driver.put_content(path, b"content")
        assert await driver.get_content(path) == b"content"


class TestContent:
    async def test_get_returns_what_put_stored(self, driver: StorageDriver) -> None:
        data = bytes(range(256)) * 4
        await driver.put_content("/a/b/c", data)
        assert await driver.get_content("/a/b/c") == data

    async def test_empty_content_round_trips(self, driver: StorageDriver) -> None:
        await driver.put_content("/empty", b"")
        assert await driver.get_content("/empty") == b""

    async def test_large_content_round_trips(self, driver: StorageDriver) -> None:
        data = os.urandom(3 * MiB + 7)
        await driver.put_content("/big", data)
        assert await driver.get_content("/big") == data

    async def test_put_replaces_longer_content_entirely(self, driver: StorageDriver) -> None:
        await driver.put_content("/a", b"a much longer old value")
        await driver.put_content("/a", b"new")
        assert await driver.get_content("/a") == b"new"

    async def test_get_of_missing_path_raises_path_not_found_naming_driver_and_path(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(PathNotFound) as caught:
            await driver.get_content("/missing")
        assert (caught.value.driver, caught.value.path) == (driver.name, "/missing")

    async def test_get_below_a_file_raises_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/a", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content("/a/b")

    async def test_get_of_directory_raises_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/dir/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content("/dir")

    async def test_put_makes_parent_directories(self, driver: StorageDriver) -> None:
        await driver.put_content("/x/y/z", b"x")
        assert (await driver.stat("/x")).is_dir
        assert (await driver.stat("/x/y")).is_dir

    @pytest.mark.parametrize("size", [100, 300_000])
    async def test_concurrent_puts_to_one_path_leave_one_whole_value(
        self, driver: StorageDriver, size: int
    ) -> None:
        values = [bytes([i]) * size for i in range(32)]
        await asyncio.gather(*(driver.put_content("/d/same", value) for value in values))
        assert await driver.get_content("/d/same") in values
        assert await driver.list("/d") == ["/d/same"]

    async def test_get_during_puts_sees_one_whole_value(self, driver: StorageDriver) -> None:
        values = [bytes([i]) * 200_000 for i in range(16)]
        await driver.put_content("/p", values[0])

        async def get_many() -> list[bytes]:
            return [await driver.get_content("/p") for _ in range(16)]

        puts = asyncio.gather(*(driver.put_content("/p", value) for value in values))
        seen, _ = await asyncio.gather(get_many(), puts)
        assert all(value in values for value in seen)


class TestReader:
    DATA = bytes(range(256)) * 40

    async def test_reader_yields_the_whole_content(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", self.DATA)
        assert await read_all(await driver.reader("/f")) == self.DATA

    async def test_reader_from_offset_yields_the_rest(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", self.DATA)
        assert await read_all(await driver.reader("/f", 1000)) == self.DATA[1000:]

    async def test_reader_with_length_yields_that_many_bytes(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", self.DATA)
        assert await read_all(await driver.reader("/f", 10, 300)) == self.DATA[10:310]

    async def test_reader_with_length_past_the_end_stops_at_the_end(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", self.DATA)
        stream = await driver.reader("/f", len(self.DATA) - 5, 100)
        assert await read_all(stream) == self.DATA[-5:]

    async def test_reader_with_zero_length_yields_nothing(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", self.DATA)
        assert await read_all(await driver.reader("/f", 3, 0)) == b""

    async def test_reader_at_offset_equal_to_size_yields_nothing(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", self.DATA)
        assert await read_all(await driver.reader("/f", len(self.DATA))) == b""

    async def test_reader_of_empty_file_yields_nothing(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", b"")
        assert await read_all(await driver.reader("/f")) == b""

    async def test_reader_past_the_end_raises_invalid_offset_before_streaming(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", self.DATA)
        with pytest.raises(InvalidOffset):
            await driver.reader("/f", len(self.DATA) + 1)

    @pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1)])
    async def test_reader_with_negative_offset_or_length_raises_invalid_offset(
        self, driver: StorageDriver, offset: int, length: int | None
    ) -> None:
        await driver.put_content("/f", self.DATA)
        with pytest.raises(InvalidOffset):
            await driver.reader("/f", offset, length)

    async def test_reader_of_missing_path_raises_path_not_found_before_streaming(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(PathNotFound):
            await driver.reader("/missing")

    async def test_reader_of_directory_raises_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/dir/f", b"x")
        with pytest.raises(PathNotFound):
            await driver.reader("/dir")

    async def test_reader_started_before_a_put_keeps_yielding_the_old_content(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", b"a" * 3 * MiB)
        stream = await driver.reader("/f")
        first = await anext(stream)
        await driver.put_content("/f", b"b" * 3 * MiB)
        assert first + await read_all(stream) == b"a" * 3 * MiB

    @needs_proc
    async def test_reader_closed_after_one_chunk_releases_the_file(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", os.urandom(3 * MiB))
        before = open_fds()
        stream = await driver.reader("/f")
        await anext(stream)
        await stream.aclose()
        assert open_fds() == before

    @needs_proc
    async def test_reader_closed_before_reading_releases_the_file(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", os.urandom(MiB))
        before = open_fds()
        stream = await driver.reader("/f")
        await stream.aclose()
        assert open_fds() == before

    @needs_proc
    async def test_reader_cancelled_mid_chunk_releases_the_file(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/f", os.urandom(8 * MiB))
        before = open_fds()
        stream = await driver.reader("/f")
        step = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # a thread of the driver may now be reading the chunk
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await step
        await stream.aclose()
        # A read already running may finish before its file is closed. Fewer
        # descriptors than before is fine: a network driver may drop a pooled
        # connection that was open before; more is a leak.
        for _ in range(100):
            if open_fds() <= before:
                break
            await asyncio.sleep(0.01)
        assert open_fds() <= before


class TestWriter:
    async def test_committed_content_is_readable_at_the_path(self, driver: StorageDriver) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"hello ")
        await writer.write(b"world")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"hello world"

    async def test_size_counts_bytes_written(self, driver: StorageDriver) -> None:
        writer = await driver.writer("/up/data")
        assert writer.size == 0
        await writer.write(b"abc")
        await writer.write(b"")
        await writer.write(b"de")
        assert writer.size == 5
        await writer.cancel()

    async def test_commit_with_nothing_written_stores_empty_content(
        self, driver: StorageDriver
    ) -> None:
        writer = await driver.writer("/up/data")
        await writer.commit()
        assert await driver.get_content("/up/data") == b""

    async def test_writer_resumed_after_close_starts_at_the_closed_size(
        self, driver: StorageDriver
    ) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"one,")
        await writer.close()
        for part in (b"two,", b"three"):
            writer = await driver.writer("/up/data", append=True)
            await writer.write(part)
            await writer.close()
        writer = await driver.writer("/up/data", append=True)
        assert writer.size == len(b"one,two,three")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"one,two,three"

    async def test_writer_closed_empty_resumes_at_zero(self, driver: StorageDriver) -> None:
        await (await driver.writer("/up/data")).close()
        writer = await driver.writer("/up/data", append=True)
        assert writer.size == 0
        await writer.write(b"x")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"x"

    async def test_append_without_a_closed_writer_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(PathNotFound):
            await driver.writer("/up/data", append=True)

    async def test_resume_or_start_resumes_a_closed_writer(self, driver: StorageDriver) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"one,")
        await writer.close()
        writer, resumed = await driver.resume_or_start_writer("/up/data")
        assert resumed
        assert writer.size == len(b"one,")
        await writer.write(b"two")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"one,two"

    async def test_resume_or_start_starts_afresh_without_a_closed_writer(
        self, driver: StorageDriver
    ) -> None:
        writer, resumed = await driver.resume_or_start_writer("/up/data")
        assert not resumed
        assert writer.size == 0
        await writer.write(b"first")
        await writer.close()
        writer = await driver.writer("/up/data", append=True)
        assert writer.size == len(b"first")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"first"

    async def test_cancel_discards_content_of_resumed_writers_too(
        self, driver: StorageDriver
    ) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"first")
        await writer.close()
        writer = await driver.writer("/up/data", append=True)
        await writer.write(b"second")
        await writer.cancel()
        with pytest.raises(PathNotFound):
            await driver.writer("/up/data", append=True)
        with pytest.raises(PathNotFound):
            await driver.get_content("/up/data")

    async def test_fresh_writer_discards_uncommitted_content(self, driver: StorageDriver) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"stale")
        await writer.close()
        writer = await driver.writer("/up/data")
        assert writer.size == 0
        await writer.write(b"new")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"new"

    async def test_commit_replaces_earlier_committed_content(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", b"old content")
        writer = await driver.writer("/f")
        await writer.write(b"new")
        await writer.commit()
        assert await driver.get_content("/f") == b"new"

    @pytest.mark.parametrize("size", [0, 10, 5 * MiB + 10])
    async def test_commit_to_puts_the_content_there_and_leaves_nothing_at_the_path(
        self, driver: StorageDriver, size: int
    ) -> None:
        data = os.urandom(size)
        writer = await driver.writer("/up/data")
        await writer.write(data[: size // 2])
        await writer.close()
        writer = await driver.writer("/up/data", append=True)
        await writer.write(data[size // 2 :])
        await writer.commit_to("/blobs/b/data")
        assert await driver.get_content("/blobs/b/data") == data
        with pytest.raises(PathNotFound):
            await driver.get_content("/up/data")
        with pytest.raises(PathNotFound):
            await driver.writer("/up/data", append=True)

    async def test_commit_to_replaces_content_at_the_destination(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/blobs/b/data", b"old content")
        writer = await driver.writer("/up/data")
        await writer.write(b"new")
        await writer.commit_to("/blobs/b/data")
        assert await driver.get_content("/blobs/b/data") == b"new"

    async def test_commit_to_an_invalid_path_raises_and_keeps_the_writer_usable(
        self, driver: StorageDriver
    ) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"kept")
        with pytest.raises(InvalidPath):
            await writer.commit_to("no/slash")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"kept"

    @pytest.mark.parametrize("ending", ["close", "commit", "commit_to", "cancel"])
    @pytest.mark.parametrize("call", ["write", "close", "commit", "commit_to", "cancel"])
    async def test_any_call_after_the_writer_ended_raises_invalid_offset(
        self, driver: StorageDriver, ending: str, call: str
    ) -> None:
        writer = await driver.writer("/up/data")
        await writer.write(b"x")
        calls: dict[str, Callable[[FileWriter], Awaitable[None]]] = {
            "write": lambda w: w.write(b"y"),
            "close": lambda w: w.close(),
            "commit": lambda w: w.commit(),
            "commit_to": lambda w: w.commit_to("/elsewhere"),
            "cancel": lambda w: w.cancel(),
        }
        await calls[ending](writer)
        with pytest.raises(InvalidOffset):
            await calls[call](writer)

    async def test_large_write_streams_back_in_several_chunks(self, driver: StorageDriver) -> None:
        data = os.urandom(5 * MiB + 3)
        writer = await driver.writer("/blobs/big/data")
        for start in range(0, len(data), 100_003):
            await writer.write(data[start : start + 100_003])
        assert writer.size == len(data)
        await writer.commit()
        chunks = [chunk async for chunk in await driver.reader("/blobs/big/data")]
        assert len(chunks) > 1
        assert b"".join(chunks) == data
        assert (await driver.stat("/blobs/big/data")).size == len(data)


class TestStagedWriter:
    async def test_content_is_unreadable_until_commit_then_whole(
        self, driver: StorageDriver
    ) -> None:
        writer = await driver.staged_writer("/blob/data")
        await writer.write(b"staged ")
        await writer.write(b"bytes")
        with pytest.raises(PathNotFound):
            await driver.get_content("/blob/data")
        assert writer.size == 12
        await writer.commit()
        assert await driver.get_content("/blob/data") == b"staged bytes"

    async def test_commit_replaces_existing_content_which_stays_readable_before(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/blob/data", b"old")
        writer = await driver.staged_writer("/blob/data")
        await writer.write(b"new")
        assert await driver.get_content("/blob/data") == b"old"
        await writer.commit()
        assert await driver.get_content("/blob/data") == b"new"

    @pytest.mark.parametrize("end", ["cancel", "close"])
    async def test_cancel_or_close_leaves_nothing_at_the_path(
        self, driver: StorageDriver, end: str
    ) -> None:
        writer = await driver.staged_writer("/blob/data")
        await writer.write(b"abandoned" * 1000)
        await getattr(writer, end)()
        with pytest.raises(PathNotFound):
            await driver.stat("/blob/data")
        assert [f.path async for f in driver.walk("/blob")] == []

    async def test_concurrent_staged_writers_of_one_path_each_commit_whole(
        self, driver: StorageDriver
    ) -> None:
        first = await driver.staged_writer("/blob/data")
        second = await driver.staged_writer("/blob/data")
        await first.write(b"A" * 1000)
        await second.write(b"B" * 2000)
        await first.commit()
        assert await driver.get_content("/blob/data") == b"A" * 1000
        await second.commit()
        assert await driver.get_content("/blob/data") == b"B" * 2000

    async def test_zero_bytes_commit_to_empty_content(self, driver: StorageDriver) -> None:
        writer = await driver.staged_writer("/blob/data")
        await writer.commit()
        assert await driver.get_content("/blob/data") == b""


class TestStat:
    async def test_stat_of_file_gives_its_size(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/f", b"12345")
        info = await driver.stat("/d/f")
        assert (info.path, info.size, info.is_dir) == ("/d/f", 5, False)
        assert info.modified > 0

    async def test_stat_of_directory_gives_is_dir_and_zero_size(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/d/e/f", b"12345")
        assert await driver.stat("/d/e") == FileInfo("/d/e", 0, 0, True)

    async def test_stat_of_missing_path_raises_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/f", b"x")
        with pytest.raises(PathNotFound):
            await driver.stat("/d/g")


class TestStatFile:
    async def test_stat_file_of_file_gives_what_stat_gives(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/f", b"12345")
        info = await driver.stat_file("/d/f")
        assert (info.path, info.size, info.is_dir) == ("/d/f", 5, False)
        assert info.modified > 0

    async def test_stat_file_of_directory_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/d/e/f", b"12345")
        with pytest.raises(PathNotFound):
            await driver.stat_file("/d/e")

    async def test_stat_file_of_missing_path_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/d/f", b"x")
        with pytest.raises(PathNotFound):
            await driver.stat_file("/d/g")


class TestList:
    async def test_list_gives_sorted_full_paths_of_direct_children(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/d/b", "/d/a.c", "/d/a/deep/f", "/d/a-b", "/d/A", "/dx"])
        assert await driver.list("/d") == ["/d/A", "/d/a", "/d/a-b", "/d/a.c", "/d/b"]

    async def test_list_of_missing_directory_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(PathNotFound):
            await driver.list("/missing")

    async def test_list_of_file_raises_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", b"x")
        with pytest.raises(PathNotFound):
            await driver.list("/f")

    async def test_list_of_directory_emptied_by_delete_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/d/sub/f", b"x")
        await driver.delete("/d/sub")
        with pytest.raises(PathNotFound):
            await driver.list("/d")


class TestWalk:
    # `/` sorts after `-` and `.`, so the files of directory `a` come after
    # `a-b` and `a.b` but before `a0`.
    FILES = ["/w/a/b", "/w/a-b", "/w/ab", "/w/a/c/d", "/w/a.b", "/w/B", "/w/a0", "/w/a/c-"]

    async def test_walk_yields_every_file_in_byte_order(self, driver: StorageDriver) -> None:
        await put_all(driver, [*self.FILES, "/wx", "/v/f"])
        assert await walk_paths(driver, "/w") == sorted(self.FILES)
        assert sorted(self.FILES)[1:4] == ["/w/a-b", "/w/a.b", "/w/a/b"]

    async def test_walk_yields_file_info_of_files_only(self, driver: StorageDriver) -> None:
        await driver.put_content("/w/d/f", b"abc")
        infos = [info async for info in driver.walk("/w")]
        assert [(i.path, i.size, i.is_dir) for i in infos] == [("/w/d/f", 3, False)]

    @pytest.mark.parametrize(
        "start_after",
        ["/w", "/w/", "/w/0", "/w/B", "/w/a", "/w/a-b", "/w/a/", "/w/a/b", "/w/a/c",
         "/w/a/c/d", "/w/a/c-", "/w/a/z", "/w/a0", "/w/ab", "/w/z", "/x"],
    )  # fmt: skip
    async def test_walk_after_a_path_yields_only_later_files(
        self, driver: StorageDriver, start_after: str
    ) -> None:
        await put_all(driver, self.FILES)
        expected = [path for path in sorted(self.FILES) if path > start_after]
        assert await walk_paths(driver, "/w", start_after) == expected

    async def test_walk_of_directory_skips_siblings_sharing_its_prefix(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, self.FILES)
        assert await walk_paths(driver, "/w/a") == ["/w/a/b", "/w/a/c-", "/w/a/c/d"]

    async def test_walk_of_more_files_than_a_listing_page_yields_them_all_in_order(
        self, driver: StorageDriver
    ) -> None:
        """S3 lists 1,000 keys a page, and walks a longer tree in pieces side by side."""
        deep = [f"/w/{d}/{n:03d}/f" for d in ("a", "a.c", "b") for n in range(150)]
        files = [*deep, *(f"/w/a/{n:03d}-x" for n in range(600)), *self.FILES, "/w/z"]
        await asyncio.gather(*(put_all(driver, files[n::16]) for n in range(16)))
        assert await walk_paths(driver, "/w") == sorted(set(files))

    async def test_walk_closed_midway_leaves_no_listing_running(
        self, driver: StorageDriver
    ) -> None:
        files = [f"/w/{d:02d}/{n:03d}" for d in range(20) for n in range(60)]
        await asyncio.gather(*(put_all(driver, files[n::16]) for n in range(16)))
        before = asyncio.all_tasks()
        walk = driver.walk("/w")
        assert (await anext(walk)).path == files[0]
        await walk.aclose()
        for _ in range(100):  # the listings end as their cancellations are delivered
            if not asyncio.all_tasks() - before:
                break
            await asyncio.sleep(0.01)
        assert asyncio.all_tasks() - before == set()
        assert await walk_paths(driver, "/w") == files

    async def test_walk_of_missing_path_yields_nothing(self, driver: StorageDriver) -> None:
        assert await walk_paths(driver, "/missing") == []

    async def test_walk_of_file_yields_nothing(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", b"x")
        assert await walk_paths(driver, "/f") == []


class TestWithBulkConcurrency:
    async def test_the_view_reads_and_writes_the_drivers_storage(
        self, driver: StorageDriver
    ) -> None:
        view = driver.with_bulk_concurrency(1)
        await view.put_content("/v/a", b"by the view")
        await driver.put_content("/v/b", b"by the driver")
        assert await driver.get_content("/v/a") == b"by the view"
        assert await walk_paths(view, "/v") == ["/v/a", "/v/b"]

    def test_the_view_narrows_bulk_concurrency_and_never_widens_it(
        self, driver: StorageDriver
    ) -> None:
        width = driver.bulk_concurrency
        assert driver.with_bulk_concurrency(1).bulk_concurrency == 1
        assert driver.with_bulk_concurrency(width + 100).bulk_concurrency == width
        assert driver.bulk_concurrency == width


class TestMove:
    async def test_move_puts_content_at_dest_and_removes_source(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/src/f", b"content")
        await driver.move("/src/f", "/dst/deep/f")
        assert await driver.get_content("/dst/deep/f") == b"content"
        with pytest.raises(PathNotFound):
            await driver.get_content("/src/f")

    async def test_move_replaces_existing_dest(self, driver: StorageDriver) -> None:
        await driver.put_content("/a", b"new")
        await driver.put_content("/b", b"old and longer")
        await driver.move("/a", "/b")
        assert await driver.get_content("/b") == b"new"

    async def test_move_of_missing_source_raises_path_not_found_and_keeps_dest(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/b", b"kept")
        with pytest.raises(PathNotFound):
            await driver.move("/a", "/b")
        assert await driver.get_content("/b") == b"kept"

    async def test_move_of_committed_writer_content_moves_all_of_it(
        self, driver: StorageDriver
    ) -> None:
        data = os.urandom(2 * MiB)
        writer = await driver.writer("/uploads/1/data")
        await writer.write(data)
        await writer.commit()
        await driver.move("/uploads/1/data", "/blobs/x/data")
        assert await driver.get_content("/blobs/x/data") == data


class TestDelete:
    async def test_delete_of_file_removes_only_it(self, driver: StorageDriver) -> None:
        await put_all(driver, ["/d/f", "/d/g"])
        await driver.delete("/d/f")
        with pytest.raises(PathNotFound):
            await driver.get_content("/d/f")
        assert await driver.list("/d") == ["/d/g"]

    async def test_delete_of_directory_removes_everything_below_it(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/d/a/f", "/d/a/sub/g", "/d/a-b", "/d/ab/h"])
        await driver.delete("/d/a")
        with pytest.raises(PathNotFound):
            await driver.stat("/d/a")
        assert await walk_paths(driver, "/d") == ["/d/a-b", "/d/ab/h"]

    async def test_delete_of_missing_path_raises_path_not_found(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(PathNotFound):
            await driver.delete("/missing")

    async def test_delete_of_directory_leaves_no_path_to_stat_list_or_walk(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/r/_uploads/1/startedat", "/r/_layers/x/link"])
        await driver.delete("/r/_uploads/1")
        with pytest.raises(PathNotFound):
            await driver.stat("/r/_uploads/1")
        with pytest.raises(PathNotFound):
            await driver.list("/r/_uploads")  # empty: as if it did not exist
        assert await walk_paths(driver, "/r") == ["/r/_layers/x/link"]

    async def test_delete_of_directory_discards_closed_writers_below_it(
        self, driver: StorageDriver
    ) -> None:
        await driver.put_content("/uploads/1/startedat", b"now")
        writer = await driver.writer("/uploads/1/data")
        await writer.write(b"partial")
        await writer.close()
        await driver.delete("/uploads/1")
        with pytest.raises(PathNotFound):
            await driver.writer("/uploads/1/data", append=True)


class TestDeleteFiles:
    async def test_delete_files_removes_them_and_the_directory_they_leave_empty(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/r/_uploads/1/startedat", "/r/_uploads/1/data", "/r/x"])
        await driver.delete_files(["/r/_uploads/1/startedat", "/r/_uploads/1/data"])
        with pytest.raises(PathNotFound):
            await driver.stat("/r/_uploads/1")
        with pytest.raises(PathNotFound):
            await driver.list("/r/_uploads")
        assert await walk_paths(driver, "/r") == ["/r/x"]

    async def test_delete_files_leaves_the_other_files_of_their_directory(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/d/a", "/d/b", "/d/sub/c"])
        await driver.delete_files(["/d/a"])
        assert await driver.list("/d") == ["/d/b", "/d/sub"]
        assert await walk_paths(driver, "/d") == ["/d/b", "/d/sub/c"]

    async def test_delete_files_of_directories_leaves_no_empty_directory_to_list(
        self, driver: StorageDriver
    ) -> None:
        await put_all(driver, ["/r/_layers/a/link", "/r/_layers/b/link", "/r/_uploads/1/data"])
        await driver.delete_files(["/r/_layers/a/link", "/r/_layers/b/link"])
        with pytest.raises(PathNotFound):
            await driver.list("/r/_layers")
        assert await walk_paths(driver, "/r") == ["/r/_uploads/1/data"]

    async def test_delete_files_of_more_files_than_one_request_holds_deletes_them_all(
        self, driver: StorageDriver
    ) -> None:
        """S3 deletes at most 1,000 keys a request: these are 1,200 objects and their markers."""
        paths = [f"/b/{n:02x}/{n:04d}" for n in range(600)]
        await asyncio.gather(*(put_all(driver, [f"{p}/data", f"{p}/link"]) for p in paths))
        await driver.delete_files([f"{p}/{name}" for p in paths for name in ("data", "link")])
        assert await walk_paths(driver, "/b") == []
        for directory in paths[::100]:
            with pytest.raises(PathNotFound):
                await driver.stat(directory)

    async def test_delete_files_skips_paths_with_no_file(self, driver: StorageDriver) -> None:
        await put_all(driver, ["/d/a"])
        await driver.delete_files([])
        await driver.delete_files(["/d/missing", "/e/missing", "/d/a"])
        with pytest.raises(PathNotFound):
            await driver.stat("/d")


class TestLocalFile:
    async def test_local_file_is_none_or_holds_the_content(self, driver: StorageDriver) -> None:
        await driver.put_content("/f", b"content")
        local = driver.local_file("/f")
        if local is not None:
            assert await asyncio.to_thread(Path(local).read_bytes) == b"content"

    async def test_local_file_of_missing_or_directory_is_none(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/f", b"x")
        assert driver.local_file("/missing") is None
        assert driver.local_file("/d") is None


class TestErrors:
    async def test_storage_errors_are_registry_errors_naming_the_driver(
        self, driver: StorageDriver
    ) -> None:
        with pytest.raises(StorageError) as caught:
            await driver.stat("/missing")
        assert caught.value.driver == driver.name
        assert driver.name in str(caught.value)
