"""Where the pipeline stands: last runs, champion and challenger, scoring, quarantine, drift.

Reads the Airflow REST API, the MLflow registry and the lake (parquet footers and
small columns through pyarrow, no Spark), and degrades gracefully: a part that
cannot be reached is reported as such instead of failing the whole status.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.lake import Lake, list_docs, read_json
from flightdeck.ops.airflow_api import AirflowApi, AirflowApiError

log = logging.getLogger(__name__)

DAG_IDS = (
    "flightdeck_bootstrap",
    "flightdeck_ingest",
    "flightdeck_features",
    "flightdeck_score",
    "flightdeck_monitor",
    "flightdeck_train",
    "flightdeck_rollback",
)


def _read_table(lake: Lake, zone: str, table: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of every committed partition of a small table, with its ``date``."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for date in lake.committed_partitions(zone, table):
        folder = Path(lake.partition(zone, table, date))
        for file in sorted(folder.glob("*.parquet")):
            for row in pq.read_table(file, columns=columns).to_pylist():
                rows.append({"date": date.isoformat(), **row})
    return rows


def _partition_rows(lake: Lake, zone: str, table: str, date: Any) -> int:
    import pyarrow.parquet as pq

    folder = Path(lake.partition(zone, table, date))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet"))


def airflow_status(api: AirflowApi) -> dict[str, Any]:
    """The last run of each flightdeck DAG, and how many training runs drift triggered."""
    try:
        dags: dict[str, Any] = {}
        drift_trainings = 0
        for dag_id in DAG_IDS:
            runs = api.runs(dag_id, limit=100)
            last = runs[0] if runs else None
            dags[dag_id] = {
                "runs": len(runs),
                "last_run": (
                    {
                        "run_id": last["dag_run_id"],
                        "state": last["state"],
                        "partition_key": last.get("partition_key"),
                        "run_type": last.get("run_type"),
                        "start_date": last.get("start_date"),
                        "end_date": last.get("end_date"),
                    }
                    if last
                    else None
                ),
                "states": {s: sum(1 for r in runs if r["state"] == s) for s in {r["state"] for r in runs}},
            }
            if dag_id == "flightdeck_train":
                drift_trainings = sum(1 for r in runs if r.get("run_type") == "asset_triggered")
        return {"reachable": True, "dags": dags, "drift_triggered_trainings": drift_trainings}
    except AirflowApiError as err:
        return {"reachable": False, "error": str(err)}


def model_status(cfg: PipelineConfig) -> dict[str, Any]:
    """Champion and challenger versions with their holdout metrics and gate decisions."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient()
        result: dict[str, Any] = {"name": cfg.model.name, "versions": 0}
        try:
            versions = client.search_model_versions(f"name='{cfg.model.name}'")
        except Exception as err:  # mlflow raises its own exception types per store
            return {"reachable": False, "error": str(err)}
        result["versions"] = len(versions)
        for alias in ("champion", "challenger"):
            try:
                mv = client.get_model_version_by_alias(cfg.model.name, alias)
            except Exception:
                result[alias] = None
                continue
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            result[alias] = {
                "version": mv.version,
                "run_id": mv.run_id,
                "metrics": {k: round(v, 4) for k, v in sorted(metrics.items()) if not k.startswith("champion_")},
                "tags": {k: v for k, v in (mv.tags or {}).items() if k.startswith(("gate", "train", "reason"))},
            }
        return {"reachable": True, **result}
    except Exception as err:
        return {"reachable": False, "error": str(err)}


