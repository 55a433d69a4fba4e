"""The mirror phases: Cargobay's pull-through cache against Distribution 2.8's proxy mode.

One upstream per backend and run (Distribution 2.8 on a directory, access log
on) holds one image with a 50 MiB layer. Each round, each registry (A B A B
...) starts as an empty pull-through cache of it (Cargobay: a default
`[[proxy.upstreams]]`; Distribution: `proxy.remoteurl`), on a fresh backend,
and takes:

- `mirror-cold`: 50 concurrent pulls of the uncached image (manifest by tag,
  then config and layer), timed until the last one ends; pulls/s is 50 / that
  time;
- `mirror-upstream`: what the cold storm asked of the upstream, read from its
  access log: bytes as a multiple of the image's size (requests in the notes);
- `mirror-warm`: the same image pulled round and round once cached, pulls/s.

The pulls check manifest digests and blob sizes; blob digests are checked by
one more pull after the storm. Hashing the storm's 2.5 GB in the client would
make the client's CPU, not the registries, the figure on a 2-core machine.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import client, servers
from bench.plan import MiB
from bench.servers import BenchError, Process
from bench.workers import run_phase

if TYPE_CHECKING:
    from bench.run import Backend, Bench

PHASES = ("mirror-cold", "mirror-upstream", "mirror-warm")
REPOSITORY = "bench/mirror"
TAG = "v1"
_ACCESS = re.compile(r'"(GET|HEAD) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)')


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def upstream_traffic(log: Path, since: int) -> tuple[int, int, int]:
    """(requests, blob GETs, bytes sent) in the upstream's access log after byte `since`."""
    with log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    requests = blob_gets = sent = 0
    for method, path, _status, size in _ACCESS.findall(text):
        requests += 1
        if method == "GET":  # a HEAD is logged with the size of the body it did not send
            blob_gets += "/blobs/" in path
            sent += int(size) if size != "-" else 0
    return requests, blob_gets, sent


def _proxy_config(upstream: str) -> str:
    return (
        "[[proxy.upstreams]]\n"
        'name = "upstream"\n'
        f'url = "{upstream}"\n'
        'prefix = "upstream"\n'
        "default = true\n"
    )


def run(bench: Bench, backend_kind: str) -> None:
    """Every round of the mirror phases on `backend_kind`; figures go to `bench.record`."""
    p = bench.plan
    workdir = bench.workdir / "mirror"
    root = workdir / "upstream-root"
    root.mkdir(parents=True, exist_ok=True)
    upstream = servers.distribution(
        workdir, servers.free_port(), root=root, access_log=True, log_name="mirror-upstream"
    ).start()
    try:
        image = _seed(bench, upstream)
        for rnd in range(1, p.rounds + 1):
            for kind in ("distribution", "cargobay"):
                _log(f"== {backend_kind}, round {rnd}/{p.rounds}: mirror, {kind}")
                bench.guarded(_round, bench, backend_kind, kind, rnd, upstream, image)
    finally:
        upstream.stop()
        servers.remove_tree(workdir)


def _seed(bench: Bench, upstream: Process) -> client.ImageRef:
    job = client.PushJob(
        upstream.url, [(REPOSITORY, TAG, 14)], layers=1, layer_size=bench.plan.mirror_layer_size,
        chunked=False, chunk_size=0, concurrency=2,
    )
    run = run_phase(client.push, [job], {"upstream": upstream.pid})
    if run.errors:
        raise BenchError(f"seeding the upstream failed: {run.error_samples}")
    image: client.ImageRef = run.results[0].extra["images"][0]
    return image


def _round(
    bench: Bench, backend_kind: str, kind: str, rnd: int, upstream: Process,
    image: client.ImageRef,
) -> None:
    p = bench.plan
    image_bytes = image.manifest.size + image.config.size + sum(b.size for b in image.layers)
    with bench.fresh_backend(backend_kind, f"r{rnd}-{backend_kind}-{kind}-mirror") as backend:
        process = _start_mirror(bench, kind, backend, upstream.url)
        try:
            since = upstream.log_path.stat().st_size
            procs = p.client_procs
            share = p.mirror_pulls // procs
            cold_jobs = [
                client.PullSimJob(process.url, [image] * share, concurrency=share, seconds=0.0,
                                  verify=False)
                for _ in range(procs)
            ]
            m, run = bench.client_phase(
                kind, backend, process, "mirror-cold", rnd, client.pull_images, cold_jobs,
                "pulls/s", lambda r: r.items / r.wall,
            )
            requests, blob_gets, sent = upstream_traffic(upstream.log_path, since)
            m.notes.update(upstream_requests=requests, upstream_blob_gets=blob_gets,
                           upstream_bytes=sent, image_bytes=image_bytes)
            bench.record_figure(
                backend.kind, "mirror-upstream", kind, rnd, sent / image_bytes, "x image",
                {"upstream_requests": requests, "upstream_blob_gets": blob_gets,
                 "upstream_bytes": sent, "image_bytes": image_bytes},
            )
            _log(f"  {kind}: cold storm {run.wall:.2f} s, upstream {requests} requests "
                      f"({blob_gets} blob GETs), {sent / MiB:.1f} MiB")
            _check_pull(process, image)
            warm_jobs = [
                client.PullSimJob(process.url, [image], concurrency=p.sim_concurrency,
                                  seconds=p.pull_seconds, verify=False)
                for _ in range(procs)
            ]
            bench.client_phase(
                kind, backend, process, "mirror-warm", rnd, client.pull_images, warm_jobs,
                "pulls/s", lambda r: r.items / r.wall,
            )
        finally:
            process.stop()


def _check_pull(process: Process, image: client.ImageRef) -> None:
    """One pull with every blob's digest checked: what the storm stored is the image."""
    job = client.PullSimJob(process.url, [image], concurrency=1, seconds=0.0)
    run = run_phase(client.pull_images, [job], {"server": process.pid})
    if run.errors or run.items != 1:
        raise BenchError(f"{process.name}: the cached image is not intact: {run.error_samples}")


def _start_mirror(bench: Bench, kind: str, backend: Backend, upstream: str) -> Process:
    port = servers.free_port()
    if kind == "cargobay":
        extra: dict[str, object] = {
            "extra_env": bench.server_env, "extra_config": _proxy_config(upstream)
        }
    else:
        extra = {"proxy_remote": upstream}
    return servers.registry(kind, bench.workdir, port, **backend.registry_args(), **extra).start()
