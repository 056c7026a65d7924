"""
### flightdeck_features — build and validate features (on each bronze partition)

Triggered once per `bronze` partition. **build_features** joins each flight with
the weather observed at its origin at or before its scheduled departure (never
after), the plane's attributes and calendar features, and computes the label.
**validate_features** runs the Great Expectations suite on the partition and
fails the batch, naming every broken expectation, when the data breaks the
contract. Only a valid partition is announced as `features`.
"""

from __future__ import annotations

from airflow.sdk import DAG, PartitionedAssetTimetable, task

from flightdeck.ops.dagkit import BRONZE, DEFAULT_ARGS, FEATURES, START, run_limits, spark_job

PARTITION = "{{ dag_run.partition_key }}"

with DAG(
    dag_id="flightdeck_features",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=BRONZE),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **run_limits(),
    tags=["flightdeck", "data"],
):
    build = spark_job("build_features", "build_features", ["--partition", PARTITION, "--run-key", "{{ run_id }}"])
    validate = spark_job(
        "validate_features", "validate_features", ["--partition", PARTITION, "--run-key", "{{ run_id }}"]
    )

    @task(outlets=[FEATURES])
    def publish_features(*, dag_run=None, outlet_events=None) -> str:
        """Announce the validated features partition."""
        outlet_events[FEATURES].add_partitions(dag_run.partition_key)
        outlet_events[FEATURES].extra = {"partition": dag_run.partition_key}
        return dag_run.partition_key

    build >> validate >> publish_features()
