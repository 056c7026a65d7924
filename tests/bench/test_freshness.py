"""The freshness benchmark's pure parts (bench/freshness.py): the breakdown arithmetic from task
instance records, the Spark phases from a task log, the CPU windows, the medians and the report.

Every expected value is worked out by hand from the records written here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# bench/ sits at the repository root, beside tests/: importable also when pytest is not run as `python -m pytest`
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import freshness as fr

DAY = "2013-07-01"
BASE = 1_900_000_000.0  # an epoch second; every record below is BASE + offset


def at(offset: float | None) -> str | None:
    return None if offset is None else fr.iso(BASE + offset)


def ti(task: str, scheduled: float, queued: float, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task,
        "scheduled_when": at(scheduled),
        "queued_when": at(queued),
        "start_date": at(start),
        "end_date": at(end),
        "state": "success",
        "try_number": 1,
        "operator": extra.pop("operator", "_PythonDecoratedOperator"),
        **extra,
    }


def run(dag: str, run_id: str, queued: float, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {
        "dag_id": dag,
        "dag_run_id": run_id,
        "queued_at": at(queued),
        "start_date": at(start),
        "end_date": at(end),
        "state": "success",
        "run_type": extra.pop("run_type", "asset_triggered"),
        "partition_key": extra.pop("partition_key", DAY),
        **extra,
    }


# --- time arithmetic ---------------------------------------------------------------------------------


def test_timestamps_spans_and_median() -> None:
    assert fr.ts("2013-07-01T00:00:01.500000Z") == fr.ts("2013-07-01T00:00:00+00:00") + 1.5  # type: ignore[operator]
    assert fr.ts(None) is None
    assert fr.ts(fr.iso(BASE + 0.25)) == BASE + 0.25
    assert fr.span(BASE, BASE + 2.5) == 2.5
    assert fr.span(None, BASE) is None
    assert fr.median([3.0, None, 1.0, 2.0]) == 2.0
    assert fr.median([4.0, 1.0]) == 2.5
    assert fr.median([None, None]) is None


# --- the per-task breakdown ----------------------------------------------------------------------------


def test_upstream_graph_inverts_the_downstream_lists() -> None:
    tasks = [
        {"task_id": "a", "downstream_task_ids": ["b", "c"]},
        {"task_id": "b", "downstream_task_ids": ["c"]},
        {"task_id": "c", "downstream_task_ids": []},
    ]
    assert fr.upstream_graph(tasks) == {"a": [], "b": ["a"], "c": ["a", "b"]}


def test_task_rows_split_the_wait_from_upstream_done_to_running() -> None:
    r = run("flightdeck_score", "r1", queued=-3, start=0, end=30)
    tis = [
        # b is listed first: rows come in start order
        ti("b", scheduled=11, queued=12, start=13.5, end=20),
        ti(
            "a",
            scheduled=1,
            queued=2,
            start=4,
            end=10,
            log=[{"timestamp": at(4.75), "event": "Worker startup parse complete"}],
        ),
        ti("c", scheduled=21, queued=21.5, start=25, end=29, operator=fr.SPARK_OPERATOR),
    ]
    rows = fr.task_rows(r, tis, {"a": [], "b": ["a"], "c": ["a", "b"]})
    assert [row["task"] for row in rows] == ["a", "b", "c"]
    a, b, c = rows
    # a is a first task: ready when its run started (0)
    assert (a["ready_to_scheduled"], a["scheduled_to_queued"], a["queue_wait"], a["overhead"], a["run"]) == (
        1.0,
        1.0,
        2.0,
        4.0,
        6.0,
    )
    # b is ready when a ended (10)
    assert (b["ready_to_scheduled"], b["scheduled_to_queued"], b["queue_wait"], b["overhead"], b["run"]) == (
        1.0,
        1.0,
        1.5,
        3.5,
        6.5,
    )
    # c waits for its last upstream (b, ended at 20)
    assert (c["ready_to_scheduled"], c["queue_wait"], c["overhead"], c["run"]) == (1.0, 3.5, 5.0, 4.0)
    assert a["dag"] == "flightdeck_score" and a["partition"] == DAY
    assert a["parse"] == 0.75 and b["parse"] is None  # start -> DAG file parsed, from the task's log


def test_a_rescheduled_sensor_waits_for_its_next_poke_outside_the_overhead() -> None:
    """A reschedule-mode sensor keeps its last poke's times; waiting for that poke is no overhead."""
    r = run("flightdeck_ingest", "r1", queued=0, start=1, end=200, partition_key=None, data_interval_start=at(0))
    poke_log = [
        {"timestamp": at(2), "event": "Poking callable: <function wait_for_files>"},
        {"timestamp": at(2.5), "event": "Rescheduling task, marking task as UP_FOR_RESCHEDULE"},
        {"timestamp": at(62), "event": "Poking callable: <function wait_for_files>"},
        {"timestamp": at(62.5), "event": "Success criteria met. Exiting."},
    ]
    poke_log.insert(0, {"timestamp": at(1.5), "event": "Worker startup parse complete"})  # the first poke's
    poke_log.insert(3, {"timestamp": at(62), "event": "Worker startup parse complete"})  # the last poke's
    sensor = ti("wait_for_files", scheduled=61, queued=61.25, start=61.75, end=62.75, log=poke_log)
    following = ti("ingest", scheduled=63, queued=63.5, start=64, end=90)
    first, second = fr.task_rows(r, [sensor, following], {"wait_for_files": [], "ingest": ["wait_for_files"]})
    assert first["rescheduled"] == 1
    assert first["reschedule_wait"] == 60.0  # run start (1) -> last poke scheduled (61)
    assert first["ready_to_scheduled"] is None
    assert (first["queue_wait"], first["overhead"], first["run"]) == (0.5, 0.75, 1.0)
    assert first["parse"] == 0.25  # the last poke's parse, not the first one's
    assert first["partition"] == fr.iso(BASE)[:10]  # the ingest run's day comes from its data interval
    assert second["rescheduled"] == 0 and second["reschedule_wait"] is None
    assert (second["ready_to_scheduled"], second["overhead"]) == (0.25, 1.25)  # ready when the sensor ended (62.75)


