"""The demo: the whole loop on real data, driven through Airflow's REST API.

1. deliver history into the landing inbox (the simulated upstream, :func:`flightdeck.data.landing.feed`),
   then bootstrap it (``flightdeck_bootstrap``): ingest, build and validate features;
2. train the first champion on the configured window (``flightdeck_train`` with Params);
3. deliver days of another season and run the daily ``flightdeck_ingest`` DAG over them (an
   Airflow backfill); each day flows through features, scoring and monitoring by asset
   events, and real seasonal drift triggers retraining;
4. wait until the chain is quiet, then print a summary and write a JSON report.

Nothing here calls a job function directly: every stage runs as a DAG run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import LakeError, parse_date, parse_partitions
from flightdeck.data import landing
from flightdeck.ops.airflow_api import AirflowApi, AirflowApiError
from flightdeck.ops.readmodel import DAG_IDS

CHAIN = ("flightdeck_features", "flightdeck_score", "flightdeck_monitor")


class DemoConfigError(FlightdeckError):
    """The demo does not know which days to run."""


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: history to load, the first champion's window, the daily days.

    Its dates belong to the dataset, so they come from the config (``demo`` and
    ``model.train_start``/``train_end``, see :func:`plan_from_config`), never from code.
    """

    history: Sequence[tuple[str, str]]
    train_start: str
    train_end: str
    days: str
    timeout: float = 3600.0


def plan_from_config(
    cfg: PipelineConfig,
    *,
    history: Sequence[str] | None = None,
    train_start: str | None = None,
    train_end: str | None = None,
    days: str | None = None,
    timeout: float = 3600.0,
) -> DemoPlan:
    """The demo's plan: what is given, else the config's ``demo`` section and training window.

    Raises:
        DemoConfigError: neither the arguments nor the config say which days to run.
    """
    story = cfg.demo
    if story is None and (not history or not days):
        raise DemoConfigError(
            "the config has no demo section: add demo: {history: [FIRST..LAST], days: FIRST..LAST} "
            "or pass --history and --days"
        )
    return DemoPlan(
        history=parse_history(history or (story.history if story else [])),
        train_start=train_start or cfg.model.train_start.isoformat(),
        train_end=train_end or cfg.model.train_end.isoformat(),
        days=days or (story.days if story else ""),
        timeout=timeout,
    )


@dataclass
class DemoLog:
    """Steps with their wall time, for the report."""

    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, started: float, **info: Any) -> None:
        self.steps.append({"step": name, "seconds": round(time.monotonic() - started, 1), **info})


def wait_ok(api: AirflowApi, dag_id: str, run_id: str, timeout: float, say: Callable[[str], None]) -> dict:
    """Wait for a run to end; raise naming its failed tasks unless it succeeded (the demo and bench steps)."""
    run = api.wait_run(dag_id, run_id, timeout, progress=say)
    if run["state"] != "success":
        failed = [t["task_id"] for t in api.task_instances(dag_id, run_id) if t.get("state") == "failed"]
        raise AirflowApiError(
            f"{dag_id} run {run_id} ended {run['state']} (failed tasks: {failed}); open the run in the Airflow UI "
            "to read the task logs"
        )
    return run


def wait_chain(
    api: AirflowApi, days: list[str], since: str, timeout: float, say: Callable[[str], None]
) -> dict[str, list[dict[str, Any]]]:
    """Wait until every day has gone through features, scoring and monitoring, and training is idle."""
    deadline = time.monotonic() + timeout
    reported: set[tuple[str, str, str]] = set()
    quiet_polls = 0
    while time.monotonic() < deadline:
        runs = {
            dag: [r for r in api.runs(dag) if (r.get("queued_at") or "") >= since]
            for dag in (*CHAIN, "flightdeck_train")
        }
        for dag, dag_runs in runs.items():
            for r in dag_runs:
                key = (dag, r["dag_run_id"], r["state"])
                if key not in reported and r["state"] in {"running", "success", "failed"}:
                    reported.add(key)
                    say(f"{dag} [{r.get('partition_key') or 'manual'}]: {r['state']}")
        monitored = {r.get("partition_key") for r in runs["flightdeck_monitor"] if r["state"] in {"success", "failed"}}
        failed = [(d, r["partition_key"]) for d, rs in runs.items() for r in rs if r["state"] == "failed"]
        busy = [r for rs in runs.values() for r in rs if r["state"] not in {"success", "failed"}]
        if failed:
            raise AirflowApiError(f"runs failed: {failed}; open them in the Airflow UI to read the task logs")
        if set(days) <= monitored and not busy:
            quiet_polls += 1
            if quiet_polls >= 4:  # asset-triggered runs appear within a scheduler loop or two
                return runs
        else:
            quiet_polls = 0
        time.sleep(5)
    raise AirflowApiError(f"the daily chain did not finish within {timeout:.0f}s")


