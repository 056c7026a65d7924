"""
### flightdeck_reproduce — rebuild a model version and check it is identical (manual)

Reads the reproducibility manifest of the chosen model version (training,
validation and holdout partitions with their data fingerprints, the config it
was trained with, chosen parameters, seeds, library versions, Spark settings),
checks the features still hold the same data, retrains with the same settings
and compares the rebuilt model's predictions on the holdout with the registered
model's. The task fails when the data changed or any prediction differs; the
version gets the tags `reproduced` and `reproduce_max_abs_diff`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from flightdeck.ops.dagkit import DEFAULT_ARGS, START, spark_job

with DAG(
    dag_id="flightdeck_reproduce",
    doc_md=__doc__,
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "maintenance", "model"],
    params={
        "model_version": Param(
            "1",
            type="string",
            pattern=r"^v?[0-9]+$",
            title="Model version",
            description="Registered model version to rebuild from its manifest (e.g. 3).",
        ),
    },
):
    spark_job(
        "reproduce",
        "reproduce",
        ["--model-version", "{{ params.model_version }}", "--run-key", "{{ run_id }}"],
    )
