"""
### flightdeck_maintenance — model retention: keep, deprecate, then delete old model versions (daily)

**apply_retention** judges every registered version of the model by the `retention`
policy of the config: the `champion` and `challenger` aliases, the `keep_last` newest
versions and every version named by a predictions partition of the last `window_days`
are kept; any other version is deprecated (version tag `flightdeck.deprecated=<day>`)
and, `grace_days` later, its model artifacts and registry entry are deleted. Each run,
with every step and its reason, is recorded in the alias ledger
(`monitoring/promotions/<model>-retention-<seq>.json`) and shown on the flightdeck page.
Tick *Dry run* (or set `retention.dry_run`) to record what it would do without acting;
`flightdeck retention --dry-run` does the same from a shell.

It runs daily on the calendar of the config (`retention.schedule`, until `calendar.end`);
a deployment whose calendar has ended (the demo's dataset) triggers it by hand.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from flightdeck.core.lake import configured
from flightdeck.model import retention
from flightdeck.ops import dagkit
from flightdeck.ops.dagkit import CFG, DEFAULT_ARGS, END, START

with DAG(
    dag_id="flightdeck_maintenance",
    doc_md=__doc__,
    schedule=CFG.retention.schedule,
    start_date=START,
    # like ingest: no scheduled run past the calendar's end (the demo's dataset); trigger it by hand then
    end_date=END,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "maintenance"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Record what retention would do (in the alias ledger) without tagging or deleting anything.",
        ),
    },
):

    @task
    def apply_retention(*, params=None, dag_run=None, data_interval_end=None) -> dict:
        """Keep, deprecate and delete model versions by the `retention` policy; record the run in the ledger."""
        cfg, lake = configured()
        if not cfg.retention.enabled:
            raise AirflowSkipException("retention.enabled is false in the config")
        when = data_interval_end or dag_run.run_after
        record = retention.run_retention(
            cfg,
            lake,
            run_day=when.date(),
            dry_run=bool(params.get("dry_run")) or None,
            who=dagkit.airflow_actor(dag_run),
        )
        return record.to_json()

    apply_retention()
