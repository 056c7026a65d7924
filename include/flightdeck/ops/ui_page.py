"""The flightdeck page inside the Airflow UI: models, gate decisions, alias moves, drift, quarantine.

Served by a small FastAPI app (:func:`create_app`) that ``plugins/flightdeck_plugin.py``
mounts under the Airflow api-server at ``/flightdeck``. Two halves:

- :func:`collect` asks the read model (:mod:`flightdeck.ops.readmodel`, shared with
  ``flightdeck status``) for the MLflow registry (versions, aliases, gate tags, holdout metrics),
  the alias ledger, the monitoring table ``monitoring/drift_daily``, the ingest ledger and the
  retrain requests; each part degrades to an error message instead of failing the page;
- :func:`render_page` turns that plain data into views (:func:`page_view`) and renders the
  Jinja2 templates in ``templates/`` (autoescaped HTML, inline SVG charts): pure functions,
  tested without Airflow or MLflow.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from flightdeck.core.config import PipelineConfig
from flightdeck.core.lake import Lake
from flightdeck.ops import readmodel

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flightdeck.core.tracking import Client as MlflowClient

log = logging.getLogger(__name__)

URL_PREFIX = "/flightdeck"
TEMPLATES = Path(__file__).resolve().parent / "templates"
DAG_LINKS = ("flightdeck_train", "flightdeck_score", "flightdeck_monitor")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
View = dict[str, Any]


# --- links ---------------------------------------------------------------------------------


def mlflow_ui_url() -> str | None:
    """The MLflow UI as a browser reaches it (``FLIGHTDECK_MLFLOW_UI_URL``, else an http tracking URI)."""
    url = os.environ.get("FLIGHTDECK_MLFLOW_UI_URL") or os.environ.get("MLFLOW_TRACKING_URI", "")
    return url.rstrip("/") if url.startswith(("http://", "https://")) else None


def airflow_ui_url() -> str:
    """Base of the Airflow UI links; relative to the page (mounted one level below the root) by default."""
    return os.environ.get("FLIGHTDECK_AIRFLOW_UI_URL", "..").rstrip("/")


# --- collect (impure, each part degrades) ----------------------------------------------------


def _guard(part: str, fn: Any) -> Any:
    try:
        return fn()
    except Exception as err:  # one unreachable part must not take the page down
        log.warning("flightdeck page: %s unavailable: %s", part, err)
        return {"error": f"{type(err).__name__}: {err}"}


def collect(cfg: PipelineConfig, *, client: MlflowClient | None = None, lake: Lake | None = None) -> dict[str, Any]:
    """Everything the page shows, as plain data, from the read model (each part degrades on its own)."""
    lake = lake or Lake(cfg.lake.root)
    name = cfg.model.name

    def versions() -> list[dict[str, Any]]:
        if client is None:
            from flightdeck.core import tracking

            return readmodel.model_versions(name, tracking.client())
        return readmodel.model_versions(name, client)

    return {
        "model_name": name,
        "task": cfg.model.task,
        "policy": cfg.drift.model_dump(mode="json"),
        "versions": _guard("MLflow registry", versions),
        "ledger": _guard("alias ledger", lambda: readmodel.alias_ledger(lake, name)),
        "drift": _guard("monitoring/drift_daily", lambda: readmodel.drift_rows(lake)),
        "ingest": _guard("monitoring/ingest_ledger", lambda: readmodel.ingest_ledger(lake)),
        "requests": _guard("retrain requests", lambda: readmodel.retrain_requests(lake)),
        "degraded": _guard("feature status", lambda: readmodel.degraded_features(lake)),
        "retention": _guard("retention ledger", lambda: readmodel.retention_runs(lake, name)),
        "mlflow_url": mlflow_ui_url(),
        "airflow_url": airflow_ui_url(),
    }


# --- templates -------------------------------------------------------------------------------


def cell(value: Any) -> Markup:
    """A table cell's text: a muted dash for None, 4 significant digits for floats, escaped text otherwise."""
    if value is None:
        return Markup("<span class='muted'>-</span>")
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape(str(value))


