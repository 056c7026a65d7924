"""The read model behind ``flightdeck status`` and the flightdeck page: one place that reads the platform's state.

Both views ask the same questions (what was ingested and quarantined per day, how drift moved,
which retrains were requested, how the aliases moved, who is champion and challenger, what was
scored last) and get their answers here as plain data, so they cannot disagree.

Lake reads go through :class:`flightdeck.core.lake.Lake` paths and pyarrow (parquet footers and
small columns, no Spark); the monitoring tables are read on local lakes only. JSON documents
(retrain requests, alias-ledger entries) are read by their planes' readers
(:func:`flightdeck.monitoring.documents.read_retrain_requests`,
:func:`flightdeck.model.registry.ledger_entries`) and handed on as the documents they are. The
MLflow and Airflow reads take their client as an argument, so the caller decides timeouts and retries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, json_exists, read_bytes
from flightdeck.data.documents import read_feature_statuses
from flightdeck.data.ingest import LEDGER_TABLE
from flightdeck.model import registry
from flightdeck.monitoring.documents import read_retrain_requests
from flightdeck.monitoring.drift import MONITORING_TABLE
from flightdeck.ops.airflow_api import AirflowApi, AirflowApiError

if TYPE_CHECKING:
    from flightdeck.core.tracking import Client as MlflowClient

log = logging.getLogger(__name__)

DAG_IDS = (
    "flightdeck_bootstrap",
    "flightdeck_ingest",
    "flightdeck_inbox",
    "flightdeck_features",
    "flightdeck_score",
    "flightdeck_monitor",
    "flightdeck_train",
    "flightdeck_rollback",
    "flightdeck_maintenance",
)
ALIASES = (registry.CHAMPION, registry.CHALLENGER)
MAX_VERSIONS = 50
PAGE_METRICS = frozenset({"roc_auc", "log_loss", "pr_auc", "rmse", "mae", "r2"})
SCORE_NAMES = frozenset({"probability", "prediction"})  # a prediction row's name: binary, regression

Row = dict[str, Any]


class RemoteLakeError(FlightdeckError):
    """The monitoring tables of a remote (S3) lake are not read here; use the MLflow and Airflow UIs."""


# --- monitoring tables (parquet, one partition per day) -------------------------------------------


def table_rows(lake: Lake, zone: str, table: str, columns: list[str] | None = None) -> list[Row]:
    """Rows of every committed partition of a small local table, each with its ``date`` (ISO string).

    Raises:
        RemoteLakeError: the lake is on S3 (these tables are read from a local folder only).
    """
    import pyarrow.parquet as pq

    if lake.is_remote:
        raise RemoteLakeError(f"monitoring tables are read from local lakes only, not {lake.root}")
    rows: list[Row] = []
    for date in lake.committed_partitions(zone, table):
        folder = Path(lake.partition(zone, table, date))
        for file in sorted(folder.glob("*.parquet")):
            rows.extend({"date": date.isoformat(), **row} for row in pq.read_table(file, columns=columns).to_pylist())
    return rows


def ingest_ledger(lake: Lake) -> list[Row]:
    """The ingest ledger (``monitoring/ingest_ledger``): rows in, valid and quarantined per source and day."""
    return table_rows(lake, "monitoring", LEDGER_TABLE)


def drift_rows(lake: Lake) -> list[Row]:
    """The drift statistics of every monitored day (``monitoring/drift_daily``)."""
    return table_rows(lake, "monitoring", MONITORING_TABLE)


def _partition_rows(lake: Lake, zone: str, table: str, date: dt.date) -> int:
    import pyarrow.parquet as pq

    folder = Path(lake.partition(zone, table, date))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet"))


def last_scored(lake: Lake, entity: str) -> Row | None:
    """The scored partitions of the entity: how many, the last one, its rows and model versions."""
    import pyarrow.parquet as pq

    scored = lake.committed_partitions("predictions", entity)
    if not scored:
        return None
    last = scored[-1]
    versions: set[str] = set()
    for file in Path(lake.partition("predictions", entity, last)).glob("*.parquet"):
        versions.update(str(v) for v in pq.read_table(file, columns=["model_version"]).column(0).to_pylist())
    return {
        "partitions": len(scored),
        "last_partition": last.isoformat(),
        "last_rows": _partition_rows(lake, "predictions", entity, last),
        "last_model_versions": sorted(versions),
        "total_rows": sum(_partition_rows(lake, "predictions", entity, d) for d in scored),
    }


# --- pure summaries of the tables ------------------------------------------------------------------


def quarantine_summary(ledger: Sequence[Mapping[str, Any]]) -> Row | None:
    """Totals of the ingest ledger, whether ``rows_in = rows_valid + rows_quarantined`` holds, the last rows."""
    if not ledger:
        return None
    return {
        "partitions": len({r["date"] for r in ledger}),
        "rows_in": sum(int(r["rows_in"]) for r in ledger),
        "rows_valid": sum(int(r["rows_valid"]) for r in ledger),
        "rows_quarantined": sum(int(r["rows_quarantined"]) for r in ledger),
        "reconciled": all(int(r["rows_in"]) == int(r["rows_valid"]) + int(r["rows_quarantined"]) for r in ledger),
        "last": [
            {k: r[k] for k in ("date", "source", "rows_in", "rows_valid", "rows_quarantined") if k in r}
            for r in ledger[-4:]
        ],
    }


def quarantine_per_day(ledger: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows in and quarantined per ingested day (all sources together), in ledger order."""
    by_day: dict[str, dict[str, int]] = {}
    for r in ledger:
        day = by_day.setdefault(str(r["date"]), {"rows_in": 0, "rows_quarantined": 0})
        day["rows_in"] += int(r.get("rows_in") or 0)
        day["rows_quarantined"] += int(r.get("rows_quarantined") or 0)
    return by_day


