"""Verdicts on the targets: the scale phase's, chunked pushes on S3 against the copy bound,
and the memory each upload adds on the directory."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.run import Measure


def _requests(phase: str, registry: str, req_s: float, cpu_ms: float) -> Measure:
    """One round of a request phase on the directory."""
    return Measure(
        "filesystem",
        phase,
        registry,
        1,
        req_s,
        "req/s",
        cpu_ms_per_request=cpu_ms,
        requests=1000,
    )


def _measures(cpu: dict[str, float]) -> list[Measure]:
    return [_requests("scale-storm-get", registry, 1000.0, ms) for registry, ms in cpu.items()]


def _verdicts(cpu: dict[str, float]) -> dict[str, dict[str, Any]]:
    verdicts = report.check_targets(report.summarize(_measures(cpu)))
    return {
        v["metric"]: v
        for v in verdicts
        if v["backend"] == "filesystem" and v["phase"] == "scale-storm-get"
    }


class TestScaleTargets:
    def test_projection_is_distributions_cpu_over_two_workers_cpu(self) -> None:
        verdicts = _verdicts({"distribution": 0.9, "cargobay-1w": 0.1, "cargobay-2w": 0.1})
        assert verdicts["projection"]["value"] == 9.0
        assert verdicts["projection"]["status"] == "PASS"

    def test_projection_below_three_times_fails(self) -> None:
        verdicts = _verdicts({"distribution": 0.5, "cargobay-1w": 0.2, "cargobay-2w": 0.2})
        assert verdicts["projection"]["status"] == "FAIL"

    def test_two_workers_costlier_within_the_stated_noise_is_marked_as_noise(self) -> None:
        verdicts = _verdicts({"distribution": 0.9, "cargobay-1w": 0.10, "cargobay-2w": 0.11})
        assert verdicts["workers-cpu"]["status"] == "PASS~"

    def test_two_workers_costlier_beyond_the_noise_fail(self) -> None:
        verdicts = _verdicts({"distribution": 0.9, "cargobay-1w": 0.10, "cargobay-2w": 0.13})
        assert verdicts["workers-cpu"]["status"] == "FAIL"

    def test_scale_table_projects_requests_per_second_per_core_count(self) -> None:
        table = report.scale_table(
            report.summarize(
                _measures({"distribution": 1.0, "cargobay-1w": 0.1, "cargobay-2w": 0.1})
            )
        )
        row = next(line for line in table.splitlines() if "distribution" in line)
        assert "1000" in row and "2000" in row and "16,000" in row


def _mb(phase: str, registry: str, mb_s: float, backend: str = "s3") -> Measure:
    return Measure(backend, phase, registry, 1, mb_s, "MB/s", requests=100)


def _verdict(measures: list[Measure], backend: str, phase: str, metric: str) -> dict[str, Any]:
    verdicts = report.check_targets(report.summarize(measures))
    return next(
        v for v in verdicts if (v["backend"], v["phase"], v["metric"]) == (backend, phase, metric)
    )


class TestChunkedPushOnS3:
    # Raw PUT at 150 MB/s and CopyObject at 350: a copy adds 3/7 of a write's time,
    # so chunked pushes can do 7/10 of the monolithic 100 MB/s.
    RUN = [
        _mb("push-mono", "cargobay", 100.0),
        _mb("push-mono", "ceiling", 150.0),
        _mb("raw-copy", "ceiling", 350.0),
        _mb("push-chunked", "distribution", 50.0),
    ]

    def test_the_copy_bound_is_the_monolithic_rate_slowed_by_the_copy(self) -> None:
        assert report.copy_bound(report.summarize(self.RUN)) == 70.0

    def test_ninety_percent_of_the_copy_bound_passes_and_less_fails(self) -> None:
        passed = _verdict(
            [*self.RUN, _mb("push-chunked", "cargobay", 63.0)], "s3", "push-chunked", "copy-bound"
        )
        assert passed["status"] == "PASS"
        assert passed["value"] == 0.9
        failed = _verdict(
            [*self.RUN, _mb("push-chunked", "cargobay", 60.0)], "s3", "push-chunked", "copy-bound"
        )
        assert failed["status"] == "FAIL"

    def test_distribution_is_to_be_beaten_by_a_quarter(self) -> None:
        run = [*self.RUN, _mb("push-chunked", "cargobay", 62.0)]
        assert _verdict(run, "s3", "push-chunked", "throughput")["status"] == "FAIL"
        run = [*self.RUN, _mb("push-chunked", "cargobay", 63.0)]
        assert _verdict(run, "s3", "push-chunked", "throughput")["status"] == "PASS"

    def test_ceilings_that_moved_no_byte_give_no_bound(self) -> None:
        run = [
            _mb("push-mono", "cargobay", 100.0),
            _mb("push-mono", "ceiling", 0.0),
            _mb("raw-copy", "ceiling", 0.0),
        ]
        assert report.copy_bound(report.summarize(run)) is None

    def test_without_the_copy_ceiling_the_bound_is_not_run(self) -> None:
        run = [m for m in self.RUN if m.phase != "raw-copy"]
        run.append(_mb("push-chunked", "cargobay", 63.0))
        assert _verdict(run, "s3", "push-chunked", "copy-bound")["status"] == "NOT RUN"


def _memory(registry: str, idle: float, peak: float) -> Measure:
    return Measure(
        "filesystem",
        "memory",
        registry,
        1,
        100.0,
        "MB/s",
        peak_rss_mib=peak,
        idle_rss_mib=idle,
        requests=100,
    )


class TestDirectoryMemory:
    def test_what_the_uploads_add_is_compared_not_the_idle_process(self) -> None:
        run = [_memory("distribution", 12.0, 52.0), _memory("cargobay", 44.0, 74.0)]
        verdict = _verdict(run, "filesystem", "memory", "rss-added")
        assert verdict["value"] == 0.75
        assert verdict["status"] == "PASS"

    def test_adding_more_than_distribution_fails(self) -> None:
        run = [_memory("distribution", 12.0, 52.0), _memory("cargobay", 44.0, 94.0)]
        assert _verdict(run, "filesystem", "memory", "rss-added")["status"] == "FAIL"

    def test_the_peak_must_stay_under_100_mib(self) -> None:
        run = [_memory("distribution", 12.0, 152.0), _memory("cargobay", 44.0, 104.0)]
        assert _verdict(run, "filesystem", "memory", "rss-added")["status"] == "PASS"
        assert _verdict(run, "filesystem", "memory", "rss-abs")["status"] == "FAIL"


class TestObserved:
    """`--observed`: each registry against itself with metrics and JSON lines on."""

    RUN = [
        _requests("storm-get", "distribution", 1000.0, 1.000),
        _requests("storm-get", "distribution-observed", 950.0, 1.050),
        _requests("storm-get", "cargobay", 10000.0, 0.100),
        _requests("storm-get", "cargobay-observed", 8500.0, 0.115),
    ]

    def test_each_registry_is_compared_with_itself(self) -> None:
        (entry,) = report.summarize(self.RUN)
        assert entry["peer_observed_ratio"]["throughput"] == 0.95
        assert entry["observed_ratio"]["throughput"] == 0.85
        assert entry["observed_ratio"]["cpu_ms_per_request"] == 1.15

    def test_the_table_gives_the_cpu_per_request_each_registry_adds(self) -> None:
        table = report.observed_table(report.summarize(self.RUN))
        rows = {line.split()[2]: line for line in table.splitlines()[1:]}
        assert set(rows) == {"distribution", "cargobay"}
        assert rows["distribution"].split()[9:11] == ["1.05x", "50.0"]
        assert rows["cargobay"].split()[9:11] == ["1.15x", "15.0"]