@functools.cache
def templates() -> Environment:
    """The page's Jinja2 environment: autoescape on, undefined names are errors."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["cell"] = cell
    return env


# --- views (pure): plain data -> what the templates lay out -------------------------------------


def chart_geometry(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    thresholds: Mapping[str, float] | None = None,
    *,
    size: tuple[int, int] = (760, 220),
    title: str = "",
) -> View | None:
    """Where a line chart's axes, ticks, threshold lines and points go (None: nothing to draw).

    Dates are placed in sorted order, evenly (one monitored window per step); values from 0
    (or the lowest below it) to 10% above the highest.
    """
    thresholds = thresholds or {}
    dates = sorted({d for points in series.values() for d, _ in points})
    values = [v for points in series.values() for _, v in points if v is not None] + list(thresholds.values())
    if not dates or not values:
        return None
    width, height = size
    pad_l, pad_r, pad_t, pad_b = 50, 140, 20, 40
    top = max(values) * 1.1 or 1.0
    bottom = min(0.0, *values)
    span = (top - bottom) or 1.0

    def x(i: int) -> float:
        return pad_l + (width - pad_l - pad_r) * (i / max(1, len(dates) - 1))

    def y(v: float) -> float:
        return pad_t + (height - pad_t - pad_b) * (1 - (v - bottom) / span)

    step = max(1, len(dates) // 8)
    index = {d: i for i, d in enumerate(dates)}
    lines = []
    for k, (label, points) in enumerate(series.items()):
        coords = [(f"{x(index[d]):.1f}", f"{y(v):.1f}") for d, v in sorted(points) if v is not None]
        if coords:
            lines.append(
                {
                    "label": label,
                    "color": COLORS[k % len(COLORS)],
                    "points": " ".join(f"{a},{b}" for a, b in coords),
                    "circles": coords,
                    "label_y": pad_t + 14 * (k + len(thresholds) + 1),
                }
            )
    return {
        "title": title,
        "width": width,
        "height": height,
        "left": pad_l,
        "right": width - pad_r,
        "legend_x": width - pad_r + 4,
        "axis_y": f"{y(bottom):.1f}",
        "top_y": f"{y(top / 1.1):.1f}",
        "top_label": f"{top / 1.1:.3g}",
        "bottom_label": f"{bottom:.3g}",
        "tick_y": height - pad_b + 14,
        "ticks": [
            {"x": f"{x(i):.1f}", "label": d} for i, d in enumerate(dates) if i % step == 0 or i == len(dates) - 1
        ],
        "thresholds": [
            {
                "y": f"{y(limit):.1f}",
                "label_y": f"{y(limit) + 3:.1f}",
                "color": COLORS[k % len(COLORS)],
                "label": f"{label} {limit:g}",
            }
            for k, (label, limit) in enumerate(thresholds.items())
        ],
        "lines": lines,
    }


def svg_chart(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    thresholds: Mapping[str, float] | None = None,
    *,
    width: int = 760,
    height: int = 220,
    title: str = "",
) -> Markup:
    """A line chart over dates as inline SVG: one polyline per series, dashed threshold lines.

    ``series`` maps a label to ``(date, value)`` points (None values are gaps).
    """
    chart = chart_geometry(series, thresholds, size=(width, height), title=title)
    return Markup(templates().get_template("chart.svg").render(chart=chart, title=title))


def _error(part: Any) -> str | None:
    return str(part["error"]) if isinstance(part, dict) and "error" in part else None


def _versions_view(data: Mapping[str, Any]) -> View:
    versions = data["versions"]
    if _error(versions):
        return {"error": _error(versions), "rows": []}
    mlflow_url, name = data.get("mlflow_url"), data["model_name"]
    rows = []
    for v in versions:
        tags = v.get("tags", {})
        gate = tags.get("gate_passed")
        promoted = tags.get("promoted_at")
        run_id, experiment_id = v.get("run_id"), v.get("experiment_id")
        rows.append(
            {
                "version": v["version"],
                "version_link": f"{mlflow_url}/#/models/{name}/versions/{v['version']}" if mlflow_url else None,
                "aliases": v["aliases"],
                "deprecated": tags.get("flightdeck.deprecated"),  # by retention (flightdeck.model.retention)
                "auc": v["metrics"].get("roc_auc"),
                "log_loss": v["metrics"].get("log_loss"),
                "rmse": v["metrics"].get("rmse"),
                "mae": v["metrics"].get("mae"),
                "r2": v["metrics"].get("r2"),
                "gate": None if gate is None else gate == "true",
                "gate_reasons": tags.get("gate_reasons"),
                "promoted": f"at {promoted}" if promoted else None,
                "run_link": (
                    f"{mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}"
                    if mlflow_url and run_id and experiment_id
                    else None
                ),
                "run_short": (run_id or "")[:8],
                # the evaluation's SHAP summary and per-slice table (flightdeck.model.explain)
                "explain_links": (
                    [
                        (label, f"{mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/evaluation/{f}")
                        for label, f in (("SHAP", "shap_summary.png"), ("slices", "slices.csv"))
                    ]
                    if mlflow_url and run_id and experiment_id
                    else []
                ),
            }
        )
    return {"error": None, "rows": rows}


def _ledger_view(data: Mapping[str, Any]) -> View:
    ledger = data["ledger"]
    if _error(ledger):
        return {"error": _error(ledger), "rows": []}
    rows = [
        {
            "seq": r.get("seq"),
            "at": r.get("at"),
            "action": str(r.get("action", "")),
            "alias": r.get("alias"),
            "before": r.get("from", r.get("previous")),
            "after": r.get("to", r.get("version")),
            "who": r.get("who"),
            "why": r.get("why") or r.get("decision_ref"),
        }
        for r in reversed(ledger)
    ]
    return {"error": None, "rows": rows}


def _retention_view(data: Mapping[str, Any]) -> View:
    runs = data.get("retention", [])
    if _error(runs):
        return {"error": _error(runs), "rows": []}
    rows = []
    for r in runs:
        acted = [s for s in r.get("steps", []) if s.get("action") != "keep"]
        rows.append(
            {
                "seq": r.get("seq"),
                "at": r.get("at"),
                "day": r.get("day"),
                "mode": "dry run" if r.get("dry_run") else "applied",
                "who": r.get("who"),
                "kept": len(r.get("steps", [])) - len(acted),
                "steps": [
                    {
                        "version": s.get("version"),
                        "action": s.get("action"),
                        "reason": s.get("reason"),
                        "state": s.get("error") or ("done" if s.get("done") else "planned"),
                    }
                    for s in acted
                ],
            }
        )
    return {"error": None, "rows": rows}


def _drift_thresholds(policy: Mapping[str, Any], task: str = "binary") -> dict[str, float]:
    thresholds = {"share": float(policy.get("drifted_share", 0.2))}
    pred_limit = policy.get("prediction_psi_threshold") or policy.get("psi_threshold")
    if pred_limit is not None:
        thresholds["prediction PSI"] = float(pred_limit)
    if task == "regression":
        if policy.get("max_rmse_rise") is not None:
            thresholds["RMSE rise"] = float(policy["max_rmse_rise"])
    elif policy.get("max_auc_drop") is not None:
        thresholds["AUC drop"] = float(policy["max_auc_drop"])
    return thresholds


def _drift_view(data: Mapping[str, Any]) -> View:
    rows = data["drift"]
    if _error(rows):
        return {"error": _error(rows), "present": False}
    if not rows:
        return {"error": None, "present": False}
    policy = data.get("policy", {})
    thresholds = _drift_thresholds(policy, str(data.get("task") or "binary"))
    chart = svg_chart(readmodel.drift_series(rows), thresholds, title="Drift over time (dashed: thresholds)")
    last, top = readmodel.highest_psi(rows)
    return {
        "error": None,
        "present": True,
        "chart": chart,
        "breaches": policy.get("breaches", 1),
        "windows": policy.get("windows", 1),
        "cooldown_days": policy.get("cooldown_days"),
        "days": sorted({str(r["date"]) for r in rows}, reverse=True)[:10],
        "last": last,
        "top": [
            {
                "name": r["name"],
                "value": r["value"],
                "threshold": r.get("threshold"),
                "breached": bool(r.get("breached")),
                "state": "drifted" if r.get("breached") else (r.get("note") or "ok"),
            }
            for r in top
        ],
    }


def _quarantine_view(data: Mapping[str, Any]) -> View:
    rows = data["ingest"]
    if _error(rows):
        return {"error": _error(rows), "days": []}
    by_day = readmodel.quarantine_per_day(rows)
    if not by_day:
        return {"error": None, "days": []}
    series = {"quarantined rows": [(d, float(v["rows_quarantined"])) for d, v in by_day.items()]}
    days = [
        {
            "day": d,
            "rows_in": by_day[d]["rows_in"],
            "rows_quarantined": by_day[d]["rows_quarantined"],
            "share": f"{by_day[d]['rows_quarantined'] / by_day[d]['rows_in'] if by_day[d]['rows_in'] else 0.0:.2%}",
        }
        for d in sorted(by_day, reverse=True)[:14]
    ]
    return {"error": None, "days": days, "chart": svg_chart(series, title="Quarantined rows per day", height=180)}


def _requests_view(data: Mapping[str, Any]) -> View:
    reqs = data["requests"]
    if _error(reqs):
        return {"error": _error(reqs), "rows": []}
    rows = [
        {
            "partition": r.get("partition"),
            "state": "consumed" if r.get("consumed_by") else "open",
            "reason": r.get("reason"),
            "monitoring_run": r.get("monitoring_run"),
            "consumed_by": r.get("consumed_by"),
        }
        for r in reversed(reqs)
    ]
    return {"error": None, "rows": rows}


def _degraded_view(data: Mapping[str, Any]) -> View:
    rows = data.get("degraded", [])
    if _error(rows):
        return {"error": _error(rows), "rows": []}
    return {
        "error": None,
        "rows": [
            {"partition": r.get("partition"), "missing": ", ".join(r.get("missing_days", [])), "run": r.get("run")}
            for r in rows
        ],
    }


def _with_alias(versions: Any, alias: str) -> View | None:
    if not isinstance(versions, list):
        return None
    found = next((v for v in versions if alias in v.get("aliases", [])), None)
    if found is None:
        return None
    metrics = found["metrics"]
    return {"version": found["version"], "auc": metrics.get("roc_auc"), "rmse": metrics.get("rmse")}


def page_view(data: Mapping[str, Any]) -> View:
    """What ``page.html`` lays out, computed from :func:`collect`'s data."""
    return {
        "model_name": str(data["model_name"]),
        # the metrics the page shows: AUC and log loss (binary); RMSE, MAE and R² (regression)
        "task": str(data.get("task") or "binary"),
        "champion": _with_alias(data["versions"], "champion"),
        "challenger": _with_alias(data["versions"], "challenger"),
        "airflow_url": data.get("airflow_url", ".."),
        "mlflow_url": data.get("mlflow_url"),
        "dag_links": DAG_LINKS,
        "versions": _versions_view(data),
        "ledger": _ledger_view(data),
        "retention": _retention_view(data),
        "drift": _drift_view(data),
        "requests": _requests_view(data),
        "degraded": _degraded_view(data),
        "quarantine": _quarantine_view(data),
    }