def _performance(last_rows: Sequence[Mapping[str, Any]]) -> Row | None:
    performance = {r["name"]: r for r in last_rows if r["kind"] == "performance"}
    auc = performance.get("roc_auc")
    rmse = performance.get("rmse")
    if auc is None and rmse is not None:  # a regression model: RMSE (judged) and MAE
        mae = performance.get("mae") or {}
        return {
            "labelled_day": rmse.get("data_date"),
            "rmse": rmse.get("observed"),
            "holdout_rmse": rmse.get("reference"),
            "rmse_rise": rmse.get("value"),
            "mae": mae.get("observed"),
            "holdout_mae": mae.get("reference"),
            "breached": any(bool(r.get("breached")) for r in performance.values()),
            "note": rmse.get("note") or "",
        }
    if auc is None:
        return None
    return {
        "labelled_day": auc.get("data_date"),
        "roc_auc": auc.get("observed"),
        "holdout_roc_auc": auc.get("reference"),
        "breached": any(bool(r.get("breached")) for r in performance.values()),
        "note": auc.get("note") or "",
    }


def drift_state(rows: Sequence[Mapping[str, Any]]) -> Row | None:
    """The last monitored window: drifted features (highest PSI first), prediction PSI, performance."""
    if not rows:
        return None
    last_date = max(r["date"] for r in rows)
    last_rows = [r for r in rows if r["date"] == last_date]
    drifted = sorted(
        (r for r in last_rows if r["kind"] == "feature" and r.get("breached")), key=lambda r: -float(r["value"] or 0)
    )
    prediction = next((r for r in last_rows if r["kind"] == "prediction"), None)  # probability or prediction
    return {
        "partitions": len({r["date"] for r in rows}),
        "last_partition": last_date,
        "last_drifted": {r["name"]: round(float(r["value"]), 3) for r in drifted},
        "last_statistics": len(last_rows),
        "prediction_psi": None if prediction is None or prediction["value"] is None else round(prediction["value"], 3),
        "performance": _performance(last_rows),
        "breached_days": sorted({r["date"] for r in rows if r.get("breached")}),
    }


def drift_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, float | None]]]:
    """Drift over time from ``drift_daily`` rows: drifted share, prediction PSI, AUC drop (a regression
    model: the relative RMSE rise)."""
    picks: dict[str, tuple[str, frozenset[str]]] = {
        "drifted share": ("features", frozenset({"drifted_share"})),
        "prediction PSI": ("prediction", SCORE_NAMES),
        "AUC drop": ("performance", frozenset({"roc_auc"})),
        "RMSE rise": ("performance", frozenset({"rmse"})),
    }
    out: dict[str, list[tuple[str, float | None]]] = {label: [] for label in picks}
    for row in rows:
        for label, (kind, names) in picks.items():
            if row.get("kind") == kind and row.get("name") in names:
                out[label].append((str(row["date"]), None if row.get("value") is None else float(row["value"])))
    return {k: v for k, v in out.items() if v}


def highest_psi(rows: Sequence[Mapping[str, Any]], top: int = 8) -> tuple[str | None, list[Row]]:
    """The last monitored day and its features with the highest PSI (highest first)."""
    if not rows:
        return None, []
    last = max(str(r["date"]) for r in rows)
    features = sorted(
        (dict(r) for r in rows if str(r["date"]) == last and r.get("kind") == "feature" and r.get("value") is not None),
        key=lambda r: -float(r["value"]),
    )
    return last, features[:top]


# --- JSON documents: retrain requests, the alias ledger, alerts, drift reports ---------------------


def retrain_requests(lake: Lake) -> list[Row]:
    """Every retrain request (``monitoring/retrain_requests/D.json``) as its document, oldest partition first."""
    return [request.to_doc() for request in read_retrain_requests(lake)]


