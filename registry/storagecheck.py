"""Whether the configured storage can be used, and if not, why, in one sentence.

`check_storage` opens the driver and asks it what serving will ask first: it
stats the repositories directory (the bucket exists, the endpoint answers, the
credentials are accepted), and if asked, unless storage is read-only, writes,
reads back and deletes a small file (the directory or bucket is writable).
`cargobay check-config --connect` asks for all of it; the master of several
workers for the first part, before it starts them.
`explain` turns what went wrong, there or at start-up, into the one sentence
`cargobay check-config --connect` and `cargobay serve` print.
"""

from __future__ import annotations

import contextlib
import uuid

from registry import layout
from registry.config import StorageConfig
from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError

_CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", ": 403")


async def check_storage(config: StorageConfig, driver: StorageDriver, write: bool) -> None:
    """Open `driver` (configured by `config`), try it (writing too if `write`), and close it.

    Raises `StorageError` or `OSError` for the first thing that fails.
    """
    await driver.open()
    try:
        with contextlib.suppress(PathNotFound):  # an empty registry
            await driver.stat(layout.REPOSITORIES)
        if config.read_only or not write:
            return
        directory = f"{layout.ROOT}/_cargobay-check-{uuid.uuid4().hex}"
        probe = f"{directory}/probe"
        await driver.put_content(probe, b"cargobay")
        try:
            if await driver.get_content(probe) != b"cargobay":
                raise StorageError(driver.name, probe, "a file written did not read back the same")
        finally:
            await driver.delete(directory)
    finally:
        await driver.close()


def explain(config: StorageConfig, error: BaseException) -> str:
    """One sentence saying why storage `config` cannot be used, given what went wrong."""
    if config.driver == "s3":
        s3 = config.s3
        where = s3.endpoint_url or f"AWS S3 in {s3.region}"
        text = str(error)
        if "NoSuchBucket" in text:
            return f"the bucket {s3.bucket!r} does not exist at {where}."
        if any(code in text for code in _CREDENTIAL_CODES):
            return f"{where} refused the credentials for bucket {s3.bucket!r} ({text})."
        return f"cannot use bucket {s3.bucket!r} at {where}: {text}."
    if config.driver == "filesystem":
        root = config.filesystem.root
        if isinstance(error, OSError):
            return f"the directory {root!r} is not usable: {error.strerror or error}."
        return f"the directory {root!r} is not usable: {error}."
    return f"storage {config.driver!r} is not usable: {error}."
