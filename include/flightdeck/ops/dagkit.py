"""Building blocks for the DAG files: assets, default arguments, the Spark task factory.

DAG files stay wiring only; they import this module at parse time, so it imports
nothing heavier than the Airflow SDK and the Spark provider's operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, AssetWatcher

from flightdeck.core.config import JOBS_DIR, PipelineConfig, config_path, load_config
from flightdeck.core.lake import Lake
from flightdeck.ops.inbox_watch import InboxTrigger
from flightdeck.ops.notifiers import on_failure

SPARK_CONN_ID = "spark_default"
OWNER = "flightdeck"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 1,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": False,
    # every task failure (after its retries) is an alert: log, JSON lines, webhook/SMTP by config
    "on_failure_callback": on_failure(),
}

CFG: PipelineConfig = load_config()
LAKE = Lake(CFG.lake.root)


def _midnight(day: dt.date | None, zone: str) -> dt.datetime | None:
    return None if day is None else pendulum.datetime(day.year, day.month, day.day, tz=zone)


# The calendar of every DAG comes from the config (calendar.*): no dataset date in code.
START = _midnight(CFG.calendar.start, CFG.calendar.timezone)
END = _midnight(CFG.calendar.end, CFG.calendar.timezone)


def history_default(cfg: PipelineConfig) -> tuple[str, str]:
    """The bootstrap's default history: the demo's first range, else the calendar's first day."""
    if cfg.demo is not None:
        first, last = cfg.demo.history[0].split("..")
        return first, last
    return cfg.calendar.start.isoformat(), cfg.calendar.start.isoformat()


def _asset_uri(lake_path: str) -> str:
    """The asset URI of a lake path: ``file://`` for a local folder, ``s3://`` for an ``s3a://`` one."""
    if "://" not in lake_path:
        lake_path = "file://" + lake_path
    return lake_path.replace("s3a://", "s3://")


ENTITY = CFG.dataset.entity.name
BRONZE = Asset(name=f"bronze_{ENTITY}", uri=_asset_uri(LAKE.table("bronze", ENTITY)), group="flightdeck")
FEATURES = Asset(name=f"features_{ENTITY}", uri=_asset_uri(LAKE.table("features", ENTITY)), group="flightdeck")
PREDICTIONS = Asset(name=f"predictions_{ENTITY}", uri=_asset_uri(LAKE.table("predictions", ENTITY)), group="flightdeck")
RETRAIN_REQUEST = Asset(name="retrain_request", uri=_asset_uri(LAKE.retrain_requests()), group="flightdeck")
# Events of the landing inbox come from the watcher in the triggerer (late and re-delivered files).
INBOX = Asset(
    name="landing_inbox",
    uri=_asset_uri(LAKE.path("landing")),
    group="flightdeck",
    watchers=[
        AssetWatcher(
            name="flightdeck_inbox_watcher",
            trigger=InboxTrigger(poll_seconds=CFG.arrival.watch_seconds, config=str(config_path())),
        )
    ],
)
CHAMPION = Asset(name="champion_model", uri=f"models://{CFG.model.name}/champion", group="flightdeck")


def spark_job(task_id: str, job: str, args: list[str], **kwargs: Any) -> SparkSubmitOperator:
    """A task that spark-submits ``jobs/<job>.py`` through the ``spark_default`` connection."""
    application = JOBS_DIR / f"{job}.py"
    if not application.is_file():
        raise FileNotFoundError(f"Spark job {application} does not exist")
    return SparkSubmitOperator(
        task_id=task_id,
        application=str(application),
        application_args=args,
        conn_id=SPARK_CONN_ID,
        name=f"flightdeck-{job}",
        conf=dict(CFG.spark.conf),
        verbose=False,
        **kwargs,
    )


def airflow_actor(dag_run: Any) -> str:
    """Who started an Airflow run: the triggering user, else the run type (scheduler, asset, ...)."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return f"airflow:{user}"
    return f"airflow:{getattr(dag_run, 'run_type', 'unknown')}:{getattr(dag_run, 'run_id', '')}"
