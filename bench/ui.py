"""The web page on 10,000 repositories: server time per listing and repository page.

    .venv/bin/python -m bench.ui [--repos 10000] [--requests 200]

The data set (`bench.seed`'s layout, written to a temporary directory) is
served by one in-process app on the filesystem driver, its index fully
loaded. A middleware times each request inside the server (handler and
rendering, not the client): CPU time of the server's thread, the steady figure
on a shared machine, and wall time. Each page is measured alternately with the
API request that answers the same question as JSON, the peer
(`/v2/_catalog?n=50` for a listing, `tags/list` for a repository): same
process, same index, same round. Target: under 50 ms of server time per page
(the p95 of CPU time is held to it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.seed import DataSet, seed_filesystem, timed
from registry.api.context import REGISTRY
from registry.app import create_app
from registry.config import Config, FilesystemConfig, LogConfig, StorageConfig

TARGET_MS = 50.0


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def timing_middleware(
    times: dict[str, list[tuple[float, float]]],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Record (CPU seconds, wall seconds) of each request, by its X-Bench-Case header.

    CPU time of the server's thread is the steady figure on a shared machine; the
    client waits while the handler runs, so nothing else runs on that thread then.
    """

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        cpu, wall = time.thread_time(), time.perf_counter()
        response = await handler(request)
        elapsed = (time.thread_time() - cpu, time.perf_counter() - wall)
        times[request.headers.get("X-Bench-Case", "?")].append(elapsed)
        return response

    return timed


async def run(repos: int, requests: int) -> None:
    spec = DataSet("ui", repos=repos, tags=5, manifests=2, big_every=1000, big_tags=500,
                   big_manifests=20)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as root:
        timed(spec.describe(), seed_filesystem, Path(root), spec)
        await measure(spec, Path(root), requests)


async def measure(spec: DataSet, root: Path, requests: int) -> None:
    repos = spec.repos
    times: dict[str, list[tuple[float, float]]] = defaultdict(list)
    storage = StorageConfig(driver="filesystem", filesystem=FilesystemConfig(str(root)))
    app = create_app(Config(storage=storage, log=LogConfig(access_log=False)))
    app.middlewares.insert(0, timing_middleware(times))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        started = time.monotonic()
        await app[REGISTRY].warming
        print(f"index loaded in {time.monotonic() - started:.1f}s", flush=True)
        small = [spec.repo_name(i) for i in range(1, repos, max(1, repos // requests))]
        big = spec.repo_name(0)
        middle = spec.repo_name(repos // 2)
        cases: list[tuple[str, str, str]] = [
            ("listing, first page", "/ui/", "/v2/_catalog?n=50"),
            ("listing, middle page", f"/ui/?after={middle}", f"/v2/_catalog?n=50&last={middle}"),
            ("listing, filter (scans all)", "/ui/?q=app0999", "/v2/_catalog?n=50"),
            ("repository, 5 tags", "", ""),  # a different repository each round
            ("repository, 500 tags", f"/ui/r/{big}", f"/v2/{big}/tags/list?n=50"),
        ]
        for round_number in range(requests):
            repo = small[round_number % len(small)]
            for label, ui_path, api_path in cases:
                if not ui_path:
                    ui_path, api_path = f"/ui/r/{repo}", f"/v2/{repo}/tags/list"
                pairs = [("ui " + label, ui_path), ("api " + label, api_path)]
                if round_number % 2:
                    pairs.reverse()
                for case, path in pairs:
                    async with client.get(path, headers={"X-Bench-Case": case}) as response:
                        assert response.status == 200, (path, response.status)
                        await response.read()
        report(times, [label for label, _, _ in cases])
    finally:
        await client.close()


def report(times: dict[str, list[tuple[float, float]]], labels: list[str]) -> None:
    print("\nserver time per page, ms: CPU median / p95, wall median; API = the JSON peer;")
    print("first: the page's first request, caches cold (CPU / wall)")
    header = f"{'page':<30}{'UI cpu':>8}{'p95':>8}{'wall':>8}{'API cpu':>9}{'UI/API':>8}"
    print(f"{header}{'first':>14}  target")
    for label in labels:
        ui_cpu = [cpu * 1000 for cpu, _ in times["ui " + label]]
        ui_wall = [wall * 1000 for _, wall in times["ui " + label]]
        api_cpu = [cpu * 1000 for cpu, _ in times["api " + label]]
        p95 = statistics.quantiles(ui_cpu, n=20)[-1]
        median, api = statistics.median(ui_cpu), statistics.median(api_cpu)
        first_cpu, first_wall = (t * 1000 for t in times["ui " + label][0])
        verdict = "met" if p95 < TARGET_MS else "MISSED"
        print(f"{label:<30}{median:>8.2f}{p95:>8.2f}{statistics.median(ui_wall):>8.2f}"
              f"{api:>9.2f}{median / api:>7.1f}x{first_cpu:>7.1f}/{first_wall:<6.1f}"
              f"  {verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200, help="rounds of every page")
    args = parser.parse_args()
    asyncio.run(run(args.repos, args.requests))


if __name__ == "__main__":
    main()