def test_a_task_that_never_ran_has_no_times() -> None:
    r = run("flightdeck_monitor", "r1", queued=0, start=1, end=20)
    # Airflow stamps a skipped task's start and end with the time it was skipped
    skipped = {"task_id": "request_retrain", "state": "skipped", "start_date": at(19), "end_date": at(19)}
    (row,) = fr.task_rows(r, [skipped], {"request_retrain": []})
    assert row["state"] == "skipped"
    assert row["run"] is None and row["queue_wait"] is None and row["overhead"] is None


def test_run_gap_from_trigger_to_run_end() -> None:
    r = run("flightdeck_features", "r1", queued=5, start=6, end=40)
    tis = [ti("a", 6, 7, 8.25, 20), ti("b", 21, 22, 23, 38)]
    gap = fr.run_gap(r, tis, trigger_at=BASE + 2)
    assert gap["trigger_to_queued"] == 3.0
    assert gap["queued_to_first_task"] == 3.25
    assert gap["tasks_wall"] == 29.75  # 8.25 -> 38
    assert gap["last_task_to_run_end"] == 2.0
    assert gap["wall"] == 35.0
    assert fr.run_gap(r, tis, trigger_at=None)["trigger_to_queued"] is None


def test_a_run_queued_before_its_trigger_is_measured_from_the_trigger() -> None:
    """The ingest run waits for its files: it was queued before T0."""
    r = run("flightdeck_ingest", "r1", queued=-10, start=-9, end=40)
    tis = [ti("wait_for_files", 50, 50, 55, 56), ti("ingest", 57, 58, 59, 39)]
    gap = fr.run_gap(r, tis, trigger_at=BASE)
    assert gap["trigger_to_queued"] is None and gap["queued_to_first_task"] is None
    assert gap["tasks_wall"] == 56.0  # T0 -> the last task's end (56)
    assert gap["wall"] == 40.0  # T0 -> run end


def test_trigger_event_is_the_latest_event_that_created_the_run() -> None:
    r = run("flightdeck_score", "asset_triggered__x", 10, 11, 20)
    events = [
        {"name": "features_flights", "timestamp": at(1), "created_dagruns": [{"run_id": "other"}]},
        {"name": "features_flights", "timestamp": at(3), "created_dagruns": [{"run_id": "asset_triggered__x"}]},
        {"name": "features_flights", "timestamp": at(2), "created_dagruns": [{"run_id": "asset_triggered__x"}]},
    ]
    found = fr.trigger_event(r, events)
    assert found is not None and found["timestamp"] == at(3)
    assert fr.trigger_event(r, events[:1]) is None


# --- Spark phases from a task log --------------------------------------------------------------------------

HOOK = "airflow.task.hooks.airflow.providers.apache.spark.hooks.spark_submit.SparkSubmitHook"


def line(offset: float, text: str, logger: str = HOOK) -> dict[str, Any]:
    return {"timestamp": at(offset), "event": text, "logger": logger}


