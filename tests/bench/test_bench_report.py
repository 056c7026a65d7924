"""The benchmark's measurement helpers and report (bench/stages.py, bench/report.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import report


def _run(seconds: float, jobs: int | None = None) -> dict[str, Any]:
    return {"seconds": seconds, "runs": [seconds], "peak_rss_mb": 100.0, "load_avg": [0.5, 0.6], "spark_jobs": jobs}


def _results() -> dict[str, Any]:
    def scale(rows: int, k: float) -> dict[str, Any]:
        return {
            "bronze_rows": rows,
            "stages": {
                "drift": {
                    "pipeline": _run(3.0 * k, 2),
                    "reference": _run(1.0 * k, 1),
                    "floors": {"read + ship the model inputs to Python": _run(2.6 * k, 2)},
                },
                "drift_profile": {"pipeline": _run(9.0 * k, 5), "reference": _run(1.0 * k, 1)},
                "validation": {"pipeline": _run(1.4 * k, 40), "reference": _run(1.0 * k, 1), "gx_success": True},
            },
        }

    return {
        "started": "2026-12-07T00:00:00+00:00",
        "total_seconds": 1.0,
        "command": "python -m bench",
        "repeats": 1,
        "spark": {"master": "local[2]", "num_workers": 2},
        "machine": {
            "cpu_model": "cpu",
            "cpus": 2,
            "usable_cpus": 2,
            "memory_gib": 1,
            "platform": "linux",
            "python": "3.11",
            "versions": {},
            "load_avg_at_start": [0, 0, 0],
        },
        "scales": {"1": scale(10, 1.0), "300": scale(3000, 10.0)},
        "orchestration": {"note": "not measured"},
    }


def test_verdicts_judge_the_targets_at_the_largest_scale_and_leave_the_profile_untargeted() -> None:
    results = _results()
    v = report.verdicts(results)
    assert v["drift"] == {"ratio": 3.0, "target": 2.5, "met": False, "max_load": 0.6, "contended": False}
    assert v["validation"]["met"] is True
    assert "drift_profile" not in v  # no target: measured beside, not judged
    assert v["growth"]["drift"]["from"] == "1x" and v["growth"]["drift"]["to"] == "300x"


def test_the_report_shows_the_floors_spark_jobs_and_the_untargeted_profile() -> None:
    results = _results()
    results["verdicts"] = report.verdicts(results)
    md = report.markdown(results)
    assert "| 300x | 3,000 | drift_profile | 90.00 | 10.000 | 9.00 | - |" in md
    # the floor of drift at 300x: 26 s against a 10 s reference, above the 2.5 target
    assert "| 300x | drift | 2 / 1 | 20.00 | read + ship the model inputs to Python | 26.00 | 2.60 |" in md
    assert "| 300x | validation | 40 / 1 | 4.00 | - | - | - |" in md


@pytest.mark.spark
def test_spark_jobs_are_counted_and_the_python_pass_sees_every_row(spark: Any) -> None:
    from bench.stages import python_pass, spark_jobs

    df = spark.range(0, 5000, numPartitions=3).selectExpr("id", "id * 2.0 AS x")
    with spark_jobs(spark) as nothing:
        df.schema  # noqa: B018  # planning only: no job
    assert nothing() == 0
    with spark_jobs(spark) as one:
        df.count()
    with spark_jobs(spark) as two:
        df.count()
        df.count()
    assert one() >= 1  # adaptive execution may add a job per shuffle
    assert two() == 2 * one()  # each block counts its own jobs only
    with spark_jobs(spark) as jobs:
        assert python_pass(df) == 5000
    assert jobs() >= 1
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None  # the group is cleared


def test_merge_adds_only_the_scales_this_run_did_not_measure_and_names_the_earlier_run() -> None:
    from bench.__main__ import merge

    this, earlier = _results(), _results()
    del this["scales"]["300"]
    this["notes"] = []
    earlier["scales"]["1"]["bronze_rows"] = -1  # must not replace this run's own 1x
    earlier["command"] = "python -m bench --scales 1,300"
    merge(this, earlier)
    assert sorted(this["scales"], key=int) == ["1", "300"]
    assert this["scales"]["1"]["bronze_rows"] == 10
    assert this["notes"] == [
        "300x from an earlier run on this machine: `python -m bench --scales 1,300` started "
        "2026-12-07T00:00:00+00:00 (1.0 s); the other scales from this one"
    ]


def test_measure_without_warm_up_runs_only_the_timed_runs() -> None:
    from bench.probe import measure

    calls: list[int] = []
    result = measure(lambda: calls.append(1), 1, warm_up=False)
    assert calls == [1] and result["warmup"] is None and len(result["runs"]) == 1
    result = measure(lambda: calls.append(1), 3)
    assert len(calls) == 1 + 4 and len(result["runs"]) == 3  # a warm-up, then the repeats