def run_demo(api: AirflowApi, plan: DemoPlan, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole loop; returns what happened (steps, runs, timings)."""
    log = DemoLog()
    started_all = time.monotonic()
    since = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")

    t = time.monotonic()
    say("waiting for the DAGs to be parsed ...")
    api.wait_for_dags(list(DAG_IDS))
    log.add("dags_parsed", t)

    for first, last in plan.history:
        t = time.monotonic()
        say(f"upstream (simulated): delivering {first}..{last} into the landing inbox ...")
        landing.feed(first, last)
        say(f"bootstrap: loading history {first}..{last} (ingest, features, validation) ...")
        run = api.trigger("flightdeck_bootstrap", {"first": first, "last": last})
        wait_ok(api, "flightdeck_bootstrap", run["dag_run_id"], plan.timeout, say)
        log.add("bootstrap", t, first=first, last=last, run_id=run["dag_run_id"])

    t = time.monotonic()
    say(f"training the first champion on {plan.train_start}..{plan.train_end} ...")
    run = api.trigger(
        "flightdeck_train",
        {"train_start": plan.train_start, "train_end": plan.train_end, "reason": "demo: first champion"},
    )
    wait_ok(api, "flightdeck_train", run["dag_run_id"], plan.timeout, say)
    log.add("first_training", t, run_id=run["dag_run_id"])

    days = [d.isoformat() for d in parse_partitions(plan.days)]
    t = time.monotonic()
    say(f"upstream (simulated): delivering {days[0]}..{days[-1]} into the landing inbox ...")
    landing.feed(days[0], days[-1])
    say(f"daily runs: backfilling flightdeck_ingest over {days[0]}..{days[-1]} ...")
    backfill = api.backfill("flightdeck_ingest", days[0], days[-1])
    # A backfill's runs are created by the scheduler; follow them to the end.
    deadline = time.monotonic() + plan.timeout
    while time.monotonic() < deadline:
        runs = [r for r in api.runs("flightdeck_ingest") if r.get("run_type") == "backfill"]
        mine = [r for r in runs if (r.get("data_interval_start") or "")[:10] in days]
        if len(mine) >= len(days) and all(r["state"] in {"success", "failed"} for r in mine):
            bad = [r["data_interval_start"][:10] for r in mine if r["state"] != "success"]
            if bad:
                raise AirflowApiError(f"flightdeck_ingest failed for {bad}; see the Airflow UI")
            break
        time.sleep(5)
    else:
        raise AirflowApiError("the ingest backfill did not finish in time")
    log.add("daily_ingest", t, backfill_id=backfill.get("id"), days=days)

    t = time.monotonic()
    say("waiting for features, scoring, monitoring and any retraining to finish ...")
    chain = wait_chain(api, days, since, plan.timeout, say)
    log.add(
        "daily_chain",
        t,
        runs={dag: len(rs) for dag, rs in chain.items()},
        retrain_runs=[r["dag_run_id"] for r in chain["flightdeck_train"] if r.get("run_type") == "asset_triggered"],
    )
    return {"steps": log.steps, "seconds": round(time.monotonic() - started_all, 1), "days": days}


def parse_history(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``FIRST..LAST`` specs -> [(FIRST, LAST)], each checked to be one continuous range."""
    out = []
    for spec in specs:
        dates = parse_partitions(spec)
        out.append((dates[0].isoformat(), dates[-1].isoformat()))
        if len(dates) != (parse_date(dates[-1]) - parse_date(dates[0])).days + 1:
            raise LakeError(f"history {spec!r} must be one continuous range: write it as FIRST..LAST")
    return out