def spark_log() -> list[dict[str, Any]]:
    return [
        line(0.5, "::group::Pre Execute", logger="task"),
        line(1, "Spark-Submit cmd: spark-submit --master local[*] jobs/score.py"),
        line(2, "WARNING: Using incubator modules: jdk.incubator.vector"),
        line(10, "26/12/07 02:19:05 INFO SparkContext: Running Spark version 4.3.0"),
        line(12, "26/12/07 02:19:07 INFO SparkEnv: Registering MapOutputTracker"),
        line(13, "26/12/07 02:19:08 INFO BlockManager: Initialized BlockManager"),
        line(14, "a line of another logger, not spark-submit's output", logger="task"),
        line(20, "2026-12-07 02:19:43,097 INFO flightdeck.data.leases: holding /lake/predictions/flights/_lease"),
        line(25, "2026-12-07 02:19:48,000 INFO great_expectations.expectations.registry: Multiple declarations"),
        line(26, "2026-12-07 02:19:49,000 INFO great_expectations.datasource.fluent.config: Loading 'datasources' ->"),
        line(26.5, "[]"),
        line(30, "2026-12-07 02:19:50,000 INFO flightdeck.data.sparkio: committed /lake/predictions/x/date=A"),
        line(31, "2026-12-07 02:19:51,000 INFO flightdeck.data.sparkio: committed /lake/predictions/x/date=B"),
        line(35, 'FLIGHTDECK_RESULT {"seconds": 24.0}'),
        line(36, "26/12/07 02:20:00 WARN ShutdownHookManager: late warning"),
    ]


def test_spark_phases_follow_the_log_lines() -> None:
    task = ti("score", 0, 0, start=0, end=38, operator=fr.SPARK_OPERATOR)
    phases = fr.spark_phases(task, spark_log(), {"seconds": 24.0, "cpu_seconds": 6.5})
    assert {k: phases[k] for k in fr.SPARK_PHASES} == {
        "task_start": 1.0,
        "jvm_start": 1.0,
        "python_start": 8.0,
        "spark_session": 3.0,  # to the last Spark INFO line (13)
        "to_first_write": 7.0,
        "writes": 11.0,  # to the last commit (31)
        "to_result": 4.0,
        "shutdown": 3.0,
    }
    assert sum(phases[k] for k in fr.SPARK_PHASES) == 38.0  # the whole run time
    assert phases["job"] == 24.0 and phases["job_cpu_seconds"] == 6.5
    assert phases["marks"]["task_start"] == at(1)
    assert phases["gx_start"] == 6.5  # the gap before Great Expectations' first line (20) to its burst's end (26.5)


def test_a_missing_mark_merges_its_phase_into_the_next() -> None:
    log = [e for e in spark_log() if "leases: holding" not in e["event"]]
    task = ti("detect_drift", 0, 0, start=0, end=38, operator=fr.SPARK_OPERATOR)
    phases = fr.spark_phases(task, log, None)
    assert phases["to_first_write"] is None
    assert phases["writes"] == 18.0  # from the session's end (13) to the last commit (31)
    assert phases["job"] is None and phases["job_cpu_seconds"] is None
    assert phases["gx_start"] == 13.5  # from the last spark-submit line before it (13), not the task's (14)


def test_a_job_that_printed_no_result_has_no_shutdown_phase() -> None:
    log = [e for e in spark_log() if not e["event"].startswith("FLIGHTDECK_RESULT")]
    task = ti("ingest", 0, 0, start=0, end=60, operator=fr.SPARK_OPERATOR)
    phases = fr.spark_phases(task, log, None)
    assert phases["to_result"] is None and phases["shutdown"] is None


# --- CPU windows -------------------------------------------------------------------------------------


def test_window_delta_interpolates_between_samples() -> None:
    samples = [(0.0, 0.0), (10.0, 5.0), (20.0, 25.0)]
    assert fr.window_delta(samples, 5.0, 15.0) == 12.5  # 2.5 -> 15.0
    assert fr.window_delta(samples, 0.0, 20.0) == 25.0
    assert fr.window_delta(samples, 5.0, 25.0) is None  # after the last sample
    assert fr.window_delta([], 0.0, 1.0) is None


def test_tree_cpu_counts_this_process() -> None:
    before = fr.tree_cpu([os.getpid()])
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # burn 0.3 s of CPU
        sum(i * i for i in range(1000))
    assert fr.tree_cpu([os.getpid()]) - before >= 0.25
    assert fr.machine_busy() > 0


