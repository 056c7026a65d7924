"""Where the pipeline stands: last runs, champion and challenger, scoring, quarantine, drift.

:func:`collect` asks the read model (:mod:`flightdeck.ops.readmodel`) for the Airflow runs, the
MLflow registry and the lake, and degrades gracefully: a service that does not answer (see
:mod:`flightdeck.ops.health`) is skipped and reported as not running, and everything the lake
holds (ingest counts, quarantine, drift, retrain requests, the alias ledger) is still shown.
:func:`render` turns the result into the text ``flightdeck status`` prints, one section at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.lake import Lake
from flightdeck.ops import readmodel
from flightdeck.ops.airflow_api import AirflowApi
from flightdeck.ops.health import ServiceState

log = logging.getLogger(__name__)

Section = dict[str, Any]


def _not_running(state: ServiceState) -> Section:
    return {"reachable": False, "down": True, "url": state.url, "error": state.not_running()}


def airflow_status(api: AirflowApi | None, service: ServiceState | None = None) -> Section:
    """The last run of each flightdeck DAG; a stopped api-server or a missing login is reported instead."""
    if service is not None and not service.up:
        return _not_running(service)
    if api is None:
        return {"reachable": False, "error": "no login found"}
    return readmodel.dag_runs(api)


def model_status(cfg: PipelineConfig, service: ServiceState | None = None) -> Section:
    """Champion and challenger versions with their holdout metrics and gate decisions, from MLflow."""
    if service is not None and not service.up:
        return _not_running(service)
    try:
        from flightdeck.core import tracking

        summary = readmodel.registry_summary(cfg.model.name, tracking.client())
        return {"reachable": True, "task": cfg.model.task, **summary}
    except Exception as err:  # mlflow raises its own exception types per store
        return {"reachable": False, "error": str(err)}


def lake_status(cfg: PipelineConfig) -> Section:
    """Scored partitions, quarantine ledger, drift state, retrain requests and the alias ledger, from the lake."""
    lake = Lake(cfg.lake.root)
    if lake.is_remote:
        return {"note": "lake status reads local lakes only; use the MLflow and Airflow UIs for remote lakes"}
    ledger = readmodel.alias_ledger(lake, cfg.model.name)
    return {
        "root": lake.root,
        "scoring": readmodel.last_scored(lake, cfg.dataset.entity.name),
        "quarantine": readmodel.quarantine_summary(readmodel.ingest_ledger(lake)),
        "drift": readmodel.drift_state(readmodel.drift_rows(lake)),
        "retrain_requests": readmodel.retrain_requests(lake),
        "promotions": readmodel.champion_moves(ledger),
        "ledger_aliases": readmodel.ledger_heads(ledger),
        "alerts": readmodel.recent_alerts(cfg, lake),
    }


def collect(
    cfg: PipelineConfig, api: AirflowApi | None, services: Mapping[str, ServiceState] | None = None
) -> dict[str, Any]:
    """Everything ``flightdeck status`` shows.

    ``services`` are the probes of Airflow and MLflow (keys ``airflow`` and ``mlflow``); a service
    probed down is not called at all. Without probes both are called (the demo knows they run).
    """
    services = services or {}
    out: dict[str, Any] = {
        "airflow": airflow_status(api, services.get("airflow")),
        "model": model_status(cfg, services.get("mlflow")),
        "lake": lake_status(cfg),
    }
    if services:
        out["services"] = {key: state.model_dump() for key, state in services.items()}
    return out


# --- render: one function per section -------------------------------------------------------------


def _unreachable(part: Mapping[str, Any]) -> str:
    return f"  {part['error']}" if part.get("down") else f"  unreachable: {part.get('error')}"


def _render_airflow(af: Mapping[str, Any]) -> list[str]:
    if not af.get("reachable"):
        return ["Airflow", _unreachable(af)]
    lines = ["Airflow"]
    for dag_id, info in af["dags"].items():
        last = info["last_run"]
        where = f"{last['state']:<8} {last.get('partition_key') or last['run_id']}" if last else "never ran"
        lines.append(f"  {dag_id:<22} {info['runs']:>3} runs  last: {where}")
    lines.append(f"  training runs triggered by drift: {af['drift_triggered_trainings']}")
    return lines


def _holdout_text(task: str, metrics: Mapping[str, Any]) -> str:
    """The task's holdout metrics: AUC (binary); RMSE, MAE and R² (regression)."""
    if task == "regression":
        return f"holdout RMSE {metrics.get('rmse')}  MAE {metrics.get('mae')}  R² {metrics.get('r2')}"
    return f"holdout AUC {metrics.get('roc_auc')}"


