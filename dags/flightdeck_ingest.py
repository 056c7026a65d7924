"""
### flightdeck_ingest — ingest one day when its files have arrived (on the configured calendar)

Each run owns one day of data: its data interval. **wait_for_files** checks the
landing inbox for the day's files under the `arrival` rule of the config (every
required source present, a ready marker, or a cutoff) and meanwhile waits in the
triggerer (deferred: no worker slot), looking again every `arrival.watch_seconds`.
**ingest** then types the files with Spark into bronze partitions; bad rows go to
quarantine with a reason and the ledger reconciles `rows in = rows valid + rows quarantined`. Once the
job has committed, the same task archives and marks the ingested files, and its `bronze` asset
event (partition key = the day)
starts `flightdeck_features` for that day, and for every later day already
ingested whose rolling windows read it (a day ingested late, e.g. by an
out-of-order backfill, rebuilds its dependants).

Start, schedule, catchup and end come from `calendar` in the config. Run
history with the Backfill button; a rerun replaces exactly that day's partitions.
Files that arrive late or again for a day already ingested are taken by
`flightdeck_inbox`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from flightdeck.core.lake import configured
from flightdeck.data import landing
from flightdeck.data.documents import IngestResult
from flightdeck.ops.dagkit import BRONZE, CFG, DEFAULT_ARGS, END, START, DayFilesSensor, run_limits, spark_job

PARTITION = "{{ data_interval_start | ds }}"

with DAG(
    dag_id="flightdeck_ingest",
    doc_md=__doc__,
    schedule=CFG.calendar.schedule,
    start_date=START,
    end_date=END,
    catchup=CFG.calendar.catchup,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **run_limits(wait_hours=CFG.arrival.timeout_hours),
    tags=["flightdeck", "data"],
):

    def publish_bronze(context) -> dict:
        """Once ingested: archive and mark the day's files (a later change to one is a re-delivery), then
        announce the committed day and the later ingested days whose windows read it (asset events)."""
        partition = context["data_interval_start"].strftime("%Y-%m-%d")  # as PARTITION renders it
        marked = landing.mark_partitions(partition, context["run_id"])
        _, lake = configured()
        result = IngestResult.read(lake, context["run_id"])
        rebuild = landing.affected_partitions([partition])
        events = context["outlet_events"][BRONZE]
        events.add_partitions(rebuild)
        events.extra = {"partition": partition, "ingest": result.partitions, "rebuild": rebuild}
        return {**result.to_json(), "marked_files": marked["files"]}

    wait_for_files = DayFilesSensor(task_id="wait_for_files", partition=PARTITION)
    ingest = spark_job(
        "ingest",
        "ingest",
        ["--partition", PARTITION, "--run-key", "{{ run_id }}"],
        outlets=[BRONZE],
        announce=publish_bronze,
    )

    wait_for_files >> ingest