def lake_status(cfg: PipelineConfig) -> dict[str, Any]:
    """Scored partitions, quarantine ledger, drift state and retrain requests, from the lake."""
    lake = Lake(cfg.lake.root)
    if lake.is_remote:
        return {"note": "lake status reads local lakes only; use the MLflow and Airflow UIs for remote lakes"}
    entity = cfg.dataset.entity.name
    out: dict[str, Any] = {"root": lake.root}

    scored = lake.committed_partitions("predictions", entity)
    if scored:
        import pyarrow.parquet as pq

        last = scored[-1]
        versions: set[str] = set()
        for file in Path(lake.partition("predictions", entity, last)).glob("*.parquet"):
            versions.update(str(v) for v in pq.read_table(file, columns=["model_version"]).column(0).to_pylist())
        out["scoring"] = {
            "partitions": len(scored),
            "last_partition": last.isoformat(),
            "last_rows": _partition_rows(lake, "predictions", entity, last),
            "last_model_versions": sorted(versions),
            "total_rows": sum(_partition_rows(lake, "predictions", entity, d) for d in scored),
        }
    else:
        out["scoring"] = None

    ledger = _read_table(lake, "monitoring", "ingest_ledger")
    if ledger:
        rows_in = sum(int(r["rows_in"]) for r in ledger)
        valid = sum(int(r["rows_valid"]) for r in ledger)
        quarantined = sum(int(r["rows_quarantined"]) for r in ledger)
        out["quarantine"] = {
            "partitions": len({r["date"] for r in ledger}),
            "rows_in": rows_in,
            "rows_valid": valid,
            "rows_quarantined": quarantined,
            "reconciled": all(int(r["rows_in"]) == int(r["rows_valid"]) + int(r["rows_quarantined"]) for r in ledger),
            "last": [
                {k: r[k] for k in ("date", "source", "rows_in", "rows_valid", "rows_quarantined") if k in r}
                for r in ledger[-4:]
            ],
        }
    else:
        out["quarantine"] = None

    out["drift"] = drift_state(lake)
    out["retrain_requests"] = [read_json(p) for p in list_docs(lake.retrain_requests())]
    # the alias ledger also records challenger moves; promotions are the champion's moves
    moves = [read_json(p) for p in list_docs(lake.promotions())]
    out["promotions"] = [m for m in moves if m.get("alias", "champion") == "champion"]
    out["alerts"] = recent_alerts(cfg, lake)
    return out


def recent_alerts(cfg: PipelineConfig, lake: Lake, last: int = 5) -> dict[str, Any] | None:
    """How many alerts the JSON-lines file holds, per event, and the last few."""
    from flightdeck.core.alerts import alerts_file

    target = alerts_file(cfg.alerts, lake)
    if target is None or not Path(target).is_file():
        return None
    alerts = [json.loads(line) for line in Path(target).read_text().splitlines() if line.strip()]
    events: dict[str, int] = {}
    for a in alerts:
        events[a["event"]] = events.get(a["event"], 0) + 1
    return {"file": target, "count": len(alerts), "events": events, "last": alerts[-last:]}


def drift_state(lake: Lake) -> dict[str, Any] | None:
    """The last monitored window from ``monitoring/drift_daily``: drifted features, score and performance."""
    rows = _read_table(lake, "monitoring", "drift_daily")
    if not rows:
        return None
    last_date = max(r["date"] for r in rows)
    last_rows = [r for r in rows if r["date"] == last_date]
    drifted = sorted(
        (r for r in last_rows if r["kind"] == "feature" and r.get("breached")), key=lambda r: -float(r["value"] or 0)
    )
    prediction = next((r for r in last_rows if r["kind"] == "prediction"), None)
    performance = {r["name"]: r for r in last_rows if r["kind"] == "performance"}
    auc = performance.get("roc_auc")
    return {
        "partitions": len({r["date"] for r in rows}),
        "last_partition": last_date,
        "last_drifted": {r["name"]: round(float(r["value"]), 3) for r in drifted},
        "last_statistics": len(last_rows),
        "prediction_psi": None if prediction is None or prediction["value"] is None else round(prediction["value"], 3),
        "performance": None
        if auc is None
        else {
            "labelled_day": auc.get("data_date"),
            "roc_auc": auc.get("observed"),
            "holdout_roc_auc": auc.get("reference"),
            "breached": any(bool(r.get("breached")) for r in performance.values()),
            "note": auc.get("note") or "",
        },
        "breached_days": sorted({r["date"] for r in rows if r.get("breached")}),
    }


