"""
### flightdeck_rollback — restore the previous champion, or a named version (manual)

Moves the MLflow alias `champion` back to the version it pointed to before the
last promotion (or to the version named in the Params), as a compare-and-set
move: it fails, moving nothing, if another run moves the champion meanwhile.
The move is recorded in the alias ledger in the lake (`monitoring/promotions`:
who, when, from, to, why, and this run as its `op_id`, so a retried task returns
the move it already made instead of rolling back one more version) and as tags
on the model versions and the registered model. Scoring runs after it use the
restored version.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.model import promotion
from flightdeck.ops import dagkit
from flightdeck.ops.dagkit import CHAMPION, DEFAULT_ARGS, START

with DAG(
    dag_id="flightdeck_rollback",
    doc_md=__doc__,
    schedule=None,
    start_date=START,
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
        "version": Param(
            "",
            type="string",
            title="Version to restore",
            description="A registered model version (e.g. 3) to make champion; empty restores the previous one.",
        ),
        "reason": Param(
            "manual rollback",
            type="string",
            title="Reason",
            description="Why the champion is rolled back; recorded in the alias ledger.",
        ),
    },
):

    @task(outlets=[CHAMPION])
    def rollback(*, params=None, dag_run=None, outlet_events=None) -> dict:
        """Restore the previous champion (or the named version)."""
        if not params["confirm"]:
            raise AirflowFailException("rollback not confirmed: trigger again with 'Confirm rollback' ticked")
        record = promotion.rollback_champion(
            params.get("version") or None,
            params.get("reason") or "",
            who=dagkit.airflow_actor(dag_run),
            op_id=f"{dag_run.dag_id}/{dag_run.run_id}",  # the same for every try: a retry never moves twice
        )
        outlet_events[CHAMPION].extra = record
        return record

    rollback()
