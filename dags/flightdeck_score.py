"""
### flightdeck_score — batch scoring with the champion (on each features partition)

Triggered once per `features` partition. **resolve_models** reads the MLflow
alias `champion` once; every row of the partition is scored by that one version
and stamped with the model name, version and scoring run. Before the first
promotion there is no champion and the run is skipped (nothing to score with).
With `scoring.shadow: true`, it also picks the `challenger` and the same job
also writes its predictions to `predictions/<entity>_shadow` (never announced).
Once the predictions are committed, **score** announces them (`predictions` asset
event with the model version).
"""

from __future__ import annotations

from airflow.sdk import DAG, PartitionedAssetTimetable, task

from flightdeck.core.lake import configured
from flightdeck.model import promotion
from flightdeck.model.documents import ScoreResult
from flightdeck.ops.dagkit import DEFAULT_ARGS, FEATURES, PREDICTIONS, START, run_limits, spark_job

PARTITION = "{{ dag_run.partition_key }}"

with DAG(
    dag_id="flightdeck_score",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=FEATURES),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **run_limits(),
    tags=["flightdeck", "model"],
):

    @task(multiple_outputs=True)
    def resolve_models() -> dict[str, str]:
        """Pin the champion for this whole run, and the challenger to shadow-score with ("" for none)."""
        from airflow.sdk.exceptions import AirflowSkipException  # not at parse time: slow to import

        from flightdeck.core.config import load_config
        from flightdeck.model import inference

        version = promotion.resolve_champion()
        if version is None:
            raise AirflowSkipException("no champion model yet: run flightdeck_train first")
        return {"champion": version, "shadow": inference.shadow_version(load_config(), version)}

    def publish_predictions(context) -> dict:
        """Once scored: announce the predictions partition with the model version that produced it."""
        _, lake = configured()
        partition = context["dag_run"].partition_key
        version = context["ti"].xcom_pull(task_ids="resolve_models", key="champion")
        events = context["outlet_events"][PREDICTIONS]
        events.add_partitions(partition)
        events.extra = {"partition": partition, "model_version": version}
        return ScoreResult.read(lake, context["run_id"]).to_json()

    score = spark_job(
        "score",
        "score",
        [
            "--partition",
            PARTITION,
            "--model-version",
            "{{ ti.xcom_pull(task_ids='resolve_models', key='champion') }}",
            "--shadow-version",
            "{{ ti.xcom_pull(task_ids='resolve_models', key='shadow') or '' }}",
            "--run-key",
            "{{ run_id }}",
        ],
        outlets=[PREDICTIONS],
        announce=publish_predictions,
    )

    resolve_models() >> score
