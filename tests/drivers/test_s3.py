"""What the S3 driver promises beyond the shared contract, on moto and on SeaweedFS.

The shared suite (test_driver.py) holds the driver to the interface; these
tests look into the bucket: where keys land, how writes become multipart
uploads and parts, that no upload is left behind, and that the redirect URLs
work. Data stays within a few parts of S3's smallest part size (5 MiB).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from botocore.exceptions import ClientError

from registry.config import ConfigError, S3Config
from registry.drivers.base import StorageDriver
from registry.drivers.metrics import DriverMetrics
from registry.drivers.s3 import CHUNK_SIZE, S3Driver
from registry.drivers.s3writer import MIN_PART_SIZE, STATE_SUFFIX
from registry.errors import PathNotFound, StorageError
from tests.s3server import BUCKET, S3Server

MiB = 1024 * 1024
PART = MIN_PART_SIZE
UPLOAD = "/docker/registry/v2/repositories/r/_uploads/1/data"


@pytest.fixture(params=["moto", "seaweedfs"])
def server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server of the session."""
    s3: S3Server = request.getfixturevalue(f"{request.param}_s3")
    return s3


@pytest.fixture
def config(server: S3Server) -> S3Config:
    """A prefix of the server's bucket that no other test uses."""
    return server.config(prefix=f"test-{uuid.uuid4().hex}")


@pytest.fixture
async def s3(config: S3Config) -> AsyncIterator[S3Driver]:
    """An opened driver on `config`."""
    async with opened(config) as driver:
        yield driver


@asynccontextmanager
async def opened(config: S3Config, **kwargs: Any) -> AsyncIterator[S3Driver]:
    """A driver on `config`, opened; a new one stands for a new process."""
    s3 = S3Driver(config, **kwargs)
    await s3.open()
    try:
        yield s3
    finally:
        await s3.close()


def uploads(server: S3Server, driver: S3Driver, path: str) -> list[str]:
    """Ids of the multipart uploads in progress at `path`."""
    key = driver.key(path)
    listing = server.client.list_multipart_uploads(Bucket=BUCKET, Prefix=key)
    return [upload["UploadId"] for upload in listing.get("Uploads", []) if upload["Key"] == key]


def keys(server: S3Server, prefix: str) -> list[str]:
    listing = server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def head(server: S3Server, key: str) -> dict[str, Any]:
    result: dict[str, Any] = server.client.head_object(Bucket=BUCKET, Key=key)
    return result


async def write_in_pieces(driver: S3Driver, path: str, data: bytes, sizes: list[int]) -> None:
    """Write `data` to a fresh writer at `path` in pieces of `sizes`, then close it."""
    assert sum(sizes) == len(data)
    writer = await driver.writer(path)
    start = 0
    for size in sizes:
        await writer.write(data[start : start + size])
        start += size
    await writer.close()


async def write_in_pieces_appended(driver: S3Driver, path: str, data: bytes) -> None:
    """Write `data` to a writer resuming `path`, then close it: a later PATCH."""
    writer = await driver.writer(path, append=True)
    await writer.write(data)
    await writer.close()


async def commit_dying_before_the_state_goes(
    config: S3Config, monkeypatch: pytest.MonkeyPatch, last: bytes
) -> None:
    """In a process of its own, resume the writer at `UPLOAD`, write `last` and commit;
    the process dies once the upload is assembled, before its saved state is removed."""
    async with opened(config) as crashing:
        writer = await crashing.writer(UPLOAD, append=True)
        await writer.write(last)

        async def die(path: str) -> None:
            raise StorageError(crashing.name, path, "killed")

        monkeypatch.setattr(crashing, "_delete_state", die)
        with pytest.raises(StorageError, match="killed"):
            await writer.commit()


def _counted(calls: list[str], name: str, method: Any) -> Any:
    """`method`, noting `name` in `calls` at each call."""

    async def counted(**params: Any) -> Any:
        calls.append(name)
        return await method(**params)

    return counted


