"""What a benchmark run does: sizes, durations and concurrency of each phase, and the targets."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.seed import DataSet

MiB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; `quick()` and `full()` are the two documented presets."""

    name: str
    rounds: int
    client_procs: int
    # push: `images` images of `layers` layers of `layer_size` bytes, per mode
    images: int  # on SeaweedFS; three times as many on a directory, which is faster
    layers: int
    layer_size: int
    chunk_size: int  # PATCH size of the chunked push
    push_concurrency: int  # blob uploads in flight per client process
    # manifest storm
    storm_seconds: float
    storm_connections: int  # wrk, GET
    head_connections: int  # hey, HEAD
    # blob pull and pull simulation
    pull_concurrency: int  # blob GETs in flight per client process
    pull_seconds: float  # blobs and images are pulled round and round this long
    sim_concurrency: int  # images in flight per client process
    # listing and start-up data sets
    listing: DataSet
    startup: DataSet
    listing_seconds: float
    listing_connections: int
    # memory: `memory_uploads` chunked uploads of `memory_size` bytes at once
    memory_uploads: int
    memory_size: int  # on a directory
    memory_size_s3: int  # on SeaweedFS, which writes ~40 MB/s through a registry here
    memory_chunk: int
    # mirror: `mirror_pulls` concurrent pulls of an image with one layer of `mirror_layer_size`
    mirror_pulls: int = 50
    mirror_layer_size: int = 50 * MiB
    # small-blob push: `smallblob_images` images of `smallblob_layers` layers, for
    # each layer size, `smallblob_in_flight` images at a time per client process
    smallblob_images: int = 32
    smallblob_layers: int = 3
    smallblob_sizes: tuple[int, ...] = (256 * 1024, 1024 * 1024)
    smallblob_in_flight: int = 2

    def images_for(self, backend: str) -> int:
        return self.images if backend == "s3" else 3 * self.images

    def memory_size_for(self, backend: str) -> int:
        return self.memory_size_s3 if backend == "s3" else self.memory_size

    @classmethod
    def full(cls) -> Plan:
        return cls(
            name="full", rounds=3, client_procs=2,
            images=6, layers=4, layer_size=12 * MiB, chunk_size=5 * MiB, push_concurrency=4,
            storm_seconds=6, storm_connections=64, head_connections=32,
            pull_concurrency=8, pull_seconds=5, sim_concurrency=4,
            listing=DataSet("lst", repos=10_000, tags=1, manifests=1, big_every=10,
                            big_tags=20, big_manifests=2),
            startup=DataSet("st", repos=1_000, tags=100, manifests=10),
            listing_seconds=6, listing_connections=8,
            memory_uploads=50, memory_size=200 * MiB, memory_size_s3=32 * MiB,
            memory_chunk=16 * MiB,
        )

    @classmethod
    def quick(cls) -> Plan:
        return replace(
            cls.full(), name="quick", rounds=1,
            images=4, layers=3, layer_size=8 * MiB, storm_seconds=4, pull_seconds=3,
            listing_seconds=4,
            listing=DataSet("lst", repos=1_000, tags=1, manifests=1, big_every=10, big_tags=20,
                            big_manifests=2),
            startup=DataSet("st", repos=100, tags=100, manifests=10),
            memory_size=20 * MiB, memory_size_s3=20 * MiB,
        )


#: Metrics whose target is a floor; the others' are ceilings.
_AT_LEAST = ("throughput", "raw-put", "copy-bound", "projection")


