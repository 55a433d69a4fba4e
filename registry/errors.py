"""The one exception hierarchy of Cargobay, and the only place that maps it to OCI error codes.

Every error a request can end in is a `RegistryError`. Each class knows the OCI
error code and the HTTP status it answers with; the error middleware in
`registry.api.middleware` is the only code that turns them into responses.

    RegistryError                       code                  status
    ├── BlobUnknown                     BLOB_UNKNOWN          404
    ├── BlobRangeNotSatisfiable         RANGE_NOT_SATISFIABLE 416
    ├── BlobUploadInvalid               BLOB_UPLOAD_INVALID   400
    │   └── RangeNotSatisfiable         BLOB_UPLOAD_INVALID   416
    ├── BlobUploadUnknown               BLOB_UPLOAD_UNKNOWN   404
    ├── DigestInvalid                   DIGEST_INVALID        400
    ├── ManifestBlobUnknown             MANIFEST_BLOB_UNKNOWN 400
    ├── ManifestInvalid                 MANIFEST_INVALID      400
    │   └── ManifestUnverified          MANIFEST_UNVERIFIED   400
    ├── ManifestUnknown                 MANIFEST_UNKNOWN      404
    ├── NameInvalid                     NAME_INVALID          400
    ├── NameUnknown                     NAME_UNKNOWN          404
    ├── SizeInvalid                     SIZE_INVALID          400
    │   └── ChunkSizeInvalid            SIZE_INVALID          400
    ├── TagInvalid                      TAG_INVALID           400
    ├── PaginationInvalid               PAGINATION_NUMBER_INVALID 400
    ├── Unauthorized                    UNAUTHORIZED          401
    ├── Denied                          DENIED                403
    ├── Unsupported                     UNSUPPORTED           405
    ├── PayloadTooLarge                 SIZE_INVALID          413
    ├── TooManyRequests                 TOOMANYREQUESTS       429
    ├── ClientGone                      BLOB_UPLOAD_INVALID   400
    ├── BodyTimeout                     REQUEST_TIMEOUT       408
    ├── UpstreamUnavailable             UNAVAILABLE           503
    └── StorageError                    UNAVAILABLE           503
        ├── PathNotFound
        ├── InvalidPath
        ├── InvalidOffset
        └── StorageUnsupported

Storage errors carry the name of the driver that raised them, so a log line
says which backend failed. Services translate the expected ones (a missing
path is a missing blob); one that escapes to the middleware is a backend fault.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """Base of every error Cargobay answers a request with.

    `detail` is optional structured data put in the OCI error body as-is; it
    must be JSON-serialisable and must never carry credentials.
    """

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The error as one entry of the OCI `errors` array."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry

    def response_headers(self) -> dict[str, str]:
        """Headers the error response carries besides its body (a challenge, a retry delay)."""
        return {}


class BlobUnknown(RegistryError):
    code = "BLOB_UNKNOWN"
    status = 404
    default_message = "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code = "BLOB_UPLOAD_INVALID"
    status = 400
    default_message = "blob upload invalid"


class BlobRangeNotSatisfiable(RegistryError):
    """A blob `GET` whose `Range` lies outside the blob of `size` bytes (RFC 9110 15.5.17)."""

    code = "RANGE_NOT_SATISFIABLE"
    status = 416
    default_message = "requested range not satisfiable"

    def __init__(self, message: str | None = None, size: int = 0) -> None:
        super().__init__(message)
        self.size = size

    def response_headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.size}"}


class RangeNotSatisfiable(BlobUploadInvalid):
    """A chunk that does not start where the upload ends.

    `size` is the current size of the upload, so the response can say where
    the next chunk must start; `location`, set by the handler, is where the
    session goes on.
    """

    status = 416
    default_message = "requested range not satisfiable"

    def __init__(self, message: str | None = None, size: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.location: str | None = None

    def response_headers(self) -> dict[str, str]:
        headers = {"Range": f"0-{max(self.size - 1, 0)}"}
        if self.location is not None:
            headers["Location"] = self.location
        return headers


class BlobUploadUnknown(RegistryError):
    code = "BLOB_UPLOAD_UNKNOWN"
    status = 404
    default_message = "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code = "DIGEST_INVALID"
    status = 400
    default_message = "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 400
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code = "MANIFEST_INVALID"
    status = 400
    default_message = "manifest invalid"


class ManifestUnknown(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404
    default_message = "manifest unknown to registry"


class ManifestUnverified(ManifestInvalid):
    """A signed manifest whose signature does not hold for its content."""

    code = "MANIFEST_UNVERIFIED"
    status = 400
    default_message = "manifest failed signature verification"


class NameInvalid(RegistryError):
    code = "NAME_INVALID"
    status = 400
    default_message = "invalid repository name"


class NameUnknown(RegistryError):
    code = "NAME_UNKNOWN"
    status = 404
    default_message = "repository name not known to registry"


class SizeInvalid(RegistryError):
    code = "SIZE_INVALID"
    status = 400
    default_message = "provided length did not match content length"


class ChunkSizeInvalid(SizeInvalid):
    """A chunk whose body length disagrees with its `Content-Range`; nothing of it was kept.

    `size` is the session's unchanged size, answered as its `Range`.
    """

    def __init__(self, message: str | None = None, size: int = 0) -> None:
        super().__init__(message)
        self.size = size

    def response_headers(self) -> dict[str, str]:
        return {"Range": f"0-{max(self.size - 1, 0)}"}


class TagInvalid(RegistryError):
    code = "TAG_INVALID"
    status = 400
    default_message = "manifest tag did not match URI"


class PaginationInvalid(RegistryError):
    code = "PAGINATION_NUMBER_INVALID"
    status = 400
    default_message = "invalid number of results requested"


class Unauthorized(RegistryError):
    """No credentials, or credentials that do not prove who the client is.

    `challenge` is the `WWW-Authenticate` value telling the client how to
    authenticate (`Basic realm=...` or `Bearer realm=...,service=...,scope=...`).
    """

    code = "UNAUTHORIZED"
    status = 401
    default_message = "authentication required"

    def __init__(self, message: str | None = None, detail: Any = None, challenge: str = "") -> None:
        super().__init__(message, detail)
        self.challenge = challenge

    def response_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge} if self.challenge else {}


class Denied(RegistryError):
    code = "DENIED"
    status = 403
    default_message = "requested access to the resource is denied"


class Unsupported(RegistryError):
    code = "UNSUPPORTED"
    status = 405
    default_message = "the operation is unsupported"


class PayloadTooLarge(RegistryError):
    code = "SIZE_INVALID"
    status = 413
    default_message = "request body too large"


class TooManyRequests(RegistryError):
    """The client is over its request rate; `retry_after` is whole seconds until it is not."""

    code = "TOOMANYREQUESTS"
    status = 429
    default_message = "too many requests"

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ClientGone(RegistryError):
    """The client closed the connection before its request body was complete."""

    code = "BLOB_UPLOAD_INVALID"
    status = 400
    default_message = "connection closed before the request body was complete"


class BodyTimeout(RegistryError):
    """No byte of the request body arrived for `limits.body_idle_timeout_seconds`.

    What was received before is kept where the request appends to an upload
    session, so the client can resume from the session's `Range`.
    """

    code = "REQUEST_TIMEOUT"
    status = 408
    default_message = "the request body stalled"


class UpstreamUnavailable(RegistryError):
    """A mirrored registry could not give content this registry has no copy of.

    The upstream is down, erroring, rate-limiting, or refused our credentials;
    the message names the upstream and what it answered. Retrying may succeed.
    """

    code = "UNAVAILABLE"
    status = 503
    default_message = "upstream registry unavailable"


class StorageError(RegistryError):
    """A storage driver failed; `driver` names the backend.

    Answered as 503 UNAVAILABLE when no service translated it: the request may
    succeed when retried, and nothing was acknowledged.
    """

    code = "UNAVAILABLE"
    status = 503
    default_message = "storage backend unavailable"

    def __init__(self, driver: str, path: str = "", message: str | None = None) -> None:
        self.driver = driver
        self.path = path
        text = message or self.default_message
        super().__init__(f"{driver}: {text}" + (f": {path}" if path else ""))


class PathNotFound(StorageError):
    default_message = "path not found"


class InvalidPath(StorageError):
    default_message = "invalid path"


class InvalidOffset(StorageError):
    default_message = "invalid offset"


class StorageUnsupported(StorageError):
    default_message = "operation unsupported by this driver"