class TestKeys:
    @pytest.mark.parametrize(
        ("prefix", "key"),
        [
            ("", "docker/registry/v2/x"),
            ("/", "docker/registry/v2/x"),
            ("reg", "reg/docker/registry/v2/x"),
            ("reg/", "reg/docker/registry/v2/x"),
            ("/reg", "reg/docker/registry/v2/x"),
            ("/a/b//", "a/b/docker/registry/v2/x"),
        ],
    )
    def test_key_is_distributions_rootdirectory_and_path(self, prefix: str, key: str) -> None:
        """Distribution: strings.TrimLeft(strings.TrimRight(rootdirectory, "/") + path, "/")."""
        s3 = S3Driver(S3Config(bucket="b", prefix=prefix))
        assert s3.key("/docker/registry/v2/x") == key

    async def test_content_lands_at_the_prefixed_key(self, server: S3Server) -> None:
        prefix = f"reg-{uuid.uuid4().hex}"
        async with opened(server.config(prefix=prefix)) as s3:
            await s3.put_content("/docker/registry/v2/blobs/x/data", b"blob")
        key = f"{prefix}/docker/registry/v2/blobs/x/data"
        assert keys(server, prefix) == [key]
        assert server.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"blob"

    async def test_without_prefix_content_lands_at_the_bucket_root(self, server: S3Server) -> None:
        bucket = f"root-{uuid.uuid4().hex[:12]}"
        server.create_bucket(bucket)
        async with opened(server.config(bucket=bucket)) as s3:
            await s3.put_content("/docker/registry/v2/blobs/x/data", b"blob")
            writer = await s3.writer("/docker/registry/v2/blobs/y/data")
            await writer.write(b"streamed")
            await writer.commit()
        listing = server.client.list_objects_v2(Bucket=bucket)
        assert [item["Key"] for item in listing["Contents"]] == [
            "docker/registry/v2/blobs/x/data",
            "docker/registry/v2/blobs/y/data",
        ]

    async def test_objects_written_by_another_tool_are_served(
        self, server: S3Server, config: S3Config, s3: S3Driver
    ) -> None:
        """What Distribution wrote under its rootdirectory is content at the driver's paths."""
        key = f"{config.prefix}/docker/registry/v2/repositories/r/_layers/sha256/ab/link"
        server.client.put_object(Bucket=BUCKET, Key=key, Body=b"sha256:ab")
        path = "/docker/registry/v2/repositories/r/_layers/sha256/ab/link"
        assert await s3.get_content(path) == b"sha256:ab"
        assert await s3.list("/docker/registry/v2/repositories/r") == [
            "/docker/registry/v2/repositories/r/_layers"
        ]
        assert [info.path async for info in s3.walk("/docker")] == [path]

    async def test_directory_markers_of_other_tools_are_not_children(
        self, server: S3Server, config: S3Config, s3: S3Driver
    ) -> None:
        """Consoles create empty `dir/` objects; they name no file."""
        server.client.put_object(Bucket=BUCKET, Key=f"{config.prefix}/d/", Body=b"")
        await s3.put_content("/d/f", b"x")
        assert await s3.list("/d") == ["/d/f"]
        assert [info.path async for info in s3.walk("/d")] == ["/d/f"]


class TestConfig:
    def test_missing_bucket_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="bucket"):
            S3Driver(S3Config())

    @pytest.mark.parametrize("part_size", [PART - 1, 5 * 1024 * MiB + 1])
    def test_part_size_outside_s3s_limits_is_a_config_error(self, part_size: int) -> None:
        with pytest.raises(ConfigError, match="part_size"):
            S3Driver(S3Config(bucket="b", part_size=part_size))

    def test_parts_double_every_thousand_so_huge_blobs_fit_in_ten_thousand(self) -> None:
        s3 = S3Driver(S3Config(bucket="b", part_size=PART))
        assert [s3.part_size(n) for n in (1, 1000, 1001, 2001, 9999)] == [
            PART,
            PART,
            2 * PART,
            4 * PART,
            512 * PART,
        ]
        assert sum(s3.part_size(n) for n in range(1, 10_001)) > 300 * 1024 * MiB
        big = S3Driver(S3Config(bucket="b", part_size=1024 * MiB))
        assert big.part_size(10_000) == 5 * 1024 * MiB  # S3's largest part


