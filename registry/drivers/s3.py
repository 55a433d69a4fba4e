"""A storage driver keeping content in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph).

Keys and directories are those of CNCF Distribution's s3-aws driver, so a bucket
written by Distribution is served as-is: driver path `/docker/registry/v2/x` is
key `docker/registry/v2/x`, or `<prefix>/docker/registry/v2/x` with a `prefix`
(Distribution's `rootdirectory`). S3 has no directories: one exists while some
key starts with its path and `/`.

Writers stream into multipart uploads; `s3writer` has them and their saved state.
Deletes go in batches of DeleteObjects, directory markers last; `s3delete` has them.

Retries with backoff (throttling, 5xx, dropped connections) are botocore's
"standard" mode; an error that survives them is a `StorageError` naming the S3
error code.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime
import email.utils
import functools
import io
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import aiohttp
import botocore.handlers
import botocore.utils
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from registry import __version__
from registry.config import ConfigError, S3Config
from registry.drivers.base import FileInfo, FileWriter, IncompleteWrite, StorageDriver
from registry.drivers.s3delete import delete_files, delete_path
from registry.drivers.s3walk import walk_in_pieces
from registry.drivers.s3writer import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    PARTS_PER_SIZE,
    STATE_SUFFIX,
    S3Writer,
    WriterState,
    decode_state,
    encode_state,
)
from registry.errors import InvalidOffset, InvalidPath, PathNotFound, StorageError

#: Bytes asked of the response body per chunk yielded by `reader`.
CHUNK_SIZE = 1024 * 1024

# Keys per ListObjectsV2 page: S3's maximum.
_PAGE_KEYS = 1000

_COMPONENT_RE = re.compile(r"[A-Za-z0-9._-]+")

# S3 error codes that mean "no such thing" for the path asked about; HEAD
# answers have no body, so their code is the bare status. NoSuchBucket is a
# misconfiguration, not a missing path.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "404", "NotFound"})

# Faults below the S3 API: connections refused or dropped, timeouts, bodies cut short.
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError)


class S3Driver(StorageDriver):
    """Stores content as objects of one bucket, through one aiobotocore client.

    `move` copies on the server side: with one CopyObject up to
    `copy_part_size` bytes, beyond that with UploadPartCopy in parts of that
    size. Content written through `writer` goes up in parts of
    `config.part_size` bytes, doubling every `PARTS_PER_SIZE` parts, at most
    10,000 of them; a chunked upload whose chunks are smaller than a part has
    a part per chunk of 5 MiB or more.

    A closed writer's saved state lies beside its path, so `delete` of a
    directory holding it discards it and aborts its upload, while `delete` of
    the path alone leaves it.

    Empty `access_key` and `secret_key` leave credentials to botocore's chain
    (environment, shared files, instance or task role).
    """

    name = "s3"

    def __init__(self, config: S3Config, *, copy_part_size: int = MAX_PART_SIZE) -> None:
        if not config.bucket:
            raise ConfigError("storage.s3.bucket: a bucket is required")
        if not MIN_PART_SIZE <= config.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"storage.s3.part_size: {config.part_size} is outside S3's part sizes "
                f"({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)"
            )
        if not MIN_PART_SIZE <= copy_part_size <= MAX_PART_SIZE:
            raise ValueError(f"copy_part_size {copy_part_size} is outside S3's part sizes")
        self.config = config
        self.copy_part_size = copy_part_size
        # Distribution's mapping: the prefix without trailing slashes, then the
        # path, then leading slashes dropped; "/" + key[len(base):] inverts it.
        self._base = (config.prefix.rstrip("/") + "/").lstrip("/")
        self._object_args: dict[str, str] = {}
        if config.server_side_encryption:
            self._object_args["ServerSideEncryption"] = config.server_side_encryption
        if config.sse_kms_key_id:
            self._object_args["SSEKMSKeyId"] = config.sse_kms_key_id
        if config.storage_class:
            self._object_args["StorageClass"] = config.storage_class
        # Half the connection pool: the other half stays free for clients.
        self.bulk_concurrency = max(1, config.max_connections // 2)
        # Whether UploadPartCopy copies byte ranges of objects under 5 MB, which AWS
        # documents it does not: a writer's commit learns it (see S3Writer).
        self.copies_small_ranges = True
        self._exits = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        """Create the S3 client; it holds the connection pool until `close()`."""
        c = self.config
        client_config = AioConfig(
            signature_version="s3v4",
            s3={
                # Signing a payload hashes every byte pushed once more (the
                # digest is one pass already) and protects nothing worth it:
                # blobs are content-addressed and checked by every client on
                # pull, S3's answers are never signed, so an attacker on a
                # plain-HTTP link to S3 could change what is read anyway, and
                # on HTTPS TLS keeps both ways intact. The signature still
                # covers the method, key, headers and Content-Length.
                "payload_signing_enabled": False,
                **({"addressing_style": "path"} if c.path_style else {}),
            },
            retries={"mode": "standard", "total_max_attempts": c.max_attempts},
            connect_timeout=c.connect_timeout,
            read_timeout=c.read_timeout,
            max_pool_connections=c.max_connections,
            # botocore otherwise adds CRC32 checksums to every upload, which
            # S3-compatible servers often reject and which AWS refuses on parts
            # of an upload not created with a checksum algorithm.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # A fixed User-Agent: botocore otherwise rebuilds and sanitises its
            # own, component by component, twice per request.
            user_agent=f"cargobay/{__version__}",
            # The driver's parameters are well-formed by construction; checking
            # each against the service model costs every request CPU.
            parameter_validation=False,
        )
        self._client = await self._exits.enter_async_context(
            _session().create_client(
                "s3",
                region_name=c.region,
                endpoint_url=c.endpoint_url or None,
                aws_access_key_id=c.access_key or None,
                aws_secret_access_key=c.secret_key or None,
                verify=c.verify_tls,
                config=client_config,
            )
        )
        # botocore sends every upload with a body as "Expect: 100-continue",
        # and aiohttp then waits for the server's interim answer before the
        # body: a round trip more per PutObject and UploadPart, to spare
        # sending at most one part to a server that would refuse it.
        self._client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)

    async def close(self) -> None:
        """Close the client and its connections."""
        await self._exits.aclose()
        self._client = None

    def part_size(self, number: int) -> int:
        """The size of part `number` (from 1) of an upload through `writer`."""
        return min(self.config.part_size << ((number - 1) // PARTS_PER_SIZE), MAX_PART_SIZE)

    # -- keys ----------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of driver path `path`, as Distribution maps it."""
        return self._base + path[1:]

    def _path(self, key: str) -> str:
        return "/" + key[len(self._base) :]

    def _state_key(self, path: str) -> str:
        return self.key(path) + STATE_SUFFIX

    def _is_path(self, path: str) -> bool:
        try:
            self.check_path(path)
        except InvalidPath:
            return False
        return True

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Driver used before open() or after close()")
        return self._client

    # -- the driver interface --------------------------------------------------

    async def _get_content(self, path: str) -> bytes:
        with self._errors(path):
            response = await self._s3.get_object(Bucket=self.config.bucket, Key=self.key(path))
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def _put_content(self, path: str, data: bytes) -> None:
        # A BytesIO of bytes shares their memory rather than copying it.
        await self._put_object(path, self.key(path), io.BytesIO(data))

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        if length == 0:
            await self._check_offset(path, offset)
            return _no_chunks()
        args = {"Bucket": self.config.bucket, "Key": self.key(path)}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            args["Range"] = f"bytes={offset}-{last}"
        try:
            with self._errors(path):
                response = await self._s3.get_object(**args)
        except InvalidOffset:
            # S3 refuses a range starting at the end, which is an empty read to us.
            await self._check_offset(path, offset)
            return _no_chunks()
        stream = self._chunks(path, response["Body"])
        # Run to the first `yield` now: a generator closed before it started
        # skips its `finally`, which would leave the connection checked out.
        await anext(stream)
        return stream

    async def _chunks(self, path: str, body: Any) -> AsyncGenerator[bytes, None]:
        try:
            yield b""  # consumed by `_reader`
            while True:
                with self._errors(path):
                    chunk: bytes = await body.read(CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk
        finally:
            # Drops the connection if the body was not read to the end.
            body.close()

    async def _writer(self, path: str, append: bool) -> FileWriter:
        state = await self._load_state(path)
        if append and state is None:
            raise PathNotFound(self.name, path)
        if not append and state is not None:
            await self._discard_state(path, state)
            state = None
        return self._writer_of(path, state)

    async def _resume_or_start_writer(self, path: str) -> tuple[FileWriter, bool]:
        # One GET of the saved state decides both ways: with none there is
        # nothing for a fresh writer to discard.
        state = await self._load_state(path)
        return self._writer_of(path, state), state is not None

    def _writer_of(self, path: str, state: WriterState | None) -> S3Writer:
        """A writer resuming saved `state`, or with None a fresh one."""
        if state is None:
            return S3Writer(self, path, WriterState(None, [], io.BytesIO()), saved=False)
        return S3Writer(self, path, state, saved=True)

    async def _staged_writer(self, path: str) -> FileWriter:
        # A multipart upload is invisible until completed and independent of
        # any other upload to the same key: stage straight at the key, sparing
        # the server-side copy of a move.
        return S3Writer(self, path, WriterState(None, [], io.BytesIO()), saved=False, staged=True)

    async def _stat(self, path: str) -> FileInfo:
        try:
            size, modified = await self._head(path)
        except PathNotFound:
            if await self._has_children(path):
                return FileInfo(path, 0, 0.0, True)
            raise
        return FileInfo(path, size, modified, False)

    async def _stat_file(self, path: str) -> FileInfo:
        # One HEAD: a missing key is no file, whatever lies below it.
        size, modified = await self._head(path)
        return FileInfo(path, size, modified, False)

    async def _list(self, path: str) -> builtins.list[str]:
        prefix = self.key(path) + "/"
        names: builtins.list[str] = []
        async for page in self._pages(path, Prefix=prefix, Delimiter="/"):
            names.extend(item["Key"][len(prefix) :] for item in page.get("Contents", ()))
            names.extend(
                item["Prefix"][len(prefix) : -1] for item in page.get("CommonPrefixes", ())
            )
        # Writer state, and keys other tools wrote that are no driver path,
        # are not children.
        children = sorted(f"{path}/{name}" for name in names if _COMPONENT_RE.fullmatch(name))
        if not children:
            raise PathNotFound(self.name, path)
        return children

    async def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        params = {"Prefix": self.key(path) + "/"}
        below = path + "/"
        if start_after is not None and start_after >= below:
            if not start_after.startswith(below):
                return  # sorts after every path below `path`
            # Only a key under the prefix: some servers answer an empty listing
            # to a StartAfter that sorts before it.
            params["StartAfter"] = self.key(start_after)
        first = start_after is None
        async for page in self._pages(path, **params):
            if first and page.get("IsTruncated"):
                # More than a page: listed in pieces side by side instead,
                # this first page asked for again.
                async for info in walk_in_pieces(self, path):
                    yield info
                return
            first = False
            for info in self._files(page):
                yield info

    def _files(self, page: dict[str, Any]) -> Iterator[FileInfo]:
        """The files a listing page names (keys other tools wrote that are no path aside)."""
        for item in page.get("Contents", ()):
            found = self._path(item["Key"])
            if self._is_path(found):
                yield FileInfo(found, item["Size"], item["LastModified"].timestamp(), False)

    async def _incomplete_writes(self, path: str) -> AsyncIterator[IncompleteWrite]:
        params = {"Prefix": self.key(path) + "/"}
        while True:
            with self._errors(path):
                page = await self._s3.list_multipart_uploads(Bucket=self.config.bucket, **params)
            for upload in page.get("Uploads", ()):
                found = self._path(upload["Key"])
                if not self._is_path(found):
                    continue
                state = await self._load_state(found)
                if state is not None and state.upload_id == upload["UploadId"]:
                    continue  # a closed writer's content, resumable
                yield IncompleteWrite(found, upload["Initiated"].timestamp(), upload["UploadId"])
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page["NextKeyMarker"]
            params["UploadIdMarker"] = page["NextUploadIdMarker"]

    async def _discard_incomplete_write(self, write: IncompleteWrite) -> None:
        await self._abort_upload(write.path, write.handle)

    async def _move(self, source: str, dest: str) -> None:
        size, _ = await self._head(source)
        if size <= self.copy_part_size:
            with self._errors(source):
                await self._s3.copy_object(
                    Bucket=self.config.bucket,
                    Key=self.key(dest),
                    CopySource={"Bucket": self.config.bucket, "Key": self.key(source)},
                    **self._object_args,
                )
        else:
            await self._copy_in_parts(source, dest, size)
        with self._errors(source):
            await self._s3.delete_object(Bucket=self.config.bucket, Key=self.key(source))

    async def _delete(self, path: str) -> None:
        await delete_path(self, path)

    async def _delete_files(self, paths: builtins.list[str]) -> None:
        await delete_files(self, paths)

    async def _redirect_url(self, path: str, method: str) -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method)
        if not self.config.redirect or operation is None:
            return None
        with self._errors(path):
            url: str = await self._s3.generate_presigned_url(
                operation,
                Params={"Bucket": self.config.bucket, "Key": self.key(path)},
                ExpiresIn=self.config.redirect_expiry_seconds,
            )
        return url

    # -- S3 requests -----------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """Turn S3 and transport errors into `StorageError`s about `path`.

        A missing key or upload is `PathNotFound`, a refused range is
        `InvalidOffset`. Messages carry the S3 code and message, which never
        hold credentials.
        """
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "unknown"))
            if code in _NOT_FOUND_CODES:
                raise PathNotFound(self.name, path) from exc
            if code == "InvalidRange":
                raise InvalidOffset(self.name, path) from exc
            message = f"{exc.operation_name} failed: {code}: {error.get('Message', '')}"
            raise StorageError(self.name, path, message) from exc
        except _TRANSPORT_ERRORS as exc:
            raise StorageError(self.name, path, f"{type(exc).__name__}: {exc}") from exc

    async def _head(self, path: str) -> tuple[int, float]:
        """Size and modification time of the object at `path`; `PathNotFound` if none."""
        with self._errors(path):
            response = await self._s3.head_object(Bucket=self.config.bucket, Key=self.key(path))
        size: int = response["ContentLength"]
        modified: float = response["LastModified"].timestamp()
        return size, modified

    async def _check_offset(self, path: str, offset: int) -> None:
        size, _ = await self._head(path)
        if offset > size:
            raise InvalidOffset(self.name, path)

    async def _has_children(self, path: str) -> bool:
        with self._errors(path):
            response = await self._s3.list_objects_v2(
                Bucket=self.config.bucket, Prefix=self.key(path) + "/", MaxKeys=1
            )
        return bool(response.get("Contents"))

    async def _pages(self, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
        """The pages of a ListObjectsV2 listing, fetched one at a time as they are consumed."""
        while True:
            with self._errors(path):
                page: dict[str, Any] = await self._s3.list_objects_v2(
                    Bucket=self.config.bucket, MaxKeys=_PAGE_KEYS, **params
                )
            yield page
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    async def _put_object(self, path: str, key: str, body: io.BytesIO) -> None:
        """Store all of `body`, from its start, at `key`."""
        body.seek(0)
        with self._errors(path):
            await self._s3.put_object(
                Bucket=self.config.bucket,
                Key=key,
                Body=body,
                ContentType="application/octet-stream",
                **self._object_args,
            )

    async def _create_upload(self, path: str, key: str) -> str:
        with self._errors(path):
            response = await self._s3.create_multipart_upload(
                Bucket=self.config.bucket,
                Key=key,
                ContentType="application/octet-stream",
                **self._object_args,
            )
        upload_id: str = response["UploadId"]
        return upload_id

    async def _abort_upload(self, path: str, upload_id: str) -> None:
        """Abort the multipart upload of `path`; one already gone is fine."""
        with contextlib.suppress(PathNotFound), self._errors(path):
            await self._s3.abort_multipart_upload(
                Bucket=self.config.bucket, Key=self.key(path), UploadId=upload_id
            )

    async def _copy_in_parts(self, source: str, dest: str, size: int) -> None:
        """Copy `source` to `dest` with UploadPartCopy; `dest` appears only when all is copied."""
        bucket = self.config.bucket
        upload_id = await self._create_upload(dest, self.key(dest))

        async def copy_part(number: int, start: int) -> dict[str, Any]:
            last = min(start + self.copy_part_size, size) - 1
            with self._errors(source):
                response = await self._s3.upload_part_copy(
                    Bucket=bucket,
                    Key=self.key(dest),
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": self.key(source)},
                    CopySourceRange=f"bytes={start}-{last}",
                )
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        try:
            # Concurrency is bounded by the client's connection pool.
            try:
                async with asyncio.TaskGroup() as group:
                    copies = [
                        group.create_task(copy_part(number, start))
                        for number, start in enumerate(range(0, size, self.copy_part_size), 1)
                    ]
            except ExceptionGroup as failed:
                # The first failure says why; TaskGroup cancelled the rest.
                raise failed.exceptions[0] from None
            with self._errors(dest):
                await self._s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self.key(dest),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": [copy.result() for copy in copies]},
                )
        except BaseException:
            with contextlib.suppress(StorageError):
                await self._abort_upload(dest, upload_id)
            raise

    # -- writer state ----------------------------------------------------------

    async def _load_state(self, path: str) -> WriterState | None:
        """The state saved by the last `close()` of a writer on `path`, or None."""
        data = io.BytesIO()
        try:
            with self._errors(path):
                response = await self._s3.get_object(
                    Bucket=self.config.bucket, Key=self._state_key(path)
                )
                async with response["Body"] as body:
                    while chunk := await body.read(CHUNK_SIZE):
                        data.write(chunk)
        except PathNotFound:
            return None
        try:
            return decode_state(data, response.get("ETag"))
        except ValueError as exc:
            raise StorageError(self.name, path, "unreadable writer state") from exc

    async def _save_state(self, path: str, state: WriterState) -> None:
        """Store `state` for a later `writer(path, append=True)`; consumes `state.tail`."""
        await self._put_object(path, self._state_key(path), encode_state(state))

    async def _delete_state(self, path: str) -> None:
        with self._errors(path):
            await self._s3.delete_object(Bucket=self.config.bucket, Key=self._state_key(path))

    async def _discard_state(self, path: str, state: WriterState) -> None:
        if state.upload_id is not None:
            await self._abort_upload(path, state.upload_id)
        await self._delete_state(path)

    async def _abort_saved_upload(self, path: str) -> None:
        """Abort the upload recorded in the saved state of `path`, if any."""
        state = await self._load_state(path)
        if state is not None and state.upload_id is not None:
            await self._abort_upload(path, state.upload_id)


@functools.cache
def _session() -> AioSession:
    # One per process: a session keeps the S3 service model, which every
    # client would otherwise load again (a tenth of a second each).
    session = AioSession()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_parse_timestamp
    )
    return session


def _parse_timestamp(value: str) -> datetime.datetime:
    # botocore's parser goes through dateutil: a third of the CPU time of
    # walking a large bucket, where every listed key has its ISO 8601
    # timestamp, and a third of a HEAD's, whose Last-Modified header is an
    # HTTP date. The standard library reads both far faster; anything else
    # stays with botocore.
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return botocore.utils.parse_timestamp(value)  # type: ignore[no-any-return]
    # S3 times are UTC, whether they say so or not.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    return
    yield