# --- one day, the medians, the report ----------------------------------------------------------------------


def measured_day(day: str, offset: float, retrain: bool = False) -> dict[str, Any]:
    """A day whose T0 is BASE + offset: ingest -> features -> score -> monitor (-> train)."""

    def o(x: float) -> float:
        return offset + x

    ingest = run(
        "flightdeck_ingest", f"backfill__{day}", o(-30), o(-29), o(17), partition_key=None, data_interval_start=day
    )
    ingest["task_instances"] = [
        # rescheduled: its first poke came before T0, its last poke saw the files 12 s after T0
        ti("wait_for_files", o(10), o(10.5), o(-28), o(12)),
        ti("publish_bronze", o(13), o(14), o(15), o(16)),
    ]
    features = run("flightdeck_features", f"f__{day}", o(18), o(19), o(30))
    features["task_instances"] = [ti("build_features", o(19), o(20), o(21), o(29))]
    score = run("flightdeck_score", f"s__{day}", o(31), o(32), o(45))
    score["task_instances"] = [ti("score", o(32), o(33), o(34), o(44))]
    monitor = run("flightdeck_monitor", f"m__{day}", o(46), o(47), o(70))
    monitor["task_instances"] = [ti("detect_drift", o(47), o(48), o(50), o(69))]
    if retrain:
        monitor["task_instances"].append(ti("request_retrain", o(69.2), o(69.3), o(69.5), o(70)))
    else:  # the drift policy said no: skipped, stamped with the time it was skipped
        skipped = ti("request_retrain", o(69.2), o(69.3), o(69.6), o(69.6))
        monitor["task_instances"].append({**skipped, "state": "skipped"})
    runs = [ingest, features, score, monitor]
    if retrain:
        train = run("flightdeck_train", f"t__{day}", o(72), o(73), o(170), partition_key=day)
        train["task_instances"] = [ti("train", o(73), o(74), o(75), o(169))]
        runs.append(train)
    events = [
        {
            "name": "bronze_flights",
            "partition_key": day,
            "timestamp": at(o(16)),
            "created_dagruns": [{"run_id": f"f__{day}"}],
        },
        {
            "name": "features_flights",
            "partition_key": day,
            "timestamp": at(o(30)),
            "created_dagruns": [{"run_id": f"s__{day}"}],
        },
        {
            "name": "predictions_flights",
            "partition_key": day,
            "timestamp": at(o(45)),
            "created_dagruns": [{"run_id": f"m__{day}"}],
        },
    ]
    return {
        "day": day,
        "armed_at": BASE + o(-5),
        "t0": BASE + o(0),
        "idle_at": BASE + o(100 if not retrain else 200),
        "load_avg": [1.0, 2.0],
        "committed": {
            "predictions": {"seen_at": BASE + o(44.5), "committed_at": BASE + o(44)},
            "drift": {"seen_at": BASE + o(69.5), "committed_at": BASE + o(68.5)},
        },
        "runs": runs,
        "asset_events": events,
        "graphs": {},
    }


def raw_records() -> dict[str, Any]:
    days = [measured_day("2013-07-01", 0.0, retrain=True), measured_day("2013-07-02", 1000.0)]
    # the stack spends 2 CPU s per wall second (the scheduler's tree 1.5, the api-server 0.5), the machine 3
    samples = [BASE - 200 + i for i in range(1400)]
    return {
        "started": "2026-12-07T02:00:00+00:00",
        "command": "python -m bench.freshness --days 2",
        "machine": {
            "cpu_model": "test cpu",
            "cpus": 2,
            "usable_cpus": 2,
            "memory_gib": 8.0,
            "load_avg_at_start": [1.0],
        },
        "settings": {"arrival.poke_seconds": 60},
        "entity": "flights",
        "overrides": {"FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60"},
        "setup": [{"step": "bootstrap", "seconds": 90.0, "first": "2013-06-03", "last": "2013-06-30"}],
        "idle": {"from": BASE - 100, "to": BASE - 50},
        "cpu_samples": {
            "stack": [(t, 2.0 * (t - BASE)) for t in samples],
            "machine": [(t, 3.0 * (t - BASE)) for t in samples],
            "services": {
                "scheduler": [(t, 1.5 * (t - BASE)) for t in samples],
                "api-server": [(t, 0.5 * (t - BASE)) for t in samples],
            },
        },
        "days": days,
        "notes": ["a test"],
    }