def render_page(data: Mapping[str, Any]) -> str:
    """The whole page as HTML (no JavaScript; charts are inline SVG)."""
    return templates().get_template("page.html").render(**page_view(data))


# --- the FastAPI app -------------------------------------------------------------------------


def create_app(
    cfg: PipelineConfig | None = None,
    *,
    client: MlflowClient | None = None,
    dependencies: Sequence[Any] = (),
) -> FastAPI:
    """The FastAPI app behind the page: ``/`` (HTML), ``/api/state`` (the same data as JSON) and
    ``/metrics`` (:mod:`flightdeck.monitoring.metrics` in the Prometheus format).

    The configuration is loaded per request unless given, so a config change needs no restart.
    ``dependencies`` guard every route (the plugin passes Airflow's login check, so the page
    answers only to a logged-in Airflow user, by the UI's session cookie or a bearer token).
    """
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="flightdeck", docs_url=None, redoc_url=None, openapi_url=None, dependencies=list(dependencies))

    def _data() -> dict[str, Any]:
        from flightdeck.core.config import load_config

        return collect(cfg or load_config(), client=client)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(_data()))

    @app.get("/reports/{day}", response_class=HTMLResponse)
    def report(day: str) -> HTMLResponse:
        """The HTML drift report of one monitored partition, from the lake."""
        from flightdeck.core.config import load_config
        from flightdeck.core.lake import LakeError, parse_date

        try:
            date = parse_date(day)
        except LakeError:
            return HTMLResponse(f"not a date: {escape(day)}", status_code=400)
        body = readmodel.drift_report_html(Lake((cfg or load_config()).lake.root), date)
        if body is None:
            return HTMLResponse(f"no drift report for {date}", status_code=404)
        return HTMLResponse(body)

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(_data(), default=str)))

    from fastapi import Header
    from fastapi.responses import Response

    from flightdeck.monitoring.metrics import LakeCollector, exposition, registry_for

    def _config() -> PipelineConfig:
        from flightdeck.core.config import load_config

        return cfg or load_config()

    metrics_registry = registry_for(LakeCollector(_config))

    @app.get("/metrics")
    def metrics(accept: str | None = Header(default=None)) -> Response:
        """flightdeck's metrics for Prometheus, read from the lake at each scrape (same login as the page)."""
        body, content_type = exposition(metrics_registry, accept)
        return Response(body, media_type=content_type)

    return app