@dataclass(frozen=True)
class Target:
    """One line of the issue's target table, checked against a run's medians."""

    backend: str
    phase: str
    # "throughput", "cpu", "p50", "rss", "raw-put", "seconds", "rss-abs", "image-x"
    # (mirror: upstream bytes over the image's), "rss-added" (RSS the load added over
    # Distribution's), "copy-bound" (chunked push over `report.copy_bound`), and for the
    # scale phase "workers-cpu" (CPU/req of 2 workers over 1) and "projection"
    # (Cargobay's requests/s per core at 2 workers over Distribution's)
    metric: str
    limit: float
    text: str
    #: A miss by at most this share of `limit` is within the run's noise (reported as such).
    noise: float = 0.0

    def check(self, value: float) -> bool:
        if self.metric in _AT_LEAST:
            return value >= self.limit
        return value <= self.limit

    def within_noise(self, value: float) -> bool:
        """True if `value` misses the target by no more than the stated noise."""
        if self.metric in _AT_LEAST:
            return value >= self.limit * (1 - self.noise)
        return value <= self.limit * (1 + self.noise)


def targets() -> list[Target]:
    t: list[Target] = []
    for backend, storm, push, blob, sim, listing in (
        ("filesystem", 2.0, 1.0, 1.0, 1.0, 0.2),
        ("s3", 3.0, 1.5, 1.0, 1.2, 0.1),
    ):
        for phase in ("storm-get", "storm-head"):
            t.append(Target(backend, phase, "throughput", storm, f">= {storm:.1f}x req/s"))
            t.append(Target(backend, phase, "cpu", 0.5, "<= 0.5x CPU/req"))
        t.append(Target(backend, "push-mono", "throughput", push, f">= {push:.1f}x MB/s"))
        if backend == "s3":
            t.append(Target(backend, "push-mono", "raw-put", 0.6, ">= 60% of raw PUT"))
            # A chunked upload's digest is known only at its end: its bytes are written,
            # then copied to the blob's key. Bounded by both, as Distribution is.
            t.append(Target(backend, "push-chunked", "throughput", 1.25, ">= 1.25x MB/s"))
            t.append(Target(backend, "push-chunked", "copy-bound", 0.9,
                            ">= 90% of the copy bound"))
        else:
            t.append(Target(backend, "push-chunked", "throughput", push, f">= {push:.1f}x MB/s"))
        pulls = ["blob-pull"] + (["blob-pull-redirect"] if backend == "s3" else [])
        for phase in pulls:
            t.append(Target(backend, phase, "throughput", blob, f">= {blob:.1f}x MB/s"))
        sims = ["pull-sim"] + (["pull-sim-redirect"] if backend == "s3" else [])
        for phase in sims:
            t.append(Target(backend, phase, "throughput", sim, f">= {sim:.1f}x images/s"))
        for phase in ("catalog", "tags"):
            t.append(Target(backend, phase, "p50", listing, f"<= {listing:.1f}x p50"))
        if backend == "s3":
            t.append(Target(backend, "memory", "rss", 1.0, "<= 1.0x peak RSS"))
        else:
            # A CPython process idles above Distribution's whole peak: what counts is
            # what each upload in flight adds.
            t.append(Target(backend, "memory", "rss-added", 1.0, "<= 1.0x RSS per upload"))
            t.append(Target(backend, "memory", "rss-abs", 100.0, "peak <= 100 MiB"))
        t.append(Target(backend, "mirror-upstream", "image-x", 1.0, "<= 1.0x image bytes"))
        t.append(Target(backend, "mirror-cold", "throughput", 2.0, ">= 2.0x pulls/s"))
        t.append(Target(backend, "mirror-warm", "throughput", 1.2, ">= 1.2x pulls/s"))
    t.append(Target("s3", "startup", "seconds", 15.0, "ready <= 15 s"))
    t.append(Target("s3", "memory", "rss-abs", 512.0, "<= 512 MiB"))
    for backend in ("filesystem", "s3"):
        # A/A runs of one registry differ by up to ~15% on this shared machine.
        t.append(Target(backend, "scale-storm-get", "workers-cpu", 1.0,
                        "2 workers <= 1.0x CPU/req", noise=0.15))
        phases = ["scale-storm-get", "scale-pull-sim"]
        phases += ["scale-pull-sim-redirect"] if backend == "s3" else []
        for phase in phases:
            t.append(Target(backend, phase, "projection", 3.0, ">= 3.0x D, 16 cores"))
    return t
