"""The Python tasks of the DAGs, as plain functions over plain data.

DAG files wrap these with ``@task``; everything here takes and returns JSON-able
values (paths, ids, metrics, decisions), never data frames. Heavy imports
(mlflow, pandas) happen inside the functions, at run time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from flightdeck.config import PipelineConfig, load_config
from flightdeck.lake import Lake, list_docs, parse_date, read_json, write_json

log = logging.getLogger(__name__)

RETRAIN_FOLDER = ("monitoring", "retrain_requests")
DRIFT_REPORTS = ("monitoring", "drift_reports")


def _env() -> tuple[PipelineConfig, Lake]:
    cfg = load_config()
    return cfg, Lake(cfg.lake.root)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


# --- landing -----------------------------------------------------------------------------


def land_partition(partition: str) -> dict[str, Any]:
    """Land one day's raw files (and the reference tables when missing) into the landing zone."""
    from flightdeck import landing

    cfg, lake = _env()
    date = parse_date(partition)
    if not (cfg.dataset.partition_start <= date <= cfg.dataset.partition_end):
        raise ValueError(
            f"partition {date} is outside the dataset's range "
            f"{cfg.dataset.partition_start}..{cfg.dataset.partition_end} (dataset.partition_start/end)"
        )
    refs = landing.land_reference(cfg, lake)
    rows = landing.land_day(cfg, lake, date)
    log.info("landed %s: %s (references %s)", date, rows, refs)
    return {"partition": date.isoformat(), "rows": rows, "references": refs}


def land_history(first: str, last: str) -> dict[str, Any]:
    """Land every day from first to last (inclusive) in one pass over the source."""
    from flightdeck import landing

    cfg, lake = _env()
    start, end = parse_date(first), parse_date(last)
    if end < start:
        raise ValueError(f"history range ends ({end}) before it starts ({start})")
    refs = landing.land_reference(cfg, lake)
    rows = landing.land_range(cfg, lake, start, end)
    return {"first": start.isoformat(), "last": end.isoformat(), "rows": rows, "references": refs}


def run_result(run_key: str, name: str) -> dict[str, Any]:
    """The hand-off document a job wrote for this run (e.g. 'ingest', 'train', 'drift')."""
    _, lake = _env()
    return dict(read_json(lake.run_doc(run_key, name)))


# --- training ----------------------------------------------------------------------------


def training_window(
    partition_key: str | None, params: Mapping[str, Any], request: Mapping[str, Any] | None, cfg: PipelineConfig
) -> dict[str, str]:
    """The training window of a run: from a retrain request's partition, else from the Params.

    A retrain request for partition D trains on the ``retrain_window_days`` days ending at D
    (day D's outcomes are known once it has been scored). A manual run uses the Params,
    which default to the config's first training window.
    """
    if partition_key:
        end = parse_date(partition_key)
        start = end - dt.timedelta(days=cfg.model.retrain_window_days - 1)
        reason = str((request or {}).get("reason") or f"retrain requested for {end}")
        return {"train_start": start.isoformat(), "train_end": end.isoformat(), "reason": reason}
    start = parse_date(str(params.get("train_start") or cfg.model.train_start))
    end = parse_date(str(params.get("train_end") or cfg.model.train_end))
    if end < start:
        raise ValueError(f"train_end {end} is before train_start {start}")
    reason = str(params.get("reason") or "manual training run")
    return {"train_start": start.isoformat(), "train_end": end.isoformat(), "reason": reason}


def resolve_champion() -> str | None:
    """The current champion version, resolved once per run (None before the first promotion)."""
    from flightdeck import registry

    cfg, _ = _env()
    return registry.champion_version(cfg.model.name)


def gate_candidate(run_key: str) -> dict[str, Any]:
    """Apply the evaluation gate to this run's candidate and record the decision on its version.

    The evaluation document holds both models' metrics on the same frozen holdout, the
    per-slice AUCs and the bootstrap interval of the AUC difference; the decision is pure.
    """
    from flightdeck import gate, registry

    cfg, lake = _env()
    evaluation = read_json(lake.run_doc(run_key, "evaluate"))
    candidate = evaluation["candidate"]
    champion = evaluation.get("champion")
    comparison = evaluation.get("comparison") or {}
    ci = comparison.get("auc_diff_ci")
    decision = gate.decide(
        candidate["metrics"],
        champion["metrics"] if champion else None,
        cfg.gate,
        slices=comparison.get("slices") if champion else None,
        auc_diff_ci=(ci["low"], ci["high"]) if champion and ci else None,
    )
    registry.tag_decision(cfg.model.name, str(candidate["version"]), decision)
    result = {
        "candidate_version": str(candidate["version"]),
        "champion_version": str(champion["version"]) if champion else None,
        "candidate_roc_auc": candidate["metrics"].get("roc_auc"),
        "champion_roc_auc": champion["metrics"].get("roc_auc") if champion else None,
        **_plain(decision),
    }
    write_json(lake.run_doc(run_key, "gate"), result)
    log.info(
        "gate for version %s (champion %s): %s",
        candidate["version"],
        result["champion_version"] or "none",
        "PASS" if decision.passed else "FAIL",
    )
    for reason in decision.reasons:
        log.info("  %s", reason)
    return result


