"""
### flightdeck_score — batch scoring with the champion (on each features partition)

Triggered once per `features` partition. **resolve_champion** reads the MLflow
alias `champion` once; every row of the partition is scored by that one version
and stamped with the model name, version and scoring run. Before the first
promotion there is no champion and the run is skipped (nothing to score with).
With `scoring.shadow: true`, **resolve_shadow** picks the `challenger` and the same
job also writes its predictions to `predictions/<entity>_shadow` (never announced).
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

    @task
    def resolve_champion() -> str:
        """Pin the champion version for this whole run."""
        from airflow.sdk.exceptions import AirflowSkipException  # not at parse time: slow to import

        version = promotion.resolve_champion()
        if version is None:
            raise AirflowSkipException("no champion model yet: run flightdeck_train first")
        return version

    @task
    def resolve_shadow(champion: str) -> str:
        """The challenger to shadow-score with when `scoring.shadow` is on, else "" (no shadow)."""
        from flightdeck.core.config import load_config
        from flightdeck.model import inference

        return inference.shadow_version(load_config(), champion)

    version = resolve_champion()
    shadow = resolve_shadow(version)
    score = spark_job(
        "score",
        "score",
        [
            "--partition",
            PARTITION,
            "--model-version",
            "{{ ti.xcom_pull(task_ids='resolve_champion') }}",
            "--shadow-version",
            "{{ ti.xcom_pull(task_ids='resolve_shadow') or '' }}",
            "--run-key",
            "{{ run_id }}",
        ],
    )

    @task(outlets=[PREDICTIONS])
    def publish_predictions(model_version: str, *, dag_run=None, run_id=None, outlet_events=None) -> dict:
        """Announce the predictions partition with the model version that produced it."""
        _, lake = configured()
        result = ScoreResult.read(lake, run_id).to_json()
        outlet_events[PREDICTIONS].add_partitions(dag_run.partition_key)
        outlet_events[PREDICTIONS].extra = {"partition": dag_run.partition_key, "model_version": model_version}
        return result

    shadow >> score >> publish_predictions(version)
