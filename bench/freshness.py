"""``python -m bench.freshness``: from a day's files complete in the landing inbox to its
predictions and drift partitions committed, through Airflow on the embedded default.

Starts the embedded runtime (:class:`flightdeck.ops.runtime.Runtime`: SQLite, LocalExecutor,
free loopback ports) on a fresh state folder under ``--work``, loads a short history and trains
the first champion the way the demo does (not timed in the result, reported as setup), then for
each of ``--days`` days:

1. backfills that day's ``flightdeck_ingest`` run and waits until its ``wait_for_files`` sensor
   has looked once and is waiting (deferred to the triggerer), as it would be on a real calendar;
2. delivers the day's files into the landing inbox (:func:`flightdeck.data.landing.feed`): that
   instant is T0, "files complete";
3. polls the lake until the day's ``predictions`` and ``monitoring/drift_daily`` partitions are
   committed (their commit marker's time is the figure), and reads the asset events that announce
   them from the Airflow REST API;
4. waits until the chain is idle (retraining included, when the drift policy asks for it), then
   reads every run, task instance, try, asset event and Spark task log of the day.

From those records it derives, per task, the queue wait and run time, the orchestration overhead
(upstream done -> task running) and the gaps between DAG runs (asset event -> run queued -> first
task started); Spark tasks' run time is split by their log lines into task start, JVM start,
Python start, Spark session, reading and model load up to the first write, the writes (Spark is
lazy: compute and commit), the rest up to the job's result, and shutdown (see
:data:`SPARK_MARKS`). CPU seconds per day are sampled every second from ``/proc``: each service's
process tree (Airflow, MLflow, and every task and Spark process under the scheduler) and the whole
machine's busy time.

Writes ``freshness.json`` and ``freshness.md`` into ``--out`` and the raw records into ``--work``
(``--render RAW`` re-derives the results from them without running anything).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAILY_DAGS = ("flightdeck_ingest", "flightdeck_features", "flightdeck_score", "flightdeck_monitor")
TRAIN_DAG = "flightdeck_train"
INGEST_SENSOR = "wait_for_files"
SPARK_OPERATOR = "SparkJobOperator"
SENSOR_WAITING = {"up_for_reschedule", "deferred"}  # waiting for its next poke, or in the triggerer
CLK_TCK = os.sysconf("SC_CLK_TCK")

# A short history needs a small model and a forgiving gate, as in tests/e2e (conftest OVERRIDES);
# the daily path (ingest, features, scoring, monitoring) runs with the shipped configuration.
OVERRIDES = {
    "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60",
    "FLIGHTDECK__MODEL__SEARCH__MAX_TRIALS": "1",
    "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "4",
    "FLIGHTDECK__GATE__MIN_AUC": "0.55",
    "FLIGHTDECK__GATE__MAX_AUC_REGRESSION": "0.2",
    # The history is not monitored, so the earlier days' retrain decisions the monitoring DAG
    # waits for never come: go ahead at once instead of waiting the configured hours.
    "FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS": "0",
}


def say(message: str) -> None:
    print(f"[freshness {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- time arithmetic -----------------------------------------------------------------------------


def ts(value: str | None) -> float | None:
    """An Airflow/ISO 8601 timestamp (``...Z`` or ``+00:00``) as epoch seconds; None stays None."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def iso(epoch: float) -> str:
    """Epoch seconds as the UTC ISO form Airflow answers with (microseconds always present)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def span(start: float | None, end: float | None) -> float | None:
    """Seconds from start to end, 2 decimals; None when either is unknown."""
    if start is None or end is None:
        return None
    return round(end - start, 2)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the known values; None when there is none."""
    known = [float(v) for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


# --- the per-task breakdown (pure: records in, rows out) -------------------------------------------


def upstream_graph(tasks: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """task id -> its upstream task ids, from the REST API's tasks (each lists its downstream ids)."""
    graph: dict[str, list[str]] = {str(t["task_id"]): [] for t in tasks}
    for t in tasks:
        for down in t.get("downstream_task_ids") or []:
            graph.setdefault(str(down), []).append(str(t["task_id"]))
    return graph


def sorted_tis(tis: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Task instances in start order (not started last), then by task id."""
    return sorted(tis, key=lambda x: (ts(x.get("start_date")) or float("inf"), str(x["task_id"])))


RAN = {"success", "failed"}  # the states of a task instance that ran (its times mean something)
RESCHEDULED = re.compile(r"marking task as UP_FOR_RESCHEDULE|Pausing task as DEFERRED")


def pokes(ti: Mapping[str, Any]) -> int:
    """How many times a sensor was put back to wait: rescheduled (its log holds every poke of the
    try) or deferred to the triggerer (once: the trigger looks until the files are there)."""
    return sum(1 for e in ti.get("log") or [] if RESCHEDULED.search(str(e.get("event", ""))))


PARSED = re.compile(r"^Worker startup parse complete")


def parsed_at(ti: Mapping[str, Any]) -> float | None:
    """When the task process had parsed its DAG file (``Worker startup parse complete`` in its log).

    A rescheduled sensor's log holds every poke, each parsing again: the one at or after the
    record's start (its last poke) counts.
    """
    start = ts(ti.get("start_date"))
    found = (e for e in ti.get("log") or [] if PARSED.search(str(e.get("event", ""))))
    return next((t for e in found if (t := _event_time(e)) is not None and (start is None or t >= start)), None)


def task_rows(
    run: Mapping[str, Any], tis: Sequence[Mapping[str, Any]], graph: Mapping[str, Sequence[str]]
) -> list[dict]:
    """One row per task instance of a run, in start order.

    ``ready`` is when the task could start: the end of its last upstream task (a first task: the
    run's start). ``overhead`` = ready -> running is what orchestration costs the task, split into
    ready -> scheduled, scheduled -> queued and the queue wait (queued -> running).

    A sensor that was put back to wait (``rescheduled`` > 0, from its log) keeps the times of its
    last start: a reschedule-mode sensor is started afresh for each poke, a deferred one again
    when its trigger fired. ready -> scheduled is then its wait (``reschedule_wait``: the files'
    arrival and the poke or watch interval, not orchestration), and its overhead is scheduled ->
    running of that last start.
    """
    ends = {str(t["task_id"]): ts(t.get("end_date")) for t in tis}
    run_start = ts(run.get("start_date"))
    rows = []
    for t in sorted_tis(tis):
        task = str(t["task_id"])
        start, end = ts(t.get("start_date")), ts(t.get("end_date"))
        queued, scheduled = ts(t.get("queued_when")), ts(t.get("scheduled_when"))
        ups = [e for u in graph.get(task, []) if (e := ends.get(u)) is not None]
        ready = max(ups) if ups else run_start
        rescheduled = pokes(t)
        if t.get("state") not in RAN:  # skipped by a short-circuit or an upstream failure: nothing ran
            start = end = queued = scheduled = None
        rows.append(
            {
                "dag": str(run["dag_id"]),
                "partition": run.get("partition_key") or (run.get("data_interval_start") or "")[:10] or None,
                "task": task,
                "operator": t.get("operator"),
                "state": t.get("state"),
                "try_number": t.get("try_number"),
                "rescheduled": rescheduled,
                "reschedule_wait": span(ready, scheduled) if rescheduled else None,
                "ready_to_scheduled": None if rescheduled else span(ready, scheduled),
                "scheduled_to_queued": span(scheduled, queued),
                "queue_wait": span(queued, start),
                "overhead": span(scheduled if rescheduled else ready, start),
                "run": span(start, end),
                # part of the run: the task process starts and parses its DAG file (every task, every try)
                "parse": span(start, parsed_at(t)),
            }
        )
    return rows


def run_gap(run: Mapping[str, Any], tis: Sequence[Mapping[str, Any]], trigger_at: float | None) -> dict[str, Any]:
    """How a DAG run started and ended: trigger (asset event, or T0) -> queued -> first task -> end.

    A run queued before its trigger (the ingest run, waiting for its files) is measured from the
    trigger: it has no trigger -> queued nor queued -> first task, and its tasks' wall starts there.
    """
    starts = [s for s in (ts(t.get("start_date")) for t in tis) if s is not None]
    ends = [e for e in (ts(t.get("end_date")) for t in tis) if e is not None]
    queued, first, last = ts(run.get("queued_at")), (min(starts) if starts else None), max(ends, default=None)
    waiting = trigger_at is not None and queued is not None and queued < trigger_at
    return {
        "dag": str(run["dag_id"]),
        "run_id": str(run["dag_run_id"]),
        "run_type": run.get("run_type"),
        "state": run.get("state"),
        "partition": run.get("partition_key") or (run.get("data_interval_start") or "")[:10] or None,
        "trigger_to_queued": None if waiting else span(trigger_at, queued),
        "queued_to_first_task": None if waiting else span(queued, first),
        "tasks_wall": span(trigger_at if waiting else first, last),
        "last_task_to_run_end": span(last, ts(run.get("end_date"))),
        "wall": span(trigger_at if waiting else queued, ts(run.get("end_date"))),
    }


def trigger_event(run: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The asset event that created an asset-triggered run (the latest one naming it)."""
    named = [
        e for e in events if any(str(r.get("run_id")) == run["dag_run_id"] for r in e.get("created_dagruns") or [])
    ]
    return max(named, key=lambda e: ts(e["timestamp"]) or 0.0) if named else None


# The phases of a Spark task, each ending at a line of its log (the Spark provider logs every line
# spark-submit prints as it reads it, with its own timestamp), in the order they happen; the last
# flag takes the last matching line instead of the first. A missing mark leaves its phase unknown
# and the next phase starts at the last mark found, so the known phases still add up.
SPARK_INFO = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} INFO ")
SPARK_MARKS: tuple[tuple[str, re.Pattern[str], bool], ...] = (
    # task process up, DAG file parsed, pre-execute hooks (OpenLineage), spark-submit launched
    ("task_start", re.compile(r"^Spark-Submit cmd: "), False),
    # spark-submit's JVM up: the first line it prints
    ("jvm_start", re.compile(r""), False),
    # the job's Python: interpreter, imports, config, MLflow look-ups before the session, SparkContext asked for
    ("python_start", re.compile(r" INFO SparkContext: Running Spark version "), False),
    # SparkContext and session built: the job sets Spark's log level to WARN right after, so the
    # last Spark INFO line ends it
    ("spark_session", SPARK_INFO, True),
    # reading inputs, loading the model (scoring), planning, until the first partition write takes its lease
    ("to_first_write", re.compile(r"INFO flightdeck\.data\.leases: holding "), False),
    # the writes: Spark is lazy, so the compute happens here, then the atomic commit of each partition
    ("writes", re.compile(r"INFO flightdeck\.data\.sparkio: committed "), True),
    # after the last commit (a job that writes no partition: after the session): reports, validation,
    # MLflow logging, the run document, until the job prints its result line
    ("to_result", re.compile(r"^FLIGHTDECK_RESULT "), False),
)
# Spans measured on their own, whatever phase they fall in: from the last line before a library's
# first burst of log lines to the end of that burst. Great Expectations logs while it is imported
# and its context is built, so its burst and the silent gap before it are its start-up.
LIBRARY_STARTS: dict[str, re.Pattern[str]] = {"gx_start": re.compile(r" INFO great_expectations\.")}
LOG_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{2}) \d{2}:\d{2}:\d{2}")
SPARK_PHASES = (*(name for name, _, _ in SPARK_MARKS), "shutdown")
SUBMIT_LOGGER = "SparkSubmitHook"


def _event_time(event: Mapping[str, Any]) -> float | None:
    value = event.get("timestamp")
    return ts(value) if isinstance(value, str) else None


def spark_phases(ti: Mapping[str, Any], log: Sequence[Mapping[str, Any]], doc: Mapping[str, Any] | None) -> dict:
    """Split a Spark task's run time into the phases of :data:`SPARK_MARKS` by its log lines.

    Only the lines of spark-submit's output (and its command line) count. ``shutdown`` runs from
    the job's result line to the task's end (JVM stop, task epilogue). Also returns the run
    document's own ``seconds`` (``job``: the job's clock, from before its session to its result)
    and ``cpu_seconds`` (the job's Python driver only), and when each mark was logged.
    """
    lines = [
        (when, str(e.get("event", "")))
        for e in log
        if SUBMIT_LOGGER in str(e.get("logger", "")) and (when := _event_time(e)) is not None
    ]
    out: dict[str, Any] = dict.fromkeys(SPARK_PHASES)
    marks: dict[str, str] = {}
    previous, after = ts(ti.get("start_date")), 0
    for name, pattern, last in SPARK_MARKS:
        found = [i for i in range(after, len(lines)) if pattern.search(lines[i][1])]
        if not found:
            continue
        index = found[-1] if last else found[0]
        when = lines[index][0]
        out[name] = span(previous, when)
        marks[name] = iso(when)
        previous, after = when, index + 1
    if "to_result" in marks:
        out["shutdown"] = span(previous, ts(ti.get("end_date")))
    for name, pattern in LIBRARY_STARTS.items():
        first = next((i for i, (_, text) in enumerate(lines) if pattern.search(text)), None)
        if not first:
            out[name] = None
            continue
        burst = first  # the burst goes on over the library's lines and their continuation lines
        while burst + 1 < len(lines) and (
            pattern.search(lines[burst + 1][1]) or not LOG_LINE.match(lines[burst + 1][1])
        ):
            burst += 1
        out[name] = span(lines[first - 1][0], lines[burst][0])
    out["job"] = float(doc["seconds"]) if doc and doc.get("seconds") is not None else None
    out["job_cpu_seconds"] = doc.get("cpu_seconds") if doc else None
    out["marks"] = marks
    return out


# --- one day's figures, and the median over the days (pure) -----------------------------------------


def _event_at(events: Sequence[Mapping[str, Any]], asset: str, day: str) -> float | None:
    """When the first event of ``asset`` for ``day`` was recorded."""
    times = [
        ts(e["timestamp"])
        for e in events
        if e.get("name") == asset and (e.get("partition_key") == day or (e.get("extra") or {}).get("partition") == day)
    ]
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _run_of(runs: Sequence[Mapping[str, Any]], dag: str) -> Mapping[str, Any] | None:
    found = [r for r in runs if r["dag_id"] == dag]
    return max(found, key=lambda r: ts(r.get("queued_at")) or 0.0) if found else None


def _ti(run: Mapping[str, Any] | None, task: str) -> Mapping[str, Any] | None:
    if run is None:
        return None
    return next((t for t in run.get("task_instances", []) if t["task_id"] == task), None)


def derive_day(day: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """One measured day: freshness, announcement times, run gaps, task rows, CPU, retraining.

    Every time is in seconds after T0 (files complete), unless it is a duration.
    """
    t0, name = float(day["t0"]), str(day["day"])
    runs, events = day.get("runs", []), day.get("asset_events", [])
    entity = str(raw.get("entity", ""))
    committed = day.get("committed", {})
    pred = span(t0, committed.get("predictions", {}).get("committed_at"))
    drift = span(t0, committed.get("drift", {}).get("committed_at"))
    ingest, monitor = _run_of(runs, DAILY_DAGS[0]), _run_of(runs, DAILY_DAGS[3])
    sensor = _ti(ingest, INGEST_SENSOR)
    detected = span(t0, ts(sensor.get("end_date")) if sensor else None)
    freshness = max(pred, drift) if pred is not None and drift is not None else None

    gaps, tasks = [], []
    for r in sorted(runs, key=lambda x: ts(x.get("queued_at")) or 0.0):
        tis = r.get("task_instances", [])
        event = trigger_event(r, events)
        trigger = t0 if r is ingest else (ts(event["timestamp"]) if event else None)
        gaps.append(
            {**run_gap(r, tis, trigger), "trigger": (event or {}).get("name") or ("files" if r is ingest else None)}
        )
        graph = raw_graph(day, str(r["dag_id"]))
        for row, ti in zip(task_rows(r, tis, graph), sorted_tis(tis), strict=True):
            if ti.get("operator") == SPARK_OPERATOR:
                row["spark"] = spark_phases(ti, ti.get("log", []), r.get("run_documents", {}).get(row["task"]))
            tasks.append(row)
    ends = [ts(r.get("end_date")) for r in runs]
    last_end = max((e for e in ends if e is not None), default=None)
    cpu = cpu_window(raw.get("cpu_samples") or {}, t0, last_end)
    trains = [g for g in gaps if g["dag"] == TRAIN_DAG]
    return {
        "day": name,
        "t0": iso(t0),
        "sensor_armed_before_t0_s": span(day.get("armed_at"), t0),
        "freshness_s": freshness,
        "predictions_committed_s": pred,
        "drift_committed_s": drift,
        "files_detected_s": detected,
        "after_detection_s": span(detected, freshness),
        "announced": {
            "bronze_event_s": span(t0, _event_at(events, f"bronze_{entity}", name)),
            "features_event_s": span(t0, _event_at(events, f"features_{entity}", name)),
            "predictions_event_s": span(t0, _event_at(events, f"predictions_{entity}", name)),
            "monitor_run_end_s": span(t0, ts(monitor.get("end_date")) if monitor else None),
            "retrain_request_event_s": span(t0, _event_at(events, "retrain_request", name)),
        },
        "chain_idle_s": span(t0, day.get("idle_at")),
        "load_avg": day.get("load_avg"),
        "last_run_end_s": span(t0, last_end),
        "cpu": cpu,
        "retraining": [{k: g[k] for k in ("run_id", "state", "wall")} for g in trains],
        "runs": gaps,
        "tasks": tasks,
    }


def raw_graph(day: Mapping[str, Any], dag: str) -> dict[str, list[str]]:
    return {k: list(v) for k, v in (day.get("graphs", {}).get(dag) or {}).items()}


SUMMARY_KEYS = (
    "freshness_s",
    "predictions_committed_s",
    "drift_committed_s",
    "files_detected_s",
    "after_detection_s",
    "chain_idle_s",
)
TASK_TIMES = ("reschedule_wait", "ready_to_scheduled", "scheduled_to_queued", "queue_wait", "overhead", "run", "parse")
SPARK_TIMES = (*SPARK_PHASES, "job", *LIBRARY_STARTS)
GAP_TIMES = ("trigger_to_queued", "queued_to_first_task", "tasks_wall", "last_task_to_run_end", "wall")


def breakdown(days: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (DAG, task), the median of each time over the days, in the order the tasks ran."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for day in days:
        for row in day["tasks"]:
            groups.setdefault((row["dag"], row["task"]), []).append(row)
    out = []
    for (dag, task), all_rows in groups.items():
        rows = [r for r in all_rows if r.get("state") in RAN]
        entry: dict[str, Any] = {
            "dag": dag,
            "task": task,
            "operator": all_rows[0].get("operator"),
            "n": len(rows),  # the days it ran (not skipped)
        }
        entry.update({k: median(r.get(k) for r in rows) for k in TASK_TIMES})
        spark = [r["spark"] for r in rows if r.get("spark")]
        if spark:
            entry["spark"] = {k: median(p.get(k) for p in spark) for k in SPARK_TIMES}
        out.append(entry)
    return out


def run_gap_medians(days: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per DAG, the median of each run gap over the days."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for day in days:
        for gap in day["runs"]:
            groups.setdefault(gap["dag"], []).append(gap)
    return [
        {
            "dag": dag,
            "trigger": gaps[0].get("trigger"),
            "n": len(gaps),
            **{k: median(g.get(k) for g in gaps) for k in GAP_TIMES},
        }
        for dag, gaps in groups.items()
    ]


def derive(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The results document from the raw records: the medians, each day, the breakdown, the machine."""
    days = [derive_day(d, raw) for d in raw.get("days", [])]
    idle = raw.get("idle")
    idle_cpu = cpu_window(raw.get("cpu_samples") or {}, idle["from"], idle["to"]) if idle else None
    idle_rate = (
        round(idle_cpu["stack_s"] / idle_cpu["window_s"], 3) if idle_cpu and idle_cpu["stack_s"] is not None else None
    )
    daily = [d for d in days if d["day"] and not d["retraining"]]
    overheads = [r["overhead"] for d in days for r in d["tasks"] if r.get("overhead") is not None]
    summary: dict[str, Any] = {k: median(d[k] for d in days) for k in SUMMARY_KEYS}
    summary |= {
        "days": len(days),
        "predictions_event_s": median(d["announced"]["predictions_event_s"] for d in days),
        "monitor_run_end_s": median(d["announced"]["monitor_run_end_s"] for d in days),
        "cpu_stack_s": median(d["cpu"]["stack_s"] for d in days),
        "cpu_stack_s_without_retraining": median(d["cpu"]["stack_s"] for d in daily),
        "cpu_machine_busy_s": median(d["cpu"]["machine_busy_s"] for d in days),
        "idle_stack_cpu_per_s": idle_rate,
        "idle_stack_cpu_per_day_s": round(idle_rate * 86400) if idle_rate is not None else None,
        "idle_cpu_per_s_by_service": {
            n: round(v / idle_cpu["window_s"], 3) for n, v in idle_cpu["services"].items() if v is not None
        }
        if idle_cpu
        else {},
        "cpu_stack_s_by_service": {
            n: median(d["cpu"]["services"].get(n) for d in days)
            for n in sorted({n for d in days for n in d["cpu"]["services"]})
        },
        "overhead_per_task_median_s": median(overheads),
        "overhead_per_task_max_s": max(overheads) if overheads else None,
        "retraining_days": [d["day"] for d in days if d["retraining"]],
    }
    return {
        "started": raw.get("started"),
        "command": raw.get("command"),
        "machine": raw.get("machine"),
        "settings": raw.get("settings"),
        "overrides": raw.get("overrides"),
        "notes": raw.get("notes", []),
        "setup": raw.get("setup", []),
        "summary": summary,
        "run_gaps": run_gap_medians(days),
        "breakdown": breakdown(days),
        "days": days,
    }


# --- the report ------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    """The human report: headline medians, each day, run gaps, the per-task breakdown, the machine."""
    s, m = results["summary"], results.get("machine") or {}
    cpus = m.get("usable_cpus") or m.get("cpus")
    connect = "Connect" in str((results.get("settings") or {}).get("short Spark jobs"))
    short_jobs = "on a Spark Connect server" if connect else "through spark-submit"
    if connect:
        short_jobs += f", {(results.get('settings') or {}).get('job processes', 'a new Python each')}"
    out = [
        "# Freshness: files complete -> predictions and drift committed",
        "",
        f"Measured {results.get('started')} with `{results.get('command')}` on the embedded default "
        "(Airflow on SQLite with the LocalExecutor, Spark `local[*]`, MLflow on SQLite); the short Spark jobs "
        f"ran {short_jobs} (training always through spark-submit).",
        f"Machine: {m.get('cpu_model')}, {cpus} usable CPUs, {m.get('memory_gib')} GiB, load average at start "
        f"{m.get('load_avg_at_start')}. The machine is shared with other work: read every figure as an upper bound.",
        "",
        f"## Median of {s['days']} days (seconds after the day's files are complete, T0)",
        "",
    ]
    out += _table(
        ["figure", "seconds"],
        [
            ("**freshness**: predictions and drift committed", s["freshness_s"]),
            ("predictions partition committed", s["predictions_committed_s"]),
            ("drift partition committed", s["drift_committed_s"]),
            ("predictions asset event recorded", s["predictions_event_s"]),
            ("monitoring run ended (drift has no asset event)", s["monitor_run_end_s"]),
            ("files seen by the ingest sensor (`wait_for_files` done)", s["files_detected_s"]),
            ("freshness after the sensor saw the files", s["after_detection_s"]),
            ("whole chain idle (retraining included)", s["chain_idle_s"]),
            ("orchestration overhead per task, median (upstream done -> running)", s["overhead_per_task_median_s"]),
            ("orchestration overhead per task, max", s["overhead_per_task_max_s"]),
            ("CPU seconds per day, stack process trees (T0 -> last run end)", s["cpu_stack_s"]),
            ("CPU seconds per day, stack, days without retraining", s["cpu_stack_s_without_retraining"]),
            ("CPU seconds per day, whole machine busy (other work included)", s["cpu_machine_busy_s"]),
            ("idle stack CPU seconds per second (no run active)", s["idle_stack_cpu_per_s"]),
            ("idle stack CPU seconds per 24 h", s["idle_stack_cpu_per_day_s"]),
        ],
    )
    services = sorted(set(s.get("idle_cpu_per_s_by_service") or {}) | set(s.get("cpu_stack_s_by_service") or {}))
    if services:
        out += [
            "",
            "## CPU by service (seconds)",
            "",
            "Each service's process tree; the task processes and their Spark jobs run under the scheduler "
            "(the LocalExecutor's children).",
            "",
        ]
        out += _table(
            ["service", "idle stack, per second", "per day (median, T0 -> last run end)"],
            [
                (n, (s.get("idle_cpu_per_s_by_service") or {}).get(n), (s.get("cpu_stack_s_by_service") or {}).get(n))
                for n in services
            ],
        )
    out += [
        "",
        "## Each day",
        "",
        "Seconds after T0; CPU seconds from T0 to the day's last run end (others: machine busy minus stack, "
        "i.e. other work on the shared machine); load: the 1-minute load average at T0 and when the chain "
        "was idle.",
        "",
    ]
    out += _table(
        [
            "day",
            "freshness",
            "predictions",
            "drift",
            "sensor saw files",
            "pred. event",
            "monitor end",
            "idle",
            "CPU stack",
            "CPU machine",
            "CPU others",
            "load T0/idle",
            "retraining",
        ],
        [
            (
                d["day"],
                d["freshness_s"],
                d["predictions_committed_s"],
                d["drift_committed_s"],
                d["files_detected_s"],
                d["announced"]["predictions_event_s"],
                d["announced"]["monitor_run_end_s"],
                d["chain_idle_s"],
                d["cpu"]["stack_s"],
                d["cpu"]["machine_busy_s"],
                d["cpu"]["others_s"],
                "/".join(str(x) for x in d.get("load_avg") or []) or None,
                ", ".join(f"{t['state']} in {_fmt(t['wall'])}s" for t in d["retraining"]) or "no",
            )
            for d in results["days"]
        ],
    )
    out += [
        "",
        "## Between DAG runs (median seconds)",
        "",
        "Trigger: the asset event that created the run (the ingest run: T0, the files; it was created before "
        "and its sensor was waiting).",
        "",
    ]
    out += _table(
        [
            "DAG",
            "trigger",
            "runs",
            "trigger -> queued",
            "queued -> first task",
            "tasks wall",
            "last task -> run end",
            "wall",
        ],
        [(g["dag"], g["trigger"], g["n"], *(g[k] for k in GAP_TIMES)) for g in results["run_gaps"]],
    )
    out += [
        "",
        "## Per task (median seconds)",
        "",
        "ready = the end of the task's last upstream task (a first task: its run's start); "
        "overhead = ready -> running. A sensor that had to wait is started again for each poke (reschedule "
        "mode) or when its trigger fired (deferred): reschedule wait = ready -> its last start scheduled (the "
        "wait for the files, not orchestration), its overhead = that start's scheduled -> running, its run = "
        "that last start. DAG parse: the task process "
        "up to its DAG file parsed (part of the run).",
        "",
    ]
    out += _table(
        [
            "DAG",
            "task",
            "n",
            "reschedule wait",
            "ready -> scheduled",
            "scheduled -> queued",
            "queue wait",
            "overhead",
            "run",
            "of which DAG parse",
        ],
        [(b["dag"], b["task"], b["n"], *(b[k] for k in TASK_TIMES)) for b in results["breakdown"]],
    )
    spark = [b for b in results["breakdown"] if b.get("spark")]
    if spark:
        out += [
            "",
            "## Spark tasks: where the run time goes (median seconds)",
            "",
            "Each phase ends at a line of the task's log: task start (task process up, DAG parsed, "
            "pre-execute hooks) -> spark-submit launched; JVM start -> its first output line; Python start "
            "(interpreter, imports, config, MLflow look-ups before the session) -> SparkContext asked for; "
            "Spark session -> the last Spark INFO line (the job sets WARN right after); to first write "
            "(inputs, model load, planning) -> the first partition write takes its lease; writes (Spark is "
            "lazy: the compute runs in the writes) -> the last partition committed; to result (reports, "
            "validation, MLflow logging, run document; a job writing no partition: all its work) -> the job's "
            "result line; shutdown (JVM stop, task end). job: the run document's own `seconds` (session to "
            "result). gx_start: Great Expectations' import and context (the silent gap before its first log "
            "line and the burst of lines it logs while starting), inside whichever phase it falls.",
            "",
        ]
        out += _table(
            ["DAG", "task", "run", *SPARK_TIMES],
            [(b["dag"], b["task"], b["run"], *(b["spark"][k] for k in SPARK_TIMES)) for b in spark],
        )
    out += ["", "## Settings that add latency", ""]
    out += [f"- `{k}`: {v}" for k, v in (results.get("settings") or {}).items()]
    out += ["", "## Setup (not in the figures)", ""]
    out += [
        f"- {st['step']}: {st['seconds']}s" + (f" ({st.get('first')}..{st.get('last')})" if st.get("first") else "")
        for st in results.get("setup", [])
    ]
    out += ["", "Overrides (a small model for a short history, as in tests/e2e; the daily path is unchanged):", ""]
    out += [f"- `{k}={v}`" for k, v in (results.get("overrides") or {}).items()]
    if results.get("notes"):
        out += ["", "## Notes", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(out) + "\n"


def write(results: Mapping[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "freshness.json", out / "freshness.md"
    js.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md.write_text(render_markdown(results))
    return js, md


# --- CPU: the stack's process trees and the machine, sampled every second --------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has reaped (utime+stime+cutime+cstime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command may hold spaces: fields follow the last ')'
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds of every live process under ``roots``, plus what they reaped from dead children.

    A process that exits is folded into its parent's cutime/cstime when reaped, so the sum over
    the live tree changes by exactly the CPU spent in between (orphans re-parented away from the
    tree are lost; Airflow's task and Spark processes are reaped by their parents).
    """
    from bench.probe import process_tree

    pids = {p for root in roots for p in process_tree(root)}
    return sum(_proc_cpu(p) for p in pids)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (every core; /proc/stat, idle and iowait left out)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def window_delta(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """How much a sampled counter grew from ``start`` to ``end`` (linear between samples).

    ``samples`` are (epoch, value) in time order; None when the window is not covered.
    """

    def at(when: float) -> float | None:
        for (t0, v0), (t1, v1) in itertools.pairwise(samples):
            if t0 <= when <= t1:
                return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)
        return None

    a, b = at(start), at(end)
    return None if a is None or b is None else round(b - a, 1)


class CpuSampler:
    """A daemon thread recording, every ``interval`` seconds, the CPU seconds of each service's
    process tree (tasks and Spark jobs run under the scheduler's, the LocalExecutor's children),
    their sum (``stack``) and the machine's busy CPU, each as (time, value) samples."""

    def __init__(self, roots: Mapping[str, int], interval: float = 1.0) -> None:
        self.roots = dict(roots)
        self.interval = interval
        self.services: dict[str, list[tuple[float, float]]] = {name: [] for name in self.roots}
        self.stack: list[tuple[float, float]] = []
        self.machine: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            used = {name: tree_cpu([pid]) for name, pid in self.roots.items()}
            for name, value in used.items():
                self.services[name].append((now, value))
            self.stack.append((now, sum(used.values())))
            self.machine.append((now, machine_busy()))
            self._stop.wait(self.interval)

    def samples(self) -> dict[str, Any]:
        return {"stack": self.stack, "machine": self.machine, "services": self.services}


def cpu_window(samples: Mapping[str, Any], start: float, end: float | None) -> dict[str, Any]:
    """CPU seconds from ``start`` to ``end``: the stack, each service, the machine, and the rest
    (machine minus stack: other work on a shared machine, and this driver)."""
    if end is None:
        return {"window_s": None, "stack_s": None, "machine_busy_s": None, "others_s": None, "services": {}}
    stack = window_delta(samples.get("stack", []), start, end)
    machine = window_delta(samples.get("machine", []), start, end)
    return {
        "window_s": span(start, end),
        "stack_s": stack,
        "machine_busy_s": machine,
        "others_s": round(machine - stack, 1) if machine is not None and stack is not None else None,
        "services": {n: window_delta(v, start, end) for n, v in (samples.get("services") or {}).items()},
    }


# --- driving the stack -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s; see the logs under the --work state folder")


class Bench:
    """One freshness run: the stack, its API client, the lake and the CPU sampler."""

    def __init__(self, args: argparse.Namespace) -> None:
        from flightdeck.ops.runtime import Runtime

        self.args = args
        self.state = args.work / "state"
        self.rt = Runtime(
            state=self.state,
            airflow_port=free_port(),
            mlflow_port=free_port(),
            spark_connect=not args.spark_submit,
            spark_connect_port=free_port(),
            warm_jobs=not args.cold_jobs,
        )
        if any(self.rt.pid_of(s) for s in self.rt.services):
            raise SystemExit(
                f"a stack from an earlier run still runs on {self.state}: stop it with "
                f"FLIGHTDECK_STATE={self.state} .venv/bin/flightdeck down, then run again"
            )
        self.rt.reset()  # a fresh state folder: nothing carried over from an earlier run
        self.sampler: CpuSampler | None = None

    def start(self) -> dict[str, Any]:
        from flightdeck.core.config import load_config
        from flightdeck.core.lake import Lake
        from flightdeck.ops.airflow_api import AirflowApi

        started = time.monotonic()
        os.environ.update(OVERRIDES)  # the services (and the tasks they start) inherit them
        self.rt.start()
        os.environ.update(self.rt.environ())  # this process then reads the stack's lake and config
        password = self.rt.admin_password()
        if password is None:
            raise SystemExit(f"the api-server wrote no admin password into {self.rt.passwords_file}")
        self.api = AirflowApi(self.rt.airflow_url, "admin", password)
        self.cfg = load_config()
        self.lake = Lake(self.cfg.lake.root)
        roots = {s: pid for s in self.rt.services if (pid := self.rt.pid_of(s))}
        self.sampler = CpuSampler(roots).start()
        services = list(self.rt.services)
        return {"step": "stack_start", "seconds": round(time.monotonic() - started, 1), "services": services}

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        stopped = self.rt.stop()
        if stopped:
            say(f"stopped {', '.join(stopped)}")

    def setup(self) -> list[dict[str, Any]]:
        """History and the first champion, as the demo does it (reported, not part of the figures)."""
        from flightdeck.data import landing
        from flightdeck.ops.demo import DemoLog, plan_from_config, wait_ok
        from flightdeck.ops.readmodel import DAG_IDS

        plan = plan_from_config(
            self.cfg,
            history=self.args.history,
            train_start=self.args.train_start,
            train_end=self.args.train_end,
            days=self.args.first_day,
            timeout=self.args.timeout,
        )
        steps = DemoLog()
        t = time.monotonic()
        say("waiting for the DAGs to be parsed ...")
        self.api.wait_for_dags(list(DAG_IDS))
        steps.add("dags_parsed", t)
        for first, last in plan.history:
            t = time.monotonic()
            say(f"setup: delivering and bootstrapping history {first}..{last} ...")
            landing.feed(first, last)
            run = self.api.trigger("flightdeck_bootstrap", {"first": first, "last": last})
            wait_ok(self.api, "flightdeck_bootstrap", run["dag_run_id"], plan.timeout, say)
            steps.add("bootstrap", t, first=first, last=last, run_id=run["dag_run_id"])
        t = time.monotonic()
        say(f"setup: training the first champion on {plan.train_start}..{plan.train_end} ...")
        run = self.api.trigger(
            TRAIN_DAG,
            {"train_start": plan.train_start, "train_end": plan.train_end, "reason": "freshness bench: first champion"},
        )
        wait_ok(self.api, TRAIN_DAG, run["dag_run_id"], plan.timeout, say)
        steps.add("first_training", t, run_id=run["dag_run_id"])
        return steps.steps

    # --- one measured day ------------------------------------------------------------------------

    def ingest_run(self, day: str) -> dict[str, Any] | None:
        runs = self.api.runs("flightdeck_ingest")
        return next((r for r in runs if (r.get("data_interval_start") or "")[:10] == day), None)

    def sensor_waiting(self, run: Mapping[str, Any]) -> bool:
        tis = self.api.task_instances("flightdeck_ingest", run["dag_run_id"])
        sensor = next((t for t in tis if t["task_id"] == INGEST_SENSOR), None)
        if sensor is not None and sensor.get("state") in {"failed", "upstream_failed", "success"}:
            raise RuntimeError(f"{INGEST_SENSOR} of {run['dag_run_id']} ended {sensor['state']} before the files came")
        return sensor is not None and sensor.get("state") in SENSOR_WAITING

    def check_alive(self, day: str) -> None:
        """Raise when a service of the stack has exited or a run of the day has failed."""
        dead = [s for s in self.rt.services if not self.rt.pid_of(s)]
        if dead:
            logs = ", ".join(str(self.rt.log_dir / f"{s}.log") for s in dead)
            raise RuntimeError(f"{day}: {', '.join(dead)} exited during the measurement; see {logs}")
        run = self.ingest_run(day)
        runs = [run] if run else []
        runs += [r for dag in DAILY_DAGS[1:] for r in self.api.runs(dag, limit=10) if r.get("partition_key") == day]
        failed = [f"{r['dag_id']} {r['dag_run_id']}" for r in runs if r.get("state") == "failed"]
        if failed:
            raise RuntimeError(f"{day}: runs failed: {failed}; read their task logs in the Airflow UI or {self.state}")

    def wait_committed(self, day: str) -> dict[str, dict[str, float]]:
        """Poll the lake until the day's predictions and drift partitions are committed."""
        from flightdeck.core.lake import commit_object, stored_at
        from flightdeck.monitoring.drift import MONITORING_TABLE

        wanted = {
            "predictions": ("predictions", self.cfg.dataset.entity.name),
            "drift": ("monitoring", MONITORING_TABLE),
        }
        seen: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + self.args.timeout
        checked = time.monotonic()
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            for name, (zone, table) in wanted.items():
                if name not in seen and self.lake.is_committed(zone, table, day):
                    marker = stored_at(commit_object(self.lake.partition(zone, table, day))).timestamp()
                    seen[name] = {"seen_at": time.time(), "committed_at": marker}
                    say(f"{day}: {zone}/{table} committed")
            if time.monotonic() - checked > 10:  # stop at once on a failed run or a dead service
                self.check_alive(day)
                checked = time.monotonic()
            time.sleep(self.args.poll)
        missing = sorted(set(wanted) - set(seen))
        if missing:
            raise TimeoutError(f"{day}: {missing} not committed within {self.args.timeout:.0f}s; see the Airflow UI")
        return seen

    def measure_day(self, day: str) -> dict[str, Any]:
        """Arm the day's sensor, deliver its files (T0), wait for the outputs and for the chain to be idle."""
        from flightdeck.data import landing
        from flightdeck.ops.demo import wait_chain

        say(f"{day}: creating its flightdeck_ingest run (a one-day backfill) ...")
        self.api.backfill("flightdeck_ingest", day, day)
        run = wait_for(f"the flightdeck_ingest run of {day}", lambda: self.ingest_run(day), self.args.timeout)
        wait_for(f"{INGEST_SENSOR} of {day} waiting", lambda: self.sensor_waiting(run), self.args.timeout, 1.0)
        armed = time.time()
        say(f"{day}: {INGEST_SENSOR} is waiting; delivering the day's files ...")
        delivered = landing.feed(day, day)
        t0 = time.time()
        load_at_t0 = os.getloadavg()
        say(f"{day}: files complete (T0); waiting for predictions and drift ...")
        committed = self.wait_committed(day)
        since = iso(t0)
        wait_chain(self.api, [day], since, self.args.timeout, lambda m: say(f"{day}: {m}"))
        idle = time.time()
        say(f"{day}: the chain is idle ({idle - t0:.0f}s after T0); reading the records ...")
        return {
            "day": day,
            "armed_at": armed,
            "t0": t0,
            "idle_at": idle,
            # 1-minute load averages: other work on the machine shows here
            "load_avg": [round(load_at_t0[0], 2), round(os.getloadavg()[0], 2)],
            "delivered_rows": delivered.get("rows"),
            "committed": committed,
            **self.collect(day, since),
        }

    def collect(self, day: str, since: str) -> dict[str, Any]:
        """Every run of the day (ingest, features, scoring, monitoring, any training) with its task
        instances, tries, task logs and run documents, and the asset events since T0."""
        from flightdeck.core.lake import list_docs, read_json

        runs: list[dict[str, Any]] = []
        ingest = self.ingest_run(day)
        if ingest is not None:
            runs.append(ingest)
        for dag in (*DAILY_DAGS[1:], TRAIN_DAG):
            for r in self.api.runs(dag):
                if (r.get("queued_at") or "") >= since and (dag == TRAIN_DAG or r.get("partition_key") == day):
                    runs.append(r)
        for r in runs:
            dag, run_id = r["dag_id"], r["dag_run_id"]
            r["task_instances"] = self.api.task_instances(dag, run_id)
            for ti in r["task_instances"]:
                if ti.get("try_number"):
                    ti["tries"] = self.api.task_tries(dag, run_id, ti["task_id"])
                    ti["log"] = self.api.task_log(dag, run_id, ti["task_id"], int(ti["try_number"]))
            folder = str(Path(self.lake.run_doc(run_id, "any")).parent)
            r["run_documents"] = {Path(p).stem: read_json(p) for p in list_docs(folder)}
        return {
            "runs": runs,
            "asset_events": self.api.asset_events(since=since),
            "graphs": {dag: upstream_graph(self.api.dag_tasks(dag)) for dag in (*DAILY_DAGS, TRAIN_DAG)},
        }


# --- command line ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.freshness",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--days", type=int, default=3, help="how many days to measure, one after another")
    p.add_argument("--first-day", default="2013-07-01", help="the first measured day (then the next days)")
    p.add_argument(
        "--history",
        action="append",
        default=None,
        help="history range FIRST..LAST bootstrapped before the days (repeatable; default: the days before "
        "--first-day that its rolling features read, features.lookback_days of the config, plus the "
        "first champion's window when that lies outside them)",
    )
    p.add_argument(
        "--train-start",
        default=None,
        help="first day of the first champion's training window (default: the first history day; "
        "tests/e2e trains on 2013-01-01..2013-01-14, so that July drifts and retraining runs)",
    )
    p.add_argument(
        "--train-end", default=None, help="last day of the first champion's training window (default: --first-day - 1)"
    )
    p.add_argument(
        "--idle-seconds", type=float, default=60.0, help="measure the idle stack's CPU this long before the days"
    )
    p.add_argument(
        "--spark-submit",
        action="store_true",
        help="run each short Spark job with a spark-submit of its own (FLIGHTDECK_SPARK_CONNECT=false) instead of "
        "on the runtime's Spark Connect server (the default)",
    )
    p.add_argument(
        "--cold-jobs",
        action="store_true",
        help="on Spark Connect: start each short job in a new Python (FLIGHTDECK_WARM_JOBS=false) instead of "
        "forking it from the warm job runner",
    )
    p.add_argument("--poll", type=float, default=0.5, help="seconds between two looks at the lake")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds any one step may take")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / ".work" / "freshness", help="state and raw records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where freshness.json/.md go")
    p.add_argument("--note", action="append", default=[], help="a line added to the report (repeatable)")
    p.add_argument(
        "--render", type=Path, default=None, help="only re-derive the results from a raw records file (raw.json)"
    )
    args = p.parse_args(argv)
    try:
        first = dt.date.fromisoformat(args.first_day)
    except ValueError:
        p.error(f"--first-day must be a date YYYY-MM-DD; got {args.first_day!r}")
    if args.days < 1:
        p.error("--days must be at least 1")
    from flightdeck.core.config import load_config

    history_first = (first - dt.timedelta(days=load_config().features.lookback_days)).isoformat()
    history_last = (first - dt.timedelta(days=1)).isoformat()
    args.train_start = args.train_start or history_first
    args.train_end = args.train_end or history_last
    if args.train_end < args.train_start:
        p.error(f"--train-end {args.train_end} is before --train-start {args.train_start}")
    if args.history is None:
        args.history = [f"{history_first}..{history_last}"]
        if not history_first <= args.train_start <= args.train_end <= history_last:
            args.history.insert(0, f"{args.train_start}..{args.train_end}")
    args.day_list = [(first + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
    return args


def settings(cfg: Any) -> dict[str, Any]:
    """The configured intervals that add latency (sensor pokes, scheduler and parsing loops)."""
    env = os.environ
    return {
        "arrival.poke_seconds": cfg.arrival.poke_seconds,
        "arrival.watch_seconds": cfg.arrival.watch_seconds,
        "sensors": "wait_for_files: deferred to the triggerer, which looks every arrival.watch_seconds; "
        "wait_for_upstream, wait_for_earlier_decisions: mode=reschedule, poke_interval=arrival.poke_seconds",
        "timeouts.upstream_wait_hours": cfg.timeouts.upstream_wait_hours,
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": env.get(
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC", "5 (default)"
        ),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": env.get(
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"
        ),
        "spark.conf": dict(cfg.spark.conf),
        "spark master": env.get("FLIGHTDECK_SPARK_MASTER", "local[*]"),
        "short Spark jobs": "Spark Connect server" if env.get("FLIGHTDECK_SPARK_REMOTE") else "spark-submit each",
        "job processes": "forked from the warm job runner" if env.get("FLIGHTDECK_JOB_RUNNER") else "a new Python each",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, set up, measure every day; returns the raw records (also saved as we go)."""
    from bench.probe import machine

    args.work.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.freshness " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "overrides": OVERRIDES,
        "notes": list(args.note),
        "setup": [],
        "days": [],
    }
    m = raw["machine"]
    say(f"machine: {m['cpu_model']}, {m['cpus']} CPUs, load average {m['load_avg_at_start']}")
    raw_file = args.work / "raw.json"

    def checkpoint() -> None:
        if bench.sampler is not None:
            raw["cpu_samples"] = bench.sampler.samples()
        raw_file.write_text(json.dumps(raw, indent=1, default=str))

    bench = Bench(args)
    try:
        say(f"starting the embedded runtime on {bench.state} ...")
        raw["setup"].append(bench.start())
        raw["settings"] = settings(bench.cfg)
        raw["entity"] = bench.cfg.dataset.entity.name
        raw["setup"].extend(bench.setup())
        if args.idle_seconds > 0:
            say(f"measuring the idle stack's CPU for {args.idle_seconds:.0f}s ...")
            idle_from = time.time()
            time.sleep(args.idle_seconds)
            raw["idle"] = {"from": idle_from, "to": time.time()}
        checkpoint()
        for day in args.day_list:
            raw["days"].append(bench.measure_day(day))
            checkpoint()
            summary = derive_day(raw["days"][-1], raw)
            say(
                f"{day}: freshness {summary['freshness_s']}s (predictions {summary['predictions_committed_s']}s, "
                f"drift {summary['drift_committed_s']}s), CPU {summary['cpu']['stack_s']}s stack"
            )
    finally:
        checkpoint()
        bench.stop()
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        raw = json.loads(args.render.read_text())
        raw["notes"] = [*raw.get("notes", []), *(n for n in args.note if n not in raw.get("notes", []))]
    else:
        raw = run(args)
    results = derive(raw)
    js, md = write(results, args.out)
    say(f"wrote {js} and {md}")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