def collect(cfg: PipelineConfig, api: AirflowApi | None) -> dict[str, Any]:
    """Everything ``flightdeck status`` shows."""
    return {
        "airflow": airflow_status(api) if api is not None else {"reachable": False, "error": "no login found"},
        "model": model_status(cfg),
        "lake": lake_status(cfg),
    }


def render(status: dict[str, Any]) -> str:
    """A human-readable summary of :func:`collect`."""
    lines: list[str] = []
    af = status["airflow"]
    lines.append("Airflow")
    if af.get("reachable"):
        for dag_id, info in af["dags"].items():
            last = info["last_run"]
            where = f"{last['state']:<8} {last.get('partition_key') or last['run_id']}" if last else "never ran"
            lines.append(f"  {dag_id:<22} {info['runs']:>3} runs  last: {where}")
        lines.append(f"  training runs triggered by drift: {af['drift_triggered_trainings']}")
    else:
        lines.append(f"  unreachable: {af.get('error')}")
    model = status["model"]
    lines.append("Model")
    if model.get("reachable"):
        lines.append(f"  {model['name']}: {model['versions']} versions")
        for alias in ("champion", "challenger"):
            info = model.get(alias)
            if info:
                auc = info["metrics"].get("roc_auc")
                lines.append(f"  {alias:<10} v{info['version']}  holdout AUC {auc}")
            else:
                lines.append(f"  {alias:<10} none")
    else:
        lines.append(f"  unreachable: {model.get('error')}")
    lk = status["lake"]
    lines.append("Lake")
    if "note" in lk:
        lines.append(f"  {lk['note']}")
        return "\n".join(lines)
    sc = lk.get("scoring")
    if sc:
        lines.append(
            f"  scored: {sc['partitions']} partitions, {sc['total_rows']} rows; last {sc['last_partition']} "
            f"({sc['last_rows']} rows, model versions {', '.join(sc['last_model_versions'])})"
        )
    else:
        lines.append("  scored: nothing yet")
    q = lk.get("quarantine")
    if q:
        lines.append(
            f"  ingested: {q['rows_in']} rows in = {q['rows_valid']} valid + {q['rows_quarantined']} quarantined "
            f"over {q['partitions']} partitions ({'reconciled' if q['reconciled'] else 'NOT RECONCILED'})"
        )
    d = lk.get("drift")
    if d:
        drifted = ", ".join(f"{k} {v}" for k, v in d["last_drifted"].items()) or "none"
        lines.append(f"  drift: last {d['last_partition']}: drifted {drifted}")
        if d.get("prediction_psi") is not None:
            lines.append(f"    prediction PSI {d['prediction_psi']}")
        perf = d.get("performance")
        if perf and perf.get("roc_auc") is not None:
            flag = "  BREACHED" if perf.get("breached") else ""
            lines.append(
                f"    AUC on labels of {perf['labelled_day']}: {perf['roc_auc']:.3f} "
                f"(holdout {perf.get('holdout_roc_auc') or float('nan'):.3f}){flag}"
            )
        elif perf:
            lines.append(f"    performance on {perf['labelled_day']}: {perf['note']}")
    lines.append(f"  retrain requests: {len(lk.get('retrain_requests', []))}")
    for req in lk.get("retrain_requests", [])[-3:]:
        state = "consumed" if req.get("consumed_by") else "open"
        lines.append(f"    {req['partition']} ({state}): {req['reason']}")
    lines.append(f"  promotions: {len(lk.get('promotions', []))}")
    al = lk.get("alerts")
    if al:
        per_event = ", ".join(f"{k} {v}" for k, v in sorted(al["events"].items()))
        lines.append(f"  alerts: {al['count']} ({per_event}) in {al['file']}")
        for a in al["last"][-3:]:
            lines.append(f"    {a['at'][:19]} {a['event']}: {a['summary'][:150]}")
    return "\n".join(lines)


def to_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=True, default=str)