def promote_candidate(run_key: str, decision: Mapping[str, Any], who: str | None = None) -> dict[str, Any]:
    """Move the ``champion`` alias to the candidate, if the champion is still the one it was compared with.

    Raises:
        registry.PromotionConflict: another run moved the champion since evaluation (nothing moved).
    """
    from flightdeck import registry

    cfg, lake = _env()
    if not decision.get("passed"):
        raise ValueError(f"gate did not pass for version {decision.get('candidate_version')}; refusing to promote")
    record = registry.promote(
        cfg.model.name,
        str(decision["candidate_version"]),
        expected_current=decision.get("champion_version"),
        decision_ref=run_key,
        why="gate passed: " + "; ".join(decision.get("reasons", [])),
        who=who,
        lake=lake,
    )
    write_json(lake.run_doc(run_key, "promote"), record)
    if not record.get("noop"):
        from flightdeck import alerts

        summary = f"{cfg.model.name} champion v{record.get('previous')} -> v{record['version']}"
        alerts.notify(alerts.PROMOTION, summary, record, cfg=cfg)
    return dict(record)


def rollback_champion(to_version: str | None = None, reason: str = "", who: str | None = None) -> dict[str, Any]:
    """Restore the previous champion, or the named version."""
    from flightdeck import alerts, registry

    cfg, lake = _env()
    record = dict(
        registry.rollback(cfg.model.name, to_version=to_version or None, why=reason or None, who=who, lake=lake)
    )
    summary = f"{cfg.model.name} champion rolled back v{record.get('previous')} -> v{record.get('version')}"
    alerts.notify(alerts.ROLLBACK, summary, record, cfg=cfg)
    return record


def airflow_actor(dag_run: Any) -> str:
    """Who started an Airflow run: the triggering user, else the run type (scheduler, asset, ...)."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return f"airflow:{user}"
    return f"airflow:{getattr(dag_run, 'run_type', 'unknown')}:{getattr(dag_run, 'run_id', '')}"


# --- monitoring --------------------------------------------------------------------------


def retrain_history(lake: Lake) -> list[dict[str, Any]]:
    """Every retrain request recorded so far, oldest first."""
    return [dict(read_json(path)) for path in list_docs(lake.path(*RETRAIN_FOLDER))]


def drift_windows(lake: Lake) -> list[dict[str, Any]]:
    """Every monitored window so far (the drift reports ``monitoring/drift_reports/D.json``)."""
    return [dict(read_json(path)) for path in list_docs(lake.path(*DRIFT_REPORTS))]


def decide_retrain(partition: str, run_key: str) -> dict[str, Any]:
    """Apply the drift policy to this window and the history (a pure decision, with a reason)."""
    from flightdeck import drift

    cfg, lake = _env()
    report = dict(read_json(lake.run_doc(run_key, "detect_drift")))
    day = parse_date(partition)
    report.setdefault("date", day.isoformat())
    windows = [w for w in drift_windows(lake) if w.get("date") != day.isoformat()] + [report]
    requests = mark_consumed_requests(cfg, lake, retrain_history(lake))
    history = drift.History(day=day, windows=windows, requests=requests)
    decision = drift.should_retrain(history, cfg.drift)
    result = {"partition": partition, **_plain(decision)}
    log.info("drift policy for %s: retrain=%s: %s", partition, decision.retrain, decision.reason)
    return result


def record_retrain_request(partition: str, decision: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Write the retrain request to the lake (open until a training run consumes it) and alert.

    Its content becomes the asset event's extra.
    """
    from flightdeck import alerts

    cfg, lake = _env()
    details = decision.get("details") or {}
    request = {
        "partition": partition,
        "reason": decision["reason"],
        "features": decision.get("features", {}),
        "breaches": details.get("breaches", []),
        "monitoring_run": run_id,
    }
    write_json(lake.path(*RETRAIN_FOLDER, f"{parse_date(partition).isoformat()}.json"), request)
    alerts.notify(
        alerts.RETRAIN_REQUESTED, f"retrain requested for {partition}: {decision['reason']}", request, cfg=cfg
    )
    return request


def mark_consumed_requests(cfg: PipelineConfig, lake: Lake, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark open requests consumed when MLflow has a training run whose window ends at their partition.

    A drift-triggered training run for partition D trains on the window ending at D (its
    ``train_end`` param), so such a run consuming the request is visible without the training
    DAG writing anything. Found consumers are written back to the request documents. When MLflow
    cannot be asked the requests stay as they are (open: the conservative side).
    """
    open_ = [r for r in requests if "partition" in r and not r.get("consumed_by")]
    if not open_:
        return requests
    try:
        from mlflow import MlflowClient

        client = MlflowClient()
        experiment = client.get_experiment_by_name(cfg.model.name)
        if experiment is None:
            return requests
        for request in open_:
            day = parse_date(request["partition"]).isoformat()
            runs = client.search_runs(
                [experiment.experiment_id], filter_string=f"params.train_end = '{day}'", max_results=1
            )
            if runs:
                request["consumed_by"] = f"mlflow-run:{runs[0].info.run_id}"
                write_json(lake.path(*RETRAIN_FOLDER, f"{day}.json"), request)
                log.info("retrain request for %s consumed by training run %s", day, runs[0].info.run_id)
    except Exception as err:  # MLflow unreachable: keep the requests open
        log.warning("could not check MLflow for consumed retrain requests: %s", err)
    return requests


def consume_retrain_request(partition: str | None, consumer: str) -> dict[str, Any] | None:
    """Mark the retrain request for ``partition`` consumed by a training run (``consumer``: its run id).

    The training DAG calls this once it has taken the request, so the drift policy may ask
    again (at most one request is open at a time). Returns the updated request, or None when
    there is none for that partition (a manual run).
    """
    from flightdeck.lake import json_exists

    if not partition:
        return None
    _, lake = _env()
    path = lake.path(*RETRAIN_FOLDER, f"{parse_date(partition).isoformat()}.json")
    if not json_exists(path):
        return None
    request = {**dict(read_json(path)), "consumed_by": consumer}
    write_json(path, request)
    return request
