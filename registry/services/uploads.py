"""Blob upload sessions: bytes stream into storage, the digest is computed as they flow.

Opening a session writes nothing: its id is signed and says when it started
(`uploadids`), so every process can tell it is ours. Its first chunk creates
it in storage, under the repository's `_uploads/<id>/` (the data writer and
`startedat`), where it survives a restart and where any process continues
it. A session is *fresh* while storage holds nothing of it: the HTTP layer
marks its Location so (`<id>.new`), and a request to a fresh session asks
storage nothing it need not (a PUT carrying the whole blob asks nothing at
all). A client may still send a chunk to the Location of a session that has
since taken bytes: a fresh request finds them where it must (see `append`
and `finish`).

The running hash lives in this process only; when a session is finished by
a process that did not see all of its bytes (after a restart, on another
worker, or when this process dropped the hash to bound memory), the digest
is verified by reading the uploaded bytes back once, still as a stream.

Whatever goes wrong, nothing becomes visible under a digest it does not match:
content is verified before it is moved into the blob store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
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
from registry.services.uploadids import UploadIds

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

    def __init__(self, driver: StorageDriver, blobs: BlobStore, ids: UploadIds) -> None:
        self._driver = driver
        self._blobs = blobs
        self._ids = ids
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def start(self, name: str) -> str:
        """Open an upload session in repository `name`, fresh; return its unguessable id.

        Nothing is stored: the session exists in storage from its first chunk.
        """
        return self._ids.new(name)

    async def size(self, name: str, upload_id: str, fresh: bool = False) -> int:
        """Bytes received so far by the session; `BlobUploadUnknown` if there is none.

        With `fresh`, a session storage holds nothing of has received 0 bytes.
        """
        session, _ = await self._checked(name, upload_id, fresh)
        async with session.lock:
            writer = await self._resume(name, upload_id, fresh)
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
        fresh: bool = False,
    ) -> int:
        """Append a chunk to the session; return the new size.

        With `start`, the chunk must begin where the upload ends, else
        `RangeNotSatisfiable` carries the current size. With `length`, the
        body must be exactly that long, else `SizeInvalid`. When the body
        ends early some of its bytes may have been kept: the size the session
        reports afterwards says where the client must resume. A session whose
        content storage lost (see `_lost`) is removed: `BlobUploadUnknown`.

        With `fresh`, the session is created in storage by the first byte
        (its `startedat` and data writer), or continued if it already holds
        bytes; a fresh session that is sent no byte stays without a trace.
        """
        try:
            return await self._append(name, upload_id, body, start, length, fresh)
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
        fresh: bool,
    ) -> int:
        session, started = await self._checked(name, upload_id, fresh)
        data = layout.upload_data(name, upload_id)
        async with session.lock:
            if fresh:
                writer, resumed = await self._driver.resume_or_start_writer(data)
            else:
                resumed = True
                found = await self._resume(name, upload_id)
                # None: a session opened in storage with no chunk yet (by
                # Distribution or an older Cargobay), its `startedat` written.
                writer = await self._driver.writer(data) if found is None else found
            if writer.size == 0 and session.hasher is None:
                session.hasher, session.hashed = new_hasher(_HASH_ALGORITHM), 0
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
                if resumed:
                    await writer.close()
                elif writer.size == 0:
                    await writer.cancel()  # the session stays fresh: nothing stored
                else:
                    assert started is not None  # fresh sessions have signed ids
                    # The session's creation in storage: its writer's state
                    # and when it began (for the purge), at once.
                    await _together(
                        writer.close(),
                        self._driver.put_content(
                            layout.upload_started_at(name, upload_id),
                            started.isoformat().encode(),
                        ),
                    )
            return writer.size

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
        fresh: bool = False,
    ) -> BlobInfo:
        """Append the last chunk (if any), verify `digest` and make the blob visible in `name`.

        On `DigestInvalid` the session is removed and nothing is stored under
        the digest. If storage lost the session's writer (see `_lost`), what
        it holds at the session's path is published when it matches `digest`,
        so that a final PUT sent again after a crash succeeds; otherwise the
        session is removed: `BlobUploadUnknown`, and a new push works.

        A fresh session finished with a body (POST, then PUT of the whole
        blob) asks storage nothing before storing the blob: the body goes
        straight to the blob's path, verified, as with `put`. If it does not
        match `digest` and the session turns out to hold bytes after all (the
        client sent the PUT to the Location of its POST after a PATCH), the
        body is no whole blob but a chunk at 0 of an upload that is further:
        `RangeNotSatisfiable` with the session's size, which is kept.
        """
        if fresh and body is not None:
            return await self._finish_fresh(name, upload_id, digest, body)
        try:
            return await self._finish(name, upload_id, digest, body, fresh)
        except (PathNotFound, _Committed):
            return await self._finish_lost(name, upload_id, digest)

    async def _finish_fresh(
        self, name: str, upload_id: str, digest: Digest, body: AsyncIterable[bytes]
    ) -> BlobInfo:
        await self._checked(name, upload_id, fresh=True)
        try:
            size = await self._store(digest, body)
        except DigestInvalid:
            held = await self.size(name, upload_id, fresh=True)
            if held:
                raise RangeNotSatisfiable(
                    f"the upload holds {held} bytes already: continue at its current location",
                    size=held,
                ) from None
            raise
        self._sessions.pop(upload_id, None)
        await self._blobs.link(name, digest)
        return BlobInfo(digest, size)

    async def _finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
        fresh: bool,
    ) -> BlobInfo:
        session, started = await self._checked(name, upload_id, fresh)
        # A session Distribution or an older Cargobay opened may hold more than
        # ours do (hash states): that one is removed whole.
        whole = started is None
        async with session.lock:
            writer = await self._resume(name, upload_id, fresh)
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
                whole = whole and writer is not None
                try:
                    size = await self._store(digest, body or _no_bytes())
                except BaseException:
                    await self._remove_ended(name, upload_id, whole)
                    raise
                # Linking the stored blob and removing the session are
                # independent: one round trip for both.
                await _together(
                    self._blobs.link(name, digest), self._remove_ended(name, upload_id, whole)
                )
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
            elif verdict and (writer.in_memory or await self._blobs.content_size(digest) is None):
                # Verified before anything is committed, so the content goes
                # straight to the blob's path (on S3, a small blob is then
                # stored once, not stored and copied). Content still in memory
                # costs one write wherever it goes: writing it over the same
                # content costs no more than asking storage whether it is there.
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
                await self._remove_ended(name, upload_id, whole)
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

    async def cancel(self, name: str, upload_id: str, fresh: bool = False) -> None:
        """Abandon the session and discard its bytes; `BlobUploadUnknown` if there is none.

        A fresh session holding nothing has nothing to discard: its id stays
        good until it expires, as if the session had not been cancelled.
        """
        session, started = await self._checked(name, upload_id, fresh)
        async with session.lock:
            writer = await self._resume(name, upload_id, fresh)
            self._sessions.pop(upload_id, None)
            if writer is not None:
                await writer.cancel()
            await self._remove_ended(name, upload_id, whole=writer is not None and started is None)

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

    async def _resume(self, name: str, upload_id: str, fresh: bool = False) -> FileWriter | None:
        """The session's data writer resumed, or None if the session has received no
        chunk yet; `BlobUploadUnknown` if there is no such session. Storage says which.

        A fresh session need not be in storage: without a writer it has
        received nothing, and its `startedat` is not asked for.
        """
        try:
            return await self._driver.writer(layout.upload_data(name, upload_id), append=True)
        except PathNotFound:
            if fresh:
                return None
        try:
            await self._driver.stat_file(layout.upload_started_at(name, upload_id))
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

    async def _remove_ended(self, name: str, upload_id: str, whole: bool) -> None:
        """Remove a session whose data writer has ended (committed, moved or cancelled),
        or never was.

        Its `startedat` and committed `data` are then all a session of ours
        holds, deleted in one request (on S3, where `_remove` lists first);
        with `whole`, whatever else its directory holds goes too.
        """
        if whole:
            await self._remove(name, upload_id)
            return
        await self._driver.delete_files(
            [layout.upload_started_at(name, upload_id), layout.upload_data(name, upload_id)]
        )

    async def _checked(
        self, name: str, upload_id: str, fresh: bool
    ) -> tuple[_Session, datetime.datetime | None]:
        """This process's record of session `upload_id` of `name`, and when the session
        started if its id says; `BlobUploadUnknown` if the id is none of ours for `name`.

        Only sessions with signed ids are ever fresh: a UUID names a session
        Distribution or an older Cargobay opened in storage.
        """
        started = await self._ids.started(name, upload_id)
        if started is None and fresh:
            raise BlobUploadUnknown(detail={"upload": upload_id})
        return self._session(upload_id), started

    def _session(self, upload_id: str) -> _Session:
        """This process's record of `upload_id` (checked already), made empty if it has none."""
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


async def _together(*calls: Awaitable[None]) -> None:
    """Run `calls` at once; when all have ended, raise the first failure, if any."""
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


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
