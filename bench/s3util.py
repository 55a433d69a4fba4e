"""aiobotocore helpers for the benchmark: a client, buckets, and bounded-concurrency PUTs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench.servers import ACCESS_KEY, REGION, SECRET_KEY, BenchError


@asynccontextmanager
async def s3_client(endpoint: str, max_connections: int = 64) -> AsyncIterator[Any]:
    """An S3 client for the local server: path-style, SigV4, a pool of `max_connections`."""
    config = AioConfig(
        max_pool_connections=max_connections,
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
    )
    session = get_session()
    async with session.create_client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=config,
    ) as client:
        yield client


async def _ensure_buckets(endpoint: str, buckets: Iterable[str], wait: float) -> None:
    deadline = time.monotonic() + wait
    async with s3_client(endpoint) as client:
        for bucket in buckets:
            while True:
                try:
                    await client.create_bucket(Bucket=bucket)
                    break
                except client.exceptions.BucketAlreadyOwnedByYou:
                    break
                except client.exceptions.BucketAlreadyExists:
                    break
                except Exception as e:
                    if _client_fault(e) or time.monotonic() > deadline:
                        raise BenchError(f"cannot create bucket {bucket}: {e}") from e
                    await asyncio.sleep(0.3)
            # The first write to a new bucket is slow; take it before any measurement.
            while True:
                try:
                    await client.put_object(Bucket=bucket, Key="bench-warmup", Body=b"x")
                    await client.delete_object(Bucket=bucket, Key="bench-warmup")
                    break
                except Exception as e:
                    if time.monotonic() > deadline:
                        raise BenchError(f"cannot write to bucket {bucket}: {e}") from e
                    await asyncio.sleep(0.3)


def _client_fault(error: Exception) -> bool:
    """True for a 4xx answer: retrying will not help."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    return 400 <= int(status) < 500


def ensure_buckets(endpoint: str, buckets: Iterable[str], timeout: float = 60.0) -> None:
    """Create `buckets` (retrying while the server comes up) and warm each with one write."""
    asyncio.run(_ensure_buckets(endpoint, list(buckets), timeout))


async def put_many(
    endpoint: str, bucket: str, items: Iterable[tuple[str, bytes]], concurrency: int = 64
) -> int:
    """PUT every (key, body) of `items` with at most `concurrency` in flight; the count."""
    count = 0
    async with s3_client(endpoint, concurrency) as client:
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(concurrency * 4)

        async def worker() -> None:
            nonlocal count
            while (item := await queue.get()) is not None:
                key, body = item
                await client.put_object(Bucket=bucket, Key=key, Body=body)
                count += 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            for item in items:
                await queue.put(item)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
    return count


async def count_keys(endpoint: str, bucket: str, prefix: str) -> int:
    """How many objects lie under `prefix`."""
    total = 0
    async with s3_client(endpoint) as client:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            total += len(page.get("Contents", []))
    return total
