"""
### flightdeck_ingest — land and ingest one day (daily)

Each run owns one day of data: its data interval. It **lands** that day's raw
files (the upstream export: one CSV per source per day, plus the reference
tables), then **ingests** them with Spark into typed bronze partitions. Bad
rows go to quarantine with a reason; the per-partition ledger reconciles
`rows in = rows valid + rows quarantined`. Publishing the `bronze` asset event
(partition key = the day) starts `flightdeck_features` for that day.

Run history with `airflow backfill create` or the Backfill button; a rerun
replaces exactly that day's partitions.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from flightdeck.core.lake import configured
from flightdeck.data import landing
from flightdeck.data.documents import IngestResult
from flightdeck.ops.dagkit import BRONZE, CFG, DEFAULT_ARGS, END, START, spark_job

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
    tags=["flightdeck", "data"],
):

    @task
    def land(partition: str) -> dict:
        """Write the day's raw files into the landing zone, as the upstream export would."""
        return landing.land_partition(partition)

    ingest = spark_job("ingest", "ingest", ["--partition", PARTITION, "--run-key", "{{ run_id }}"])

    @task(outlets=[BRONZE])
    def publish_bronze(partition: str, *, outlet_events=None, run_id=None) -> dict:
        """Announce the committed bronze partition (asset event keyed by the day)."""
        _, lake = configured()
        result = IngestResult.read(lake, run_id)
        outlet_events[BRONZE].add_partitions(partition)
        outlet_events[BRONZE].extra = {"partition": partition, "ingest": result.partitions}
        return result.to_json()

    land(PARTITION) >> ingest >> publish_bronze(PARTITION)
