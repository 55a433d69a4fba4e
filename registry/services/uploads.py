"""Blob upload sessions: bytes stream into storage, the digest is computed as they flow.

A session lives in storage under the repository's `_uploads/<id>/`, so it
survives a restart: opening one writes only its `startedat`, and its data
writer is created by the first chunk, so a session finished by one PUT
carrying the whole blob never has one. The running hash lives in this process only; when a
session is finished by a process that did not see all of its bytes (after a
restart, or when this process dropped the hash to bound memory), the
digest is verified by reading the uploaded bytes back once, still as a stream.

Whatever goes wrong, nothing becomes visible under a digest it does not match:
content is verified before it is moved into the blob store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from registry import layout
from registry.digest import Digest, Hasher, new_hasher
from registry.drivers.base import FileWriter, StorageDriver
from registry.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    PathNotFound,
    RangeNotSatisfiable,
    SizeInvalid,
)
from registry.services.blobs import BlobInfo, BlobStore

_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Running hashes kept for sessions in progress; past this many the oldest are
# dropped and verified by re-reading at finish, so abandoned sessions cannot
# grow memory without bound.
_MAX_TRACKED_SESSIONS = 10_000
_HASH_ALGORITHM = "sha256"


@dataclass(slots=True)
class _Session:
    """What this process knows of an upload in progress."""

    hasher: Hasher | None
    hashed: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UploadStore:
    """Starts, appends to, finishes and cancels blob uploads."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore) -> None:
        self._driver = driver
        self._blobs = blobs
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    async def start(self, name: str) -> str:
        """Open an upload session in repository `name`; return its unguessable id."""
        upload_id = str(uuid.uuid4())
        started = datetime.datetime.now(datetime.UTC).isoformat().encode()
        # The session's one object until a chunk comes: it says the session
        # exists (to every process) and when it began (to the purge).
        await self._driver.put_content(layout.upload_started_at(name, upload_id), started)
        self._track(upload_id, _Session(new_hasher(_HASH_ALGORITHM)))
        return upload_id

    async def size(self, name: str, upload_id: str) -> int:
        """Bytes received so far by the session; `BlobUploadUnknown` if there is none."""
        async with self._session(upload_id).lock:
            writer = await self._resume(name, upload_id)
            if writer is None:
                return 0
            await writer.close()
            return writer.size

    async def append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append a chunk to the session; return the new size.

        With `start`, the chunk must begin where the upload ends, else
        `RangeNotSatisfiable` carries the current size. With `length`, the
        body must be exactly that long, else `SizeInvalid`. When the body
        ends early some of its bytes may have been kept: the size the session
        reports afterwards says where the client must resume. A session whose
        content storage lost (see `_lost`) is removed: `BlobUploadUnknown`.
        """
        try:
            return await self._append(name, upload_id, body, start, length)
        except PathNotFound as e:
            await self._lost(name, upload_id)
            raise BlobUploadUnknown(detail={"upload": upload_id}) from e

    async def _append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterable[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        session = self._session(upload_id)
        async with session.lock:
            writer = await self._resume(name, upload_id)
            if writer is None:
                writer = await self._driver.writer(layout.upload_data(name, upload_id))
            try:
                if start is not None and start != writer.size:
                    raise RangeNotSatisfiable(
                        f"chunk starts at {start}, upload is at {writer.size}", size=writer.size
                    )
                before = writer.size
                await self._write(session, writer, body)
                if length is not None and writer.size - before != length:
                    raise SizeInvalid(
                        f"Content-Range announced {length} bytes, body had {writer.size - before}"
                    )
            finally:
                await writer.close()
            return writer.size

    async def finish(
        self, name: str, upload_id: str, digest: Digest, body: AsyncIterable[bytes] | None
    ) -> BlobInfo:
        """Append the last chunk (if any), verify `digest` and make the blob visible in `name`.

        On `DigestInvalid` the session is removed and nothing is stored under
        the digest. If storage lost the session's writer (see `_lost`), what
        it holds at the session's path is published when it matches `digest`,
        so that a final PUT sent again after a crash succeeds; otherwise the
        session is removed: `BlobUploadUnknown`, and a new push works.
        """
        try:
            return await self._finish(name, upload_id, digest, body)
        except (PathNotFound, _Committed):
            return await self._finish_lost(name, upload_id, digest)

    async def _finish(
        self, name: str, upload_id: str, digest: Digest, body: AsyncIterable[bytes] | None
    ) -> BlobInfo:
        session = self._session(upload_id)
        async with session.lock:
            writer = await self._resume(name, upload_id, likely_fresh=body is not None)
            if writer is None and body is None and await self._committed(name, upload_id):
                raise _Committed
            if writer is None or (writer.size == 0 and body is not None):
                # POST then PUT with the whole body (docker, ORAS, crane): as
                # monolithic as a POST ?digest=, so stage it at the blob path
                # like `put`. The session goes once the blob is linked or refused.
                if writer is not None:
                    await writer.cancel()
                self._sessions.pop(upload_id, None)
                # Without a data writer the session is its `startedat` alone.
                remove = self._remove if writer is not None else self._remove_unwritten
                try:
                    size = await self._store(digest, body or _no_bytes())
                except BaseException:
                    await remove(name, upload_id)
                    raise
                # Linking the stored blob and removing the session are
                # independent: one round trip for both.
                outcomes = await asyncio.gather(
                    self._blobs.link(name, digest),
                    remove(name, upload_id),
                    return_exceptions=True,
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
                return BlobInfo(digest, size)
            try:
                if body is not None:
                    await self._write(session, writer, body)
            except BaseException:
                await writer.close()
                raise
            size = writer.size
            verdict = _running_verdict(session, size, digest)
            # Until the content is committed a failure leaves the session to be
            # finished again; from then on, and for a wrong digest, it is removed.
            if verdict is None:
                await writer.commit()
            elif verdict and await self._blobs.content_size(digest) is None:
                # Verified before anything is committed, so the content goes
                # straight to the blob's path (on S3, a small blob is then
                # stored once, not stored and copied).
                await writer.commit_to(layout.blob_data(digest))
            else:
                await writer.cancel()  # a wrong digest, or a blob already stored
            try:
                if verdict is None:
                    verdict = await self._verify_and_move(name, upload_id, digest)
                if not verdict:
                    raise DigestInvalid(detail={"digest": str(digest)})
                self._blobs.remember_size(digest, size)
                await self._blobs.link(name, digest)
            finally:
                self._sessions.pop(upload_id, None)
                await self._remove(name, upload_id)
            return BlobInfo(digest, size)

    async def put(self, name: str, digest: Digest, body: AsyncIterable[bytes]) -> BlobInfo:
        """A whole blob in one request (monolithic upload): stream, verify, publish.

        The digest is known up front, so the bytes are staged straight at the
        blob's path and committed only once they match it: on S3 that spares
        the copy an upload session's bytes need.
        """
        size = await self._store(digest, body)
        await self._blobs.link(name, digest)
        return BlobInfo(digest, size)

    async def _store(self, digest: Digest, body: AsyncIterable[bytes]) -> int:
        """Stream `body` to the blob's path, committed only if it matches `digest`
        (else `DigestInvalid`, and nothing new is stored); its size."""
        session = _Session(digest.hasher())
        writer = await self._driver.staged_writer(layout.blob_data(digest))
        try:
            await self._write(session, writer, body)
            if session.hasher is None or session.hasher.hexdigest() != digest.hex:
                raise DigestInvalid(detail={"digest": str(digest)})
        except BaseException:
            await writer.cancel()
            raise
        await writer.commit()
        self._blobs.remember_size(digest, writer.size)
        return writer.size

    async def _finish_lost(self, name: str, upload_id: str, digest: Digest) -> BlobInfo:
        """Finish a session whose writer storage lost, from what its path holds.

        That is the content a commit completed before its process died (on S3:
        the multipart upload was completed, the copy under the digest or the
        session's removal never happened), which may include a final chunk the
        saved state does not count. It is read back against `digest`.
        """
        async with self._session(upload_id).lock:
            try:
                verified = await self._verify_and_move(name, upload_id, digest)
                size = await self._blobs.content_size(digest) if verified else None
                if size is not None:
                    await self._blobs.link(name, digest)
                    return BlobInfo(digest, size)
            except PathNotFound:
                pass
            finally:
                self._sessions.pop(upload_id, None)
                await self._remove(name, upload_id)
        raise BlobUploadUnknown(detail={"upload": upload_id})

    async def _lost(self, name: str, upload_id: str) -> None:
        """Remove a session whose writer storage lost: writes to it raised `PathNotFound`.

        The session's files were deleted by another request or process, or on
        S3 its multipart upload was completed or aborted by a process that
        died before it could say so. It can take no more bytes.
        """
        async with self._session(upload_id).lock:
            self._sessions.pop(upload_id, None)
            await self._remove(name, upload_id)

    async def cancel(self, name: str, upload_id: str) -> None:
        """Abandon the session and discard its bytes; `BlobUploadUnknown` if there is none."""
        async with self._session(upload_id).lock:
            writer = await self._resume(name, upload_id)
            self._sessions.pop(upload_id, None)
            if writer is None:
                await self._remove_unwritten(name, upload_id)
                return
            await writer.cancel()
            await self._remove(name, upload_id)

    async def _write(
        self, session: _Session, writer: FileWriter, body: AsyncIterable[bytes]
    ) -> None:
        in_step = session.hasher is not None and session.hashed == writer.size
        try:
            async for chunk in body:
                await writer.write(chunk)
                if in_step and session.hasher is not None:
                    session.hasher.update(chunk)
                    session.hashed += len(chunk)
        except BaseException:
            # We cannot know which bytes of the failed call were kept.
            session.hasher = None
            raise
        if not in_step:
            session.hasher = None

    async def _verify_and_move(self, name: str, upload_id: str, digest: Digest) -> bool:
        """Read the session's committed content back against `digest`; if it matches, move
        it under the digest (unless that blob is stored already)."""
        data_path = layout.upload_data(name, upload_id)
        hasher = digest.hasher()
        async for chunk in await self._driver.reader(data_path):
            hasher.update(chunk)
        if hasher.hexdigest() != digest.hex:
            return False
        if await self._blobs.content_size(digest) is None:
            await self._driver.move(data_path, layout.blob_data(digest))
        return True

    async def _resume(
        self, name: str, upload_id: str, likely_fresh: bool = False
    ) -> FileWriter | None:
        """The session's data writer resumed, or None if the session has received no
        chunk yet; `BlobUploadUnknown` if there is no such session. Storage says which.

        With `likely_fresh` (a PUT with a body, mostly the whole blob after a
        POST) both are asked at once: one round trip instead of two.
        """
        data = layout.upload_data(name, upload_id)
        started = layout.upload_started_at(name, upload_id)
        if likely_fresh:
            resumed, found = await asyncio.gather(
                self._driver.writer(data, append=True),
                self._driver.stat_file(started),
                return_exceptions=True,
            )
            if isinstance(resumed, FileWriter):
                return resumed
            for outcome in (resumed, found):
                if isinstance(outcome, BaseException) and not isinstance(outcome, PathNotFound):
                    raise outcome
            if isinstance(found, PathNotFound):
                self._sessions.pop(upload_id, None)
                raise BlobUploadUnknown(detail={"upload": upload_id}) from found
            return None
        try:
            return await self._driver.writer(data, append=True)
        except PathNotFound:
            pass
        try:
            await self._driver.stat_file(started)
        except PathNotFound as e:
            self._sessions.pop(upload_id, None)
            raise BlobUploadUnknown(detail={"upload": upload_id}) from e
        return None

    async def _remove(self, name: str, upload_id: str) -> None:
        with contextlib.suppress(PathNotFound):
            await self._driver.delete(layout.upload_dir(name, upload_id))

    async def _committed(self, name: str, upload_id: str) -> bool:
        """Whether content lies committed at the session's path.

        Asked only of a session without a writer finished with no body (an
        empty blob, but for this): a process that died between committing the
        session's content and publishing it leaves it there, its writer gone.
        """
        try:
            await self._driver.stat_file(layout.upload_data(name, upload_id))
        except PathNotFound:
            return False
        return True

    async def _remove_unwritten(self, name: str, upload_id: str) -> None:
        """Remove a session that never had a data writer: its `startedat` is all of it."""
        await self._driver.delete_files([layout.upload_started_at(name, upload_id)])

    def _session(self, upload_id: str) -> _Session:
        """This process's record of `upload_id`, made empty if it has none."""
        if not _UPLOAD_ID_RE.fullmatch(upload_id):
            raise BlobUploadUnknown(detail={"upload": upload_id[:100]})
        session = self._sessions.get(upload_id)
        if session is None:
            session = _Session(hasher=None)
            self._track(upload_id, session)
        return session

    def _track(self, upload_id: str, session: _Session) -> None:
        self._sessions[upload_id] = session
        if len(self._sessions) > _MAX_TRACKED_SESSIONS:
            self._sessions.popitem(last=False)


class _Committed(Exception):
    """The session has no writer but committed content: finish it from that."""


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield


def _running_verdict(session: _Session, size: int, digest: Digest) -> bool | None:
    """Whether the session's running hash matches `digest`; None if it cannot tell."""
    hasher = session.hasher
    if hasher is None or session.hashed != size or digest.algorithm != _algorithm_of(hasher):
        return None
    return hasher.hexdigest() == digest.hex


def _algorithm_of(hasher: Hasher) -> str:
    return str(getattr(hasher, "name", ""))