def _render_model(model: Mapping[str, Any]) -> list[str]:
    if not model.get("reachable"):
        return ["Model", _unreachable(model)]
    task = str(model.get("task") or "binary")
    lines = ["Model", f"  {model['name']}: {model['versions']} versions" + (f" ({task})" if task != "binary" else "")]
    for alias in readmodel.ALIASES:
        info = model.get(alias)
        if info:
            lines.append(f"  {alias:<10} v{info['version']}  {_holdout_text(task, info['metrics'])}")
        else:
            lines.append(f"  {alias:<10} none")
    return lines


def _render_scoring(sc: Mapping[str, Any] | None) -> list[str]:
    if not sc:
        return ["  scored: nothing yet"]
    return [
        f"  scored: {sc['partitions']} partitions, {sc['total_rows']} rows; last {sc['last_partition']} "
        f"({sc['last_rows']} rows, model versions {', '.join(sc['last_model_versions'])})"
    ]


def _render_quarantine(q: Mapping[str, Any] | None) -> list[str]:
    if not q:
        return []
    return [
        f"  ingested: {q['rows_in']} rows in = {q['rows_valid']} valid + {q['rows_quarantined']} quarantined "
        f"over {q['partitions']} partitions ({'reconciled' if q['reconciled'] else 'NOT RECONCILED'})"
    ]


def _render_drift(d: Mapping[str, Any] | None) -> list[str]:
    if not d:
        return []
    drifted = ", ".join(f"{k} {v}" for k, v in d["last_drifted"].items()) or "none"
    lines = [f"  drift: last {d['last_partition']}: drifted {drifted}"]
    if d.get("prediction_psi") is not None:
        lines.append(f"    prediction PSI {d['prediction_psi']}")
    perf = d.get("performance")
    if perf and perf.get("rmse") is not None:
        flag = "  BREACHED" if perf.get("breached") else ""
        holdout = perf.get("holdout_rmse")
        rise = perf.get("rmse_rise")
        lines.append(
            f"    RMSE on labels of {perf['labelled_day']}: {perf['rmse']:.4g} "
            f"(holdout {holdout if holdout is None else format(holdout, '.4g')}"
            f"{'' if rise is None else f', rise {rise:+.1%}'}), MAE {perf.get('mae') or float('nan'):.4g}{flag}"
        )
    elif perf and perf.get("roc_auc") is not None:
        flag = "  BREACHED" if perf.get("breached") else ""
        lines.append(
            f"    AUC on labels of {perf['labelled_day']}: {perf['roc_auc']:.3f} "
            f"(holdout {perf.get('holdout_roc_auc') or float('nan'):.3f}){flag}"
        )
    elif perf:
        lines.append(f"    performance on {perf['labelled_day']}: {perf['note']}")
    return lines


def _render_requests(requests: list[Mapping[str, Any]]) -> list[str]:
    lines = [f"  retrain requests: {len(requests)}"]
    for req in requests[-3:]:
        state = "consumed" if req.get("consumed_by") else "open"
        lines.append(f"    {req['partition']} ({state}): {req['reason']}")
    return lines


def _render_ledger(promotions: list[Any], heads: Mapping[str, Any] | None) -> list[str]:
    lines = [f"  promotions: {len(promotions)}"]
    moved = {alias: head for alias, head in (heads or {}).items() if head}
    if moved:
        where = ", ".join(
            f"{alias} v{head['version']} (since {str(head.get('at'))[:19]})" for alias, head in moved.items()
        )
        lines.append(f"  alias ledger: {where}")
    return lines


def _render_alerts(al: Mapping[str, Any] | None) -> list[str]:
    if not al:
        return []
    per_event = ", ".join(f"{k} {v}" for k, v in sorted(al["events"].items()))
    lines = [f"  alerts: {al['count']} ({per_event}) in {al['file']}"]
    lines += [f"    {a['at'][:19]} {a['event']}: {a['summary'][:150]}" for a in al["last"][-3:]]
    return lines


def _render_lake(lk: Mapping[str, Any]) -> list[str]:
    if "note" in lk:
        return ["Lake", f"  {lk['note']}"]
    return [
        "Lake",
        *_render_scoring(lk.get("scoring")),
        *_render_quarantine(lk.get("quarantine")),
        *_render_drift(lk.get("drift")),
        *_render_requests(lk.get("retrain_requests", [])),
        *_render_ledger(lk.get("promotions", []), lk.get("ledger_aliases")),
        *_render_alerts(lk.get("alerts")),
    ]


def render(status: Mapping[str, Any]) -> str:
    """A human-readable summary of :func:`collect`: Airflow, Model, Lake."""
    return "\n".join(
        [*_render_airflow(status["airflow"]), *_render_model(status["model"]), *_render_lake(status["lake"])]
    )


def to_json(status: Mapping[str, Any]) -> str:
    """The status as JSON for machines (``flightdeck status --json``)."""
    return json.dumps(status, indent=2, sort_keys=True, default=str)