def degraded_features(lake: Lake) -> list[Row]:
    """Feature partitions built without some upstream days (``monitoring/feature_status/D.json``), newest first.

    Each row: ``partition``, ``missing_days`` and ``missing`` (day -> bronze tables), ``run``. A
    partition rebuilt complete is no longer listed.
    """
    return [
        {**status.model_dump(), "missing_days": status.missing_days}
        for status in reversed(read_feature_statuses(lake))
        if status.degraded
    ]


def alias_ledger(lake: Lake, name: str) -> list[Row]:
    """The recorded alias moves of the model (``monitoring/promotions``) as their documents, oldest first."""
    return [entry.to_json() for entry in registry.ledger_entries(name, lake=lake)]


def retention_runs(lake: Lake, name: str, last: int = 10) -> list[Row]:
    """The last retention runs of the model (``monitoring/promotions/<model>-retention-<seq>.json``), newest first."""
    from flightdeck.model.retention import retention_records

    return [record.to_json() for record in reversed(retention_records(name, lake=lake)[-last:])]


def champion_moves(ledger: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The champion's moves (promotions and rollbacks); the ledger also records challenger moves."""
    return [dict(m) for m in ledger if m.get("alias", "champion") == "champion"]


def ledger_heads(ledger: Sequence[Mapping[str, Any]]) -> dict[str, Row | None]:
    """Where each alias points by the ledger's last entry (known without MLflow)."""
    heads: dict[str, Row | None] = {}
    for alias in ALIASES:
        moves = [m for m in ledger if m.get("alias", "champion") == alias]
        last = max(moves, key=lambda r: int(r.get("seq", 0))) if moves else None
        heads[alias] = (
            None
            if last is None
            else {"version": str(last.get("to", last.get("version"))), "at": last.get("at"), "who": last.get("who")}
        )
    return heads


def recent_alerts(cfg: PipelineConfig, lake: Lake, last: int = 5) -> Row | None:
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


def drift_report_html(lake: Lake, date: dt.date) -> str | None:
    """The HTML drift report of one monitored day, None when that day has none (local or S3)."""
    path = lake.drift_report(date, "html")
    if not json_exists(path):  # a plain existence check
        return None
    return read_bytes(path).decode("utf-8")


# --- MLflow registry and Airflow runs (clients given by the caller) --------------------------------


def registry_summary(name: str, client: MlflowClient) -> Row:
    """Champion and challenger of a model with their holdout metrics and gate tags.

    Raises:
        Exception: whatever the MLflow client raises when the registry cannot be read.
    """
    versions = client.search_model_versions(f"name='{name}'")
    result: Row = {"name": name, "versions": len(versions)}
    for alias in ALIASES:
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except Exception:  # mlflow raises its own exception types per store: no such alias
            result[alias] = None
            continue
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        result[alias] = {
            "version": mv.version,
            "run_id": mv.run_id,
            "metrics": {k: round(v, 4) for k, v in sorted(metrics.items()) if not k.startswith("champion_")},
            "tags": {k: v for k, v in (mv.tags or {}).items() if k.startswith(("gate", "train", "reason"))},
        }
    return result


def model_versions(name: str, client: MlflowClient) -> list[Row]:
    """Every version of the model (newest first) with aliases, gate tags and holdout metrics."""
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))[:MAX_VERSIONS]
    # search results carry no aliases in MLflow 3; the registered model has them all
    by_version: dict[str, list[str]] = {}
    if versions:
        for alias, version in (client.get_registered_model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        metrics: dict[str, float] = {}
        experiment_id = None
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                metrics = {k: v for k, v in run.data.metrics.items() if k in PAGE_METRICS}
                experiment_id = run.info.experiment_id
            except Exception as err:  # a deleted run leaves the version listed
                log.info("run %s of %s v%s unreadable: %s", mv.run_id, name, mv.version, err)
        out.append(
            {
                "version": str(mv.version),
                "run_id": mv.run_id,
                "experiment_id": experiment_id,
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "created": int(mv.creation_timestamp or 0),
                "metrics": metrics,
                "tags": dict(mv.tags or {}),
            }
        )
    return out


def _last_run(run: Mapping[str, Any] | None) -> Row | None:
    if run is None:
        return None
    return {
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "partition_key": run.get("partition_key"),
        "run_type": run.get("run_type"),
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
    }


def dag_runs(api: AirflowApi) -> Row:
    """The last run of each flightdeck DAG, and how many training runs drift triggered."""
    try:
        dags: Row = {}
        drift_trainings = 0
        for dag_id in DAG_IDS:
            runs = api.runs(dag_id, limit=100)
            dags[dag_id] = {
                "runs": len(runs),
                "last_run": _last_run(runs[0] if runs else None),
                "states": {s: sum(1 for r in runs if r["state"] == s) for s in {r["state"] for r in runs}},
            }
            if dag_id == "flightdeck_train":
                drift_trainings = sum(1 for r in runs if r.get("run_type") == "asset_triggered")
        return {"reachable": True, "dags": dags, "drift_triggered_trainings": drift_trainings}
    except AirflowApiError as err:
        return {"reachable": False, "error": str(err)}
