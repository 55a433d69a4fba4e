"""The scale phase's verdicts: workers against one worker, and the 16-core projection."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.run import Measure


def _measures(cpu: dict[str, float]) -> list[Measure]:
    return [
        Measure(
            "filesystem",
            "scale-storm-get",
            registry,
            1,
            1000.0,
            "req/s",
            cpu_ms_per_request=ms,
            requests=1000,
        )
        for registry, ms in cpu.items()
    ]


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