class TestWriter:
    async def test_content_under_one_part_is_put_whole_without_multipart_upload(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        data = os.urandom(PART - 1)
        await write_in_pieces(s3, UPLOAD, data, [MiB, PART - 1 - MiB])
        assert uploads(server, s3, UPLOAD) == []
        writer = await s3.writer(UPLOAD, append=True)
        await writer.commit()
        assert await s3.get_content(UPLOAD) == data
        assert uploads(server, s3, UPLOAD) == []

    async def test_a_writer_is_in_memory_until_its_first_part_is_uploaded(
        self, s3: S3Driver
    ) -> None:
        """`in_memory` tells the uploads service a commit costs no more than a HEAD."""
        await write_in_pieces(s3, UPLOAD, os.urandom(PART - 1), [PART - 1])
        writer = await s3.writer(UPLOAD, append=True)
        assert writer.in_memory
        await writer.write(b"x")  # fills the part: it goes up
        assert not writer.in_memory
        await writer.cancel()

    @pytest.mark.parametrize("resumed", [False, True])
    async def test_zero_byte_content_commits_to_an_empty_object(
        self, server: S3Server, s3: S3Driver, resumed: bool
    ) -> None:
        writer = await s3.writer(UPLOAD)
        if resumed:
            await writer.close()
            writer = await s3.writer(UPLOAD, append=True)
        await writer.commit()
        assert await s3.get_content(UPLOAD) == b""
        assert (await s3.stat(UPLOAD)).size == 0
        assert uploads(server, s3, UPLOAD) == []

    async def test_final_part_smaller_than_five_mib_completes_the_upload(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        data = os.urandom(2 * PART + 1234)
        writer = await s3.writer(UPLOAD)
        await writer.write(data)
        assert len(uploads(server, s3, UPLOAD)) == 1
        await writer.commit()
        assert await s3.get_content(UPLOAD) == data
        assert uploads(server, s3, UPLOAD) == []
        assert keys(server, s3.key(UPLOAD)) == [s3.key(UPLOAD)]

    @pytest.mark.parametrize(
        "sizes",
        [
            [3 * MiB, 4 * MiB, 3 * MiB + 5],  # the second write straddles the first boundary
            [PART - 1, 2, PART - 1],  # one byte each side of the boundary
            [PART, PART],  # writes that end exactly on boundaries
            [1, 2 * PART + 7],  # one write spanning two whole parts
        ],
    )
    async def test_writes_straddling_part_boundaries_commit_in_order(
        self, s3: S3Driver, sizes: list[int]
    ) -> None:
        data = os.urandom(sum(sizes))
        await write_in_pieces(s3, UPLOAD, data, sizes)
        writer = await s3.writer(UPLOAD, append=True)
        assert writer.size == len(data)
        await writer.commit()
        assert await s3.get_content(UPLOAD) == data

    async def test_writer_resumes_in_a_new_process_from_the_saved_tail(
        self, server: S3Server, config: S3Config
    ) -> None:
        data = os.urandom(2 * PART + 3 * MiB)
        async with opened(config) as first:
            writer = await first.writer(UPLOAD)
            await writer.write(data[: PART + MiB])
            await writer.close()
            upload_id = uploads(server, first, UPLOAD)
            state = head(server, first.key(UPLOAD) + STATE_SUFFIX)
        # One part uploaded, the 1 MiB beyond it saved with the state.
        assert len(upload_id) == 1
        assert MiB < state["ContentLength"] < MiB + 1024
        async with opened(config) as second:
            writer = await second.writer(UPLOAD, append=True)
            assert writer.size == PART + MiB
            await writer.write(data[PART + MiB : 2 * PART + MiB])
            await writer.close()
        async with opened(config) as third:
            writer = await third.writer(UPLOAD, append=True)
            assert writer.size == 2 * PART + MiB
            await writer.write(data[2 * PART + MiB :])
            assert uploads(server, third, UPLOAD) == upload_id
            await writer.commit()
            assert await third.get_content(UPLOAD) == data
            assert uploads(server, third, UPLOAD) == []
            assert keys(server, third.key(UPLOAD)) == [third.key(UPLOAD)]

    async def test_close_uploads_a_tail_of_a_minimum_part_instead_of_saving_it(
        self, server: S3Server, config: S3Config
    ) -> None:
        """A chunked push in 5 MiB chunks must not carry its bytes through the saved state."""
        big = dataclasses.replace(config, part_size=3 * PART)
        data = os.urandom(2 * PART)
        async with opened(big) as driver:
            writer = await driver.writer(UPLOAD)
            await writer.write(data[:PART])
            await writer.close()
            state = head(server, driver.key(UPLOAD) + STATE_SUFFIX)
            assert state["ContentLength"] < 1024
            writer = await driver.writer(UPLOAD, append=True)
            assert writer.size == PART
            await writer.write(data[PART:])
            await writer.commit()
            assert await driver.get_content(UPLOAD) == data

    async def test_commit_copies_a_saved_tail_in_storage_instead_of_uploading_it_again(
        self, s3: S3Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The last PATCH of a chunked push leaves a tail under 5 MiB in the saved state:
        the PUT that ends the push makes it the last part without sending it again."""
        data = os.urandom(PART + 2 * MiB)
        await write_in_pieces(s3, UPLOAD, data, [len(data)])
        client = s3._s3
        calls: list[str] = []
        for name in ("upload_part", "upload_part_copy"):
            monkeypatch.setattr(client, name, _counted(calls, name, getattr(client, name)))
        writer = await s3.writer(UPLOAD, append=True)
        await writer.commit_to("/blob")
        assert calls == ["upload_part_copy"]
        assert await s3.get_content("/blob") == data

    async def test_staged_writer_uploads_straight_to_the_key(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        """No staging object, no saved state, no copy: the multipart upload completes at the key."""
        data = os.urandom(PART + MiB)
        writer = await s3.staged_writer(UPLOAD)
        await writer.write(data)
        assert len(uploads(server, s3, UPLOAD)) == 1
        await writer.commit()
        assert keys(server, s3.key(UPLOAD)) == [s3.key(UPLOAD)]
        assert head(server, s3.key(UPLOAD))["ETag"].endswith('-2"')
        assert await s3.get_content(UPLOAD) == data

    async def test_resumed_writer_closed_unchanged_writes_nothing(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        """Asking an upload's size resumes and closes a writer: that costs one GET, no PUT."""
        await write_in_pieces(s3, UPLOAD, b"tail", [4])
        writer = await s3.writer(UPLOAD, append=True)
        await writer.write(b"")
        state = s3.key(UPLOAD) + STATE_SUFFIX
        server.client.delete_object(Bucket=BUCKET, Key=state)
        await writer.close()
        assert keys(server, state) == []

    async def test_uncommitted_content_is_not_a_file(self, s3: S3Driver) -> None:
        await write_in_pieces(s3, "/d/data", os.urandom(PART + 1), [PART + 1])
        await s3.put_content("/d/other", b"x")
        with pytest.raises(PathNotFound):
            await s3.stat("/d/data")
        assert await s3.list("/d") == ["/d/other"]
        assert [info.path async for info in s3.walk("/d")] == ["/d/other"]

    async def test_cancel_aborts_the_multipart_upload_and_removes_the_state(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        await write_in_pieces(s3, UPLOAD, os.urandom(PART + 1), [PART + 1])
        assert len(uploads(server, s3, UPLOAD)) == 1
        writer = await s3.writer(UPLOAD, append=True)
        await writer.write(os.urandom(PART))
        await writer.cancel()
        assert uploads(server, s3, UPLOAD) == []
        assert keys(server, s3.key("/docker")) == []
        with pytest.raises(PathNotFound):
            await s3.writer(UPLOAD, append=True)

    async def test_cancel_of_a_writer_never_closed_aborts_its_upload(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        writer = await s3.writer(UPLOAD)
        await writer.write(os.urandom(PART + 1))
        await writer.cancel()
        assert uploads(server, s3, UPLOAD) == []

    async def test_fresh_writer_aborts_the_upload_of_a_closed_one(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        await write_in_pieces(s3, UPLOAD, os.urandom(PART + 1), [PART + 1])
        writer = await s3.writer(UPLOAD)
        assert uploads(server, s3, UPLOAD) == []
        await writer.write(b"new")
        await writer.commit()
        assert await s3.get_content(UPLOAD) == b"new"

    async def test_delete_of_the_upload_directory_aborts_its_upload(
        self, server: S3Server, s3: S3Driver
    ) -> None:
        directory = UPLOAD.rsplit("/", 1)[0]
        await s3.put_content(f"{directory}/startedat", b"now")
        await write_in_pieces(s3, UPLOAD, os.urandom(PART + 1), [PART + 1])
        await s3.delete(directory)
        assert uploads(server, s3, UPLOAD) == []
        assert keys(server, s3.key("/docker")) == []

    async def test_writer_resumed_after_its_upload_was_completed_raises_path_not_found(
        self, seaweedfs_s3: S3Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A commit that assembled the upload but died before removing the saved state
        leaves a state that cannot be resumed: every write or commit says the path is
        gone (the FileWriter contract), and the assembled content is at the path.

        On SeaweedFS only: moto answers 500, not S3's NoSuchUpload, for a part of a
        completed upload."""
        config = seaweedfs_s3.config(prefix=f"test-{uuid.uuid4().hex}")
        data = os.urandom(2 * PART + MiB)
        async with opened(config) as first:
            await write_in_pieces(first, UPLOAD, data[: PART + MiB], [PART + MiB])
        await commit_dying_before_the_state_goes(config, monkeypatch, data[PART + MiB :])
        async with opened(config) as restarted:
            writer = await restarted.writer(UPLOAD, append=True)
            assert writer.size == PART + MiB  # the state predates the last write
            with pytest.raises(PathNotFound):
                await writer.write(data[PART + MiB :])
            writer = await restarted.writer(UPLOAD, append=True)
            with pytest.raises(PathNotFound):
                await writer.commit()
            assert await restarted.get_content(UPLOAD) == data

    async def test_commit_that_copied_the_saved_tail_and_died_is_finished_by_the_next(
        self, seaweedfs_s3: S3Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A PUT retried after the process died between assembling the upload and
        removing the saved state succeeds, though SeaweedFS gives the copied tail the
        state object's ETag, not the MD5 of the bytes copied.

        On SeaweedFS only: moto answers 500, not S3's NoSuchUpload, for a part of a
        completed upload."""
        config = seaweedfs_s3.config(prefix=f"test-{uuid.uuid4().hex}")
        data = os.urandom(2 * PART + MiB)
        async with opened(config) as first:
            await write_in_pieces(first, UPLOAD, data, [len(data)])
        await commit_dying_before_the_state_goes(config, monkeypatch, b"")
        async with opened(config) as restarted:
            writer = await restarted.writer(UPLOAD, append=True)
            assert writer.size == len(data)
            await writer.commit()
            assert await restarted.get_content(UPLOAD) == data
            assert keys(seaweedfs_s3, restarted.key(UPLOAD)) == [restarted.key(UPLOAD)]

    async def test_a_push_goes_on_after_a_commit_that_failed_after_copying_the_tail(
        self, s3: S3Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The copied part is under 5 MiB: a PATCH after the failed PUT must replace it,
        not follow it, or no PUT could ever complete the upload."""
        data = os.urandom(PART + 3 * MiB)
        await write_in_pieces(s3, UPLOAD, data[: PART + MiB], [PART + MiB])
        client = s3._s3
        complete = client.complete_multipart_upload

        async def unavailable(**params: Any) -> Any:
            raise StorageError(s3.name, UPLOAD, "503 SlowDown")

        monkeypatch.setattr(client, "complete_multipart_upload", unavailable)
        writer = await s3.writer(UPLOAD, append=True)
        with pytest.raises(StorageError, match="SlowDown"):
            await writer.commit()
        monkeypatch.setattr(client, "complete_multipart_upload", complete)
        await write_in_pieces_appended(s3, UPLOAD, data[PART + MiB :])
        writer = await s3.writer(UPLOAD, append=True)
        await writer.commit()
        assert await s3.get_content(UPLOAD) == data

    async def test_a_refused_copy_of_the_tail_uploads_it_and_is_not_asked_again(
        self, s3: S3Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AWS documents that it copies byte ranges only of objects over 5 MB: each
        chunked push would pay a refused request before its upload."""
        refusals: list[str] = []

        async def refused(**params: Any) -> Any:
            refusals.append(params["Key"])
            error = {"Code": "InvalidRequest", "Message": "The specified copy source is too small"}
            raise ClientError({"Error": error}, "UploadPartCopy")

        monkeypatch.setattr(s3._s3, "upload_part_copy", refused)
        for push in ("/a", "/b"):
            data = os.urandom(PART + MiB)
            await write_in_pieces(s3, f"{push}/data", data, [len(data)])
            writer = await s3.writer(f"{push}/data", append=True)
            await writer.commit_to(f"{push}/blob")
            assert await s3.get_content(f"{push}/blob") == data
        assert refusals == [s3.key("/a/data")]

    async def test_a_tail_saved_again_by_another_writer_is_not_copied(
        self, seaweedfs_s3: S3Server
    ) -> None:
        """Two writers on one upload break the caller's promise, but the commit still
        stores its own bytes: the copy asks for the state object it loaded (If-Match).

        On SeaweedFS only: moto ignores the copy's preconditions."""
        config = seaweedfs_s3.config(prefix=f"test-{uuid.uuid4().hex}")
        data = os.urandom(PART + MiB)
        async with opened(config) as s3:
            await write_in_pieces(s3, UPLOAD, data, [len(data)])
            writer = await s3.writer(UPLOAD, append=True)
            state = await s3._load_state(UPLOAD)
            assert state is not None
            state.tail = io.BytesIO(os.urandom(MiB))
            await s3._save_state(UPLOAD, state)
            await writer.commit()
            assert await s3.get_content(UPLOAD) == data


class TestWalk:
    @pytest.mark.parametrize("wrapped", [False, True])
    async def test_a_narrowed_view_lists_at_most_its_bulk_concurrency_at_once(
        self, s3: S3Driver, monkeypatch: pytest.MonkeyPatch, wrapped: bool
    ) -> None:
        """A collection walks so, while the same driver serves clients at full width."""
        files = [f"/w/{d:02d}/{n:03d}" for d in range(12) for n in range(100)]  # > 1 page
        await asyncio.gather(*(s3.put_content(f, b"") for f in files))
        listing = {"now": 0, "peak": 0}
        client = s3._s3
        list_objects = client.list_objects_v2

        async def held_listing(**params: Any) -> Any:
            listing["now"] += 1
            listing["peak"] = max(listing["peak"], listing["now"])
            try:
                await asyncio.sleep(0.01)
                return await list_objects(**params)
            finally:
                listing["now"] -= 1

        monkeypatch.setattr(client, "list_objects_v2", held_listing)
        assert s3.bulk_concurrency > 3
        # In the server, the S3 driver is wrapped (metrics, size limits).
        driver: StorageDriver = DriverMetrics(s3) if wrapped else s3
        assert [info.path async for info in driver.with_bulk_concurrency(3).walk("/w")] == files
        assert listing["peak"] == 3


class TestReader:
    async def test_reader_yields_chunks_of_at_most_chunk_size(self, s3: S3Driver) -> None:
        data = os.urandom(3 * CHUNK_SIZE + 5)
        await s3.put_content("/f", data)
        chunks = [chunk async for chunk in await s3.reader("/f", 3)]
        assert max(len(chunk) for chunk in chunks) <= CHUNK_SIZE
        assert b"".join(chunks) == data[3:]

    @pytest.mark.parametrize(("offset", "length"), [(0, 1), (0, None), (0, 0)])
    async def test_reads_of_an_empty_object_yield_nothing(
        self, s3: S3Driver, offset: int, length: int | None
    ) -> None:
        """S3 refuses any range of an empty object; to the driver it is an empty read."""
        await s3.put_content("/empty", b"")
        assert [chunk async for chunk in await s3.reader("/empty", offset, length)] == []


class TestMove:
    async def test_move_beyond_copy_part_size_copies_in_parts(
        self, server: S3Server, config: S3Config
    ) -> None:
        data = os.urandom(2 * PART + 3)
        async with opened(config, copy_part_size=PART) as s3:
            await s3.put_content("/src", data)
            await s3.move("/src", "/dst")
            assert await s3.get_content("/dst") == data
            with pytest.raises(PathNotFound):
                await s3.stat("/src")
            # The ETag of an object assembled from parts ends with their count.
            assert head(server, s3.key("/dst"))["ETag"].strip('"').endswith("-3")
            assert uploads(server, s3, "/dst") == []

    async def test_move_of_copy_part_size_copies_whole(
        self, server: S3Server, config: S3Config
    ) -> None:
        data = os.urandom(PART)
        async with opened(config, copy_part_size=PART) as s3:
            await s3.put_content("/src", data)
            await s3.move("/src", "/dst")
            assert await s3.get_content("/dst") == data
            assert "-" not in head(server, s3.key("/dst"))["ETag"]

    def test_copy_part_size_outside_s3s_limits_is_refused(self) -> None:
        with pytest.raises(ValueError, match="copy_part_size"):
            S3Driver(S3Config(bucket="b"), copy_part_size=PART - 1)


class TestRedirect:
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    async def test_redirect_url_serves_the_content(self, config: S3Config, method: str) -> None:
        data = os.urandom(100_000)
        async with opened(dataclasses.replace(config, redirect=True)) as s3:
            await s3.put_content("/blob", data)
            url = await s3.redirect_url("/blob", method)
        assert url is not None
        async with aiohttp.ClientSession() as session, session.request(method, url) as response:
            assert response.status == 200
            assert response.content_length == len(data)
            if method == "GET":
                assert await response.read() == data

    async def test_redirect_url_expires_after_the_configured_time(self, config: S3Config) -> None:
        changed = dataclasses.replace(config, redirect=True, redirect_expiry_seconds=321)
        async with opened(changed) as s3:
            url = await s3.redirect_url("/blob")
        assert url is not None
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["321"]

    async def test_without_redirect_the_registry_serves_content_itself(self, s3: S3Driver) -> None:
        await s3.put_content("/blob", b"x")
        assert await s3.redirect_url("/blob") is None


class TestWriteSettings:
    async def test_every_write_carries_storage_class_and_encryption(
        self, moto_s3: S3Server
    ) -> None:
        """Puts, both kinds of commit, both kinds of copy, and the writer state."""
        config = moto_s3.config(
            prefix=f"test-{uuid.uuid4().hex}",
            storage_class="STANDARD_IA",
            server_side_encryption="AES256",
        )
        async with opened(config, copy_part_size=PART) as s3:
            await s3.put_content("/put", b"x")
            await write_in_pieces(s3, "/state", b"x", [1])
            for path, size in (("/small", 10), ("/large", PART + 10)):
                writer = await s3.writer(path)
                await writer.write(os.urandom(size))
                await writer.commit()
                await s3.move(path, f"{path}-moved")
            written = ["/put", "/small-moved", "/large-moved"]
            objects = [s3.key(path) for path in written] + [s3.key("/state") + STATE_SUFFIX]
        for key in objects:
            metadata = head(moto_s3, key)
            assert metadata["StorageClass"] == "STANDARD_IA", key
            assert metadata["ServerSideEncryption"] == "AES256", key


class TestErrors:
    async def test_missing_bucket_is_a_storage_error_not_a_missing_path(
        self, server: S3Server
    ) -> None:
        async with opened(server.config(bucket="no-such-bucket")) as s3:
            with pytest.raises(StorageError, match="NoSuchBucket") as caught:
                await s3.get_content("/f")
        assert not isinstance(caught.value, PathNotFound)

    async def test_rejected_credentials_are_named_but_not_shown(
        self, seaweedfs_s3: S3Server
    ) -> None:
        """SeaweedFS checks signatures (moto does not)."""
        secret = "wrong-secret-do-not-print"
        config = seaweedfs_s3.config(secret_key=secret)
        async with opened(config) as s3:
            with pytest.raises(StorageError, match="SignatureDoesNotMatch") as caught:
                await s3.put_content("/f", b"x")
        text = "".join(str(error) for error in (caught.value, caught.value.__cause__))
        assert secret not in text
        assert config.access_key not in str(caught.value)

    async def test_unreachable_endpoint_is_a_storage_error(self, server: S3Server) -> None:
        config = server.config(endpoint_url="http://127.0.0.1:9", max_attempts=1)
        async with opened(config) as s3:
            with pytest.raises(StorageError, match="/f") as caught:
                await s3.stat("/f")
        assert not isinstance(caught.value, PathNotFound)
