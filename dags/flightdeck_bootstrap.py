"""
### flightdeck_bootstrap — load history in bulk (manual)

Ingests the history the upstream delivered to the landing inbox, then builds and
validates features for the whole date range in one Spark application per stage,
instead of one daily run per day; it fails first, naming the days and sources,
when some day of the range is incomplete. Use it once to give a
new deployment the history its first model trains on, then let the daily
`flightdeck_ingest` runs (or a backfill) take over. It emits no asset events, so
history does not flood scoring and monitoring; train with `flightdeck_train`.
Every day is still written as its own partition, atomically, and reruns replace
exactly those partitions.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from flightdeck.data import landing
from flightdeck.ops.dagkit import CFG, DEFAULT_ARGS, START, history_default, spark_job

RANGE = "{{ params.first }}..{{ params.last }}"
FIRST, LAST = history_default(CFG)

with DAG(
    dag_id="flightdeck_bootstrap",
    doc_md=__doc__,
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "maintenance"],
    params={
        "first": Param(
            FIRST,
            type="string",
            format="date",
            title="First day",
            description="First day of history to load.",
        ),
        "last": Param(
            LAST,
            type="string",
            format="date",
            title="Last day",
            description="Last day of history to load (inclusive).",
        ),
    },
):

    @task
    def check_history(*, params=None) -> list[str]:
        """Every day of the range must be complete in the inbox (the upstream delivered it)."""
        return landing.check_history(params["first"], params["last"])

    ingest = spark_job("ingest", "ingest", ["--partition", RANGE, "--run-key", "{{ run_id }}"])
    build = spark_job("build_features", "build_features", ["--partition", RANGE, "--run-key", "{{ run_id }}"])
    validate = spark_job("validate_features", "validate_features", ["--partition", RANGE, "--run-key", "{{ run_id }}"])

    @task
    def mark_files(*, params=None, run_id=None) -> dict:
        """Archive and mark the ingested files (a later change to one is a re-delivery)."""
        return landing.mark_partitions(f"{params['first']}..{params['last']}", run_id)

    check_history() >> ingest >> mark_files() >> build >> validate
