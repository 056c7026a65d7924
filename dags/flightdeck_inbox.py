"""
### flightdeck_inbox — re-ingest days whose files came late or again (on inbox events)

An inbox watcher runs in the triggerer (no worker slot) and fires when a day that
was ingested already gets a new file: a source that arrived after the day's run,
or a re-delivery with other bytes. Each event of the `landing_inbox` asset starts
a run that **finds** those days and **re-ingests** them (their partitions replaced
atomically); the ingest task then marks the files and announces `bronze` for those days *and* the
later ingested days whose rolling features read them, so features, scores and
monitoring of every dependent day are rebuilt. Files matching no source or
outside the calendar are refused in the log and left in place.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from flightdeck.data import landing
from flightdeck.ops.dagkit import BRONZE, DEFAULT_ARGS, INBOX, START, run_limits, spark_job

DAYS = "{{ ti.xcom_pull(task_ids='find_days') | join(',') }}"

with DAG(
    dag_id="flightdeck_inbox",
    doc_md=__doc__,
    schedule=[INBOX],
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **run_limits(),
    tags=["flightdeck", "data"],
):

    @task.short_circuit
    def find_days() -> list[str]:
        """Days already ingested that have late or re-delivered files (none: the run ends here)."""
        return landing.pending_redeliveries()

    def publish_bronze(context) -> list[str]:
        """Once ingested: archive and mark the re-ingested files, then announce bronze for the days and
        every later day whose features read them."""
        days = context["ti"].xcom_pull(task_ids="find_days")
        landing.mark_partitions(",".join(days), context["run_id"])
        partitions = landing.affected_partitions(days)
        events = context["outlet_events"][BRONZE]
        events.add_partitions(partitions)
        events.extra = {"redelivered": days, "rebuild": partitions}
        return partitions

    ingest = spark_job(
        "ingest",
        "ingest",
        ["--partition", DAYS, "--run-key", "{{ run_id }}"],
        outlets=[BRONZE],
        announce=publish_bronze,
    )

    find_days() >> ingest
