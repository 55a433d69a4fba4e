"""The S3 driver's writer: content streamed into a multipart upload, resumable across processes.

A writer streams into an S3 multipart upload at the final key, holding at most
one part in memory. `close()` uploads the buffered bytes as a part when they
reach S3's 5 MiB minimum, then saves what a later process needs to resume in
one object beside the path, `<key>!writer`: the bytes not yet uploaded (less
than 5 MiB), then a JSON record of the upload id and of the parts uploaded so far
(number, ETag, size), then the record's length as 8 bytes, big-endian. The
record comes last so that neither saving nor loading copies the bytes before
it. `!` cannot occur in a driver path, so no path collides with such an object
and `list` and `walk` skip it; it goes away with `commit()`, with `cancel()`
and with a `delete` of a directory holding it, which also aborts its upload.
Content that never fills a part never starts a multipart upload: `commit()`
stores it with one PutObject. A commit makes a saved tail the last part by
copying its byte range out of that object, so that a chunked push sends its
bytes to storage once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from botocore.exceptions import ClientError

from registry.drivers.base import FileWriter
from registry.errors import PathNotFound, StorageError

if TYPE_CHECKING:
    from registry.drivers.s3 import S3Driver

#: S3's limits on the parts of a multipart upload: every part but the last is
#: at least the minimum; no part exceeds the maximum, which is also the largest
#: object CopyObject copies in one request.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000

#: A writer's parts double in size after every this many, from `part_size`:
#: small parts keep the memory of many concurrent uploads low, growing ones
#: keep huge blobs within 10,000 parts (over 300 GiB from 5 MiB parts).
PARTS_PER_SIZE = 1_000

#: What follows a path's key in the key of its writer's saved state.
STATE_SUFFIX = "!writer"

# The length of a saved writer state's record, after the record.
_RECORD_LENGTH = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class Part:
    """One uploaded part of a multipart upload."""

    number: int
    etag: str
    size: int


@dataclass(slots=True)
class WriterState:
    """What `close()` saves: the upload (None until a part was uploaded) and the tail.

    `tail` holds the bytes not yet uploaded. A file object, not bytes: botocore
    sends it in chunks, where bytes would be copied whole into the socket's
    buffer. `saved_etag` is the ETag of the object the state was loaded from
    (None for a new one), whose first bytes are the tail.
    """

    upload_id: str | None
    parts: list[Part]
    tail: io.BytesIO
    saved_etag: str | None = None


def encode_state(state: WriterState) -> io.BytesIO:
    """The object that saves `state`: its tail, then the record, then the record's length.

    Consumes `state.tail`, which the record is appended to rather than copied.
    """
    record = orjson.dumps(
        {
            "upload_id": state.upload_id,
            "parts": [[part.number, part.etag, part.size] for part in state.parts],
        }
    )
    body = state.tail
    body.seek(0, io.SEEK_END)
    body.write(record)
    body.write(_RECORD_LENGTH.pack(len(record)))
    return body


def decode_state(data: io.BytesIO, etag: str | None = None) -> WriterState:
    """The state `encode_state` wrote into `data` (an object whose ETag is `etag`), whose
    tail it keeps; `ValueError` if garbled."""
    try:
        end = data.seek(-_RECORD_LENGTH.size, io.SEEK_END)
        (length,) = _RECORD_LENGTH.unpack(data.read())
        start = data.seek(end - length)
        record = orjson.loads(data.read(length))
        upload_id = record["upload_id"]
        parts = [Part(number, etag, size) for number, etag, size in record["parts"]]
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise ValueError("unreadable writer state") from exc
    data.truncate(start)
    return WriterState(upload_id, parts, data, etag)


class S3Writer(FileWriter):
    """Buffers one part at a time and uploads each full one; see the module docstring.

    After a failed `write`, the part being uploaded stays buffered and `size`
    counts it, so `close()` saves it and a resumed writer uploads it again.
    """

    def __init__(
        self, driver: S3Driver, path: str, state: WriterState, saved: bool, staged: bool = False
    ) -> None:
        self._begin(driver.name, path)
        self._driver = driver
        # A staged writer (see StorageDriver.staged_writer) never saves state.
        self._staged = staged
        self._path = path
        self._state = state
        self._uploaded = sum(part.size for part in state.parts)
        self._buffered = state.tail.seek(0, io.SEEK_END)
        # Whether an object holds this writer's state, and whether it differs
        # from it; a fresh writer must save even its empty state to be resumable.
        self._saved = saved
        self._changed = not saved

    @property
    def size(self) -> int:
        return self._uploaded + self._buffered

    @property
    def in_memory(self) -> bool:
        # The saved state holds the tail, but `commit_to` stores it with one
        # PutObject all the same.
        return self._state.upload_id is None

    async def write(self, data: bytes) -> None:
        self._check_open()
        part_size = self._driver.part_size(len(self._state.parts) + 1)
        view = memoryview(data)
        while view:
            # A tail saved under a larger part_size may exceed it: add nothing then.
            room = max(part_size - self._buffered, 0)
            tail = self._state.tail
            # A failed upload leaves the position anywhere.
            tail.seek(0, io.SEEK_END)
            self._buffered += tail.write(view[:room])
            view = view[room:]
            self._changed = True
            if self._buffered >= part_size:
                await self._upload_tail()
                part_size = self._driver.part_size(len(self._state.parts) + 1)

    async def close(self) -> None:
        if self._staged:
            await self.cancel()
            return
        self._end()
        if self._buffered >= MIN_PART_SIZE:
            # A tail big enough to be a part goes up as one now: saving it as
            # state would upload it, and download it at the next resume, again
            # on every chunk of a chunked push.
            await self._upload_tail()
        if self._changed:
            await self._driver._save_state(self._path, self._state)

    async def commit(self) -> None:
        self._end()
        await self._complete()
        if self._saved:
            await self._driver._delete_state(self._path)

    async def _complete(self) -> None:
        """Make the content readable at the writer's own path; its saved state stays."""
        driver, state = self._driver, self._state
        if state.upload_id is None:
            # Never reached a part (zero bytes included): one plain upload.
            await driver._put_object(self._path, driver.key(self._path), state.tail)
        else:
            try:
                if self._buffered and not self._changed and state.saved_etag is not None:
                    await self._copy_saved_tail(state.upload_id, state.saved_etag)
                elif self._buffered:
                    await self._upload_tail()
                with driver._errors(self._path):
                    await driver._s3.complete_multipart_upload(
                        Bucket=driver.config.bucket,
                        Key=driver.key(self._path),
                        UploadId=state.upload_id,
                        MultipartUpload={
                            "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in state.parts]
                        },
                    )
            except PathNotFound:
                # No such upload: an earlier commit may have completed it and
                # only its answer was lost. Then the object is there, and its
                # multipart ETag is that of these parts.
                if not await self._completed_before():
                    raise

    async def commit_to(self, path: str) -> None:
        driver = self._driver
        driver.check_path(path)
        self._end()
        if self._state.upload_id is None:
            # All the content is buffered (less than a part): store it where
            # it belongs with one PutObject, instead of one here and a copy.
            await driver._put_object(path, driver.key(path), self._state.tail)
        else:
            # The parts are in an upload to this writer's own key: complete it
            # there, then copy. The state goes last, so that a resumed writer
            # can finish the move if the copy fails (completing again
            # recognises the upload completed before).
            await self._complete()
            await driver.move(self._path, path)
        if self._saved:
            await driver._delete_state(self._path)

    async def _completed_before(self) -> bool:
        """Whether the object at the path is this writer's content, from a completed upload.

        Compares the size and S3's multipart ETag: the MD5 of the parts' MD5s
        (the tail, if still buffered, is the last part). A tail copied from the
        saved state may count by the state object's ETag instead: SeaweedFS gives
        a copied part its source object's ETag, not the MD5 of the bytes copied.
        With SSE-KMS or SSE-C ETags are no MD5s, and this answers False.
        """
        driver = self._driver
        try:
            with driver._errors(self._path):
                response = await driver._s3.head_object(
                    Bucket=driver.config.bucket, Key=driver.key(self._path)
                )
        except PathNotFound:
            return False
        try:
            md5s = [bytes.fromhex(part.etag.strip('"')) for part in self._state.parts]
        except ValueError:
            return False
        if not self._buffered:
            expected = {_multipart_etag(md5s)}
        else:
            tail = hashlib.md5(self._state.tail.getbuffer(), usedforsecurity=False).digest()
            expected = {_multipart_etag([*md5s, tail])}
            saved = self._state.saved_etag
            if saved is not None:
                with contextlib.suppress(ValueError):
                    expected.add(_multipart_etag([*md5s, bytes.fromhex(saved.strip('"'))]))
        return bool(response["ContentLength"] == self.size and response["ETag"] in expected)

    async def cancel(self) -> None:
        self._end()
        if self._saved:
            await self._driver._discard_state(self._path, self._state)
        elif self._state.upload_id is not None:
            await self._driver._abort_upload(self._path, self._state.upload_id)

    async def _copy_saved_tail(self, upload_id: str, saved_etag: str) -> None:
        """Make the tail, unchanged since it was loaded, the upload's last part with
        UploadPartCopy from the saved state's first bytes, or upload it if the copy
        is refused.

        The same part as `_upload_tail` would send, at a server-side copy's cost
        instead of an upload's: on SeaweedFS half the CPU, and the last PATCH of
        every chunked push leaves such a tail. The copy is refused if the state
        object is no longer the one loaded (`CopySourceIfMatch`), and may be by
        servers that copy byte ranges only of objects over 5 MB, as AWS documents:
        the bytes in memory are then uploaded, and after an `InvalidRequest` the
        driver copies no more tails. `PathNotFound` (no such upload) is raised.
        The saved state is left as it was: if the commit fails after the copy, a
        later writer resumes from the tail, and its next part replaces the
        copied one.
        """
        driver = self._driver
        if not driver.copies_small_ranges:
            await self._upload_tail()
            return
        number = self._next_part_number()
        bucket = driver.config.bucket
        try:
            with driver._errors(self._path):
                response = await driver._s3.upload_part_copy(
                    Bucket=bucket,
                    Key=driver.key(self._path),
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": driver._state_key(self._path)},
                    CopySourceRange=f"bytes=0-{self._buffered - 1}",
                    CopySourceIfMatch=saved_etag,
                )
        except PathNotFound:
            raise
        except StorageError as exc:
            if _s3_code(exc) == "InvalidRequest":
                # The server will refuse every such copy: ask it no more.
                driver.copies_small_ranges = False
            await self._upload_tail()
            return
        self._add_part(Part(number, response["CopyPartResult"]["ETag"], self._buffered))

    def _next_part_number(self) -> int:
        number = len(self._state.parts) + 1
        if number > MAX_PARTS:
            raise StorageError(self._driver.name, self._path, f"content exceeds {MAX_PARTS} parts")
        return number

    def _add_part(self, part: Part) -> None:
        """Count the buffered bytes, now uploaded as `part`, out of the tail."""
        self._state.parts.append(part)
        self._uploaded += part.size
        self._state.tail = io.BytesIO()
        self._buffered = 0

    async def _upload_tail(self) -> None:
        """Upload the buffered bytes as the next part, starting the upload if needed."""
        driver, state = self._driver, self._state
        number = self._next_part_number()
        if state.upload_id is None:
            state.upload_id = await driver._create_upload(self._path, driver.key(self._path))
        state.tail.seek(0)
        with driver._errors(self._path):
            response = await driver._s3.upload_part(
                Bucket=driver.config.bucket,
                Key=driver.key(self._path),
                UploadId=state.upload_id,
                PartNumber=number,
                Body=state.tail,
            )
        self._add_part(Part(number, response["ETag"], self._buffered))


def _multipart_etag(md5s: list[bytes]) -> str:
    """S3's ETag of a completed multipart upload whose parts have the MD5s `md5s`."""
    combined = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest()
    return f'"{combined}-{len(md5s)}"'


def _s3_code(error: StorageError) -> str | None:
    """The S3 error code behind `error`, if S3 answered one."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code"))
    return None
