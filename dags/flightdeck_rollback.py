"""
### flightdeck_rollback — restore the previous champion (manual)

Moves the MLflow alias `champion` back to the version it pointed to before the
last promotion, and records the move beside the promotions in the lake and as
tags on the model version. Scoring runs after it use the restored version.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from flightdeck import tasks
from flightdeck.dagkit import CHAMPION, DEFAULT_ARGS

with DAG(
    dag_id="flightdeck_rollback",
    doc_md=__doc__,
    schedule=None,
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "maintenance"],
    params={
        "confirm": Param(
            False,
            type="boolean",
            title="Confirm rollback",
            description="Tick to move the champion alias back to the previous champion.",
        ),
    },
):

    @task(outlets=[CHAMPION])
    def rollback(*, params=None, outlet_events=None) -> dict:
        """Restore the previous champion."""
        if not params["confirm"]:
            raise ValueError("rollback not confirmed: trigger again with 'Confirm rollback' ticked")
        record = tasks.rollback_champion()
        outlet_events[CHAMPION].extra = record
        return record

    rollback()