def test_derive_day_measures_from_files_complete() -> None:
    raw = raw_records()
    day = fr.derive_day(raw["days"][1], raw)  # T0 = BASE + 1000, no retraining
    assert day["predictions_committed_s"] == 44.0
    assert day["drift_committed_s"] == 68.5
    assert day["freshness_s"] == 68.5  # the later of the two
    assert day["files_detected_s"] == 12.0  # the sensor's success
    assert day["after_detection_s"] == 56.5
    assert day["announced"]["bronze_event_s"] == 16.0
    assert day["announced"]["predictions_event_s"] == 45.0
    assert day["announced"]["monitor_run_end_s"] == 70.0
    assert day["announced"]["retrain_request_event_s"] is None
    assert day["last_run_end_s"] == 70.0
    assert day["cpu"] == {
        "window_s": 70.0,
        "stack_s": 140.0,
        "machine_busy_s": 210.0,
        "others_s": 70.0,  # machine - stack
        "services": {"scheduler": 105.0, "api-server": 35.0},
    }
    assert day["retraining"] == []
    gaps = {g["dag"]: g for g in day["runs"]}
    assert gaps["flightdeck_ingest"]["trigger"] == "files"
    assert gaps["flightdeck_features"]["trigger"] == "bronze_flights"
    assert gaps["flightdeck_features"]["trigger_to_queued"] == 2.0  # event 16 -> queued 18
    assert gaps["flightdeck_score"]["queued_to_first_task"] == 3.0  # queued 31 -> first start 34
    assert gaps["flightdeck_monitor"]["trigger_to_queued"] == 1.0  # event 45 -> queued 46


def test_derive_takes_the_median_of_the_days_and_reports_retraining() -> None:
    results = fr.derive(raw_records())
    s = results["summary"]
    assert s["days"] == 2
    assert s["freshness_s"] == 68.5
    assert s["retraining_days"] == ["2013-07-01"]
    assert s["cpu_stack_s"] == (340.0 + 140.0) / 2  # the retraining day's window ends with training (170 s)
    assert s["cpu_stack_s_without_retraining"] == 140.0
    assert s["idle_stack_cpu_per_s"] == 2.0
    assert s["idle_stack_cpu_per_day_s"] == 172800
    assert s["idle_cpu_per_s_by_service"] == {"scheduler": 1.5, "api-server": 0.5}
    assert s["cpu_stack_s_by_service"] == {"api-server": (85.0 + 35.0) / 2, "scheduler": (255.0 + 105.0) / 2}
    per_task = {(b["dag"], b["task"]): b for b in results["breakdown"]}
    assert per_task[("flightdeck_monitor", "detect_drift")]["queue_wait"] == 2.0
    assert per_task[("flightdeck_monitor", "detect_drift")]["n"] == 2
    assert per_task[("flightdeck_train", "train")]["n"] == 1
    # skipped on the second day: only the day it ran counts
    assert per_task[("flightdeck_monitor", "request_retrain")]["n"] == 1
    assert per_task[("flightdeck_monitor", "request_retrain")]["run"] == 0.5


def test_render_markdown_shows_the_medians_each_day_and_the_machine() -> None:
    results = fr.derive(raw_records())
    md = fr.render_markdown(results)
    assert "| **freshness**: predictions and drift committed | 68.5 |" in md
    assert "| 2013-07-01 | 68.5 | 44.0 | 68.5 |" in md
    assert "success in 98.0s" in md  # the retraining run of the first day (queued 72 -> end 170)
    assert "test cpu, 2 usable CPUs, 8.0 GiB" in md
    assert "upper bound" in md
    assert "`FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS=60`" in md
    assert "- a test" in md


def test_write_puts_both_files(tmp_path: Path) -> None:
    js, md = fr.write(fr.derive(raw_records()), tmp_path / "out")
    assert js.name == "freshness.json" and md.name == "freshness.md"
    assert '"freshness_s": 68.5' in js.read_text()


@pytest.mark.parametrize("argv", [["--days", "0"], ["--first-day", "July 1st"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        fr.parse_args(argv)


def test_default_history_covers_the_rolling_lookback_and_the_champion_window() -> None:
    args = fr.parse_args(["--days", "2", "--first-day", "2013-07-01"])
    assert args.history == ["2013-06-03..2013-06-30"]  # features.lookback_days = 28 days before July 1
    assert (args.train_start, args.train_end) == ("2013-06-03", "2013-06-30")
    assert args.day_list == ["2013-07-01", "2013-07-02"]
    e2e_like = fr.parse_args(["--train-start", "2013-01-01", "--train-end", "2013-01-14"])
    assert e2e_like.history == ["2013-01-01..2013-01-14", "2013-06-03..2013-06-30"]
