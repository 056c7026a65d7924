"""The flightdeck page inside the Airflow UI: models, gate decisions, alias moves, drift, quarantine.

Served by a small FastAPI app (:func:`create_app`) that ``plugins/flightdeck_plugin.py``
mounts under the Airflow api-server at ``/flightdeck``. Two halves:

- :func:`collect` reads the MLflow registry (versions, aliases, gate tags, holdout metrics),
  the lake's alias ledger (:func:`flightdeck.model.registry.ledger`), the monitoring table
  ``monitoring/drift_daily``, the ingest ledger, retrain requests and alerts — each part
  degrades to an error message instead of failing the page;
- :func:`render_page` turns that plain data into server-rendered HTML with inline SVG charts,
  a pure function tested without Airflow or MLflow.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.lake import Lake
from flightdeck.ops import readmodel
from flightdeck.ops.readmodel import drift_series

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

URL_PREFIX = "/flightdeck"
_CSS = """
body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#222}h1{margin:.2rem 0}
h2{margin-top:1.6rem;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#f3f3f3}.tag{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;color:#fff}
.champion{background:#1b7f3b}.challenger{background:#b26b00}.pass{color:#1b7f3b}.fail,.bad{color:#b00020}
.muted{color:#777}.err{color:#b00020;font-style:italic}svg{background:#fafafa;border:1px solid #eee}
"""


# --- links ---------------------------------------------------------------------------------


def mlflow_ui_url() -> str | None:
    """The MLflow UI as a browser reaches it (``FLIGHTDECK_MLFLOW_UI_URL``, else an http tracking URI)."""
    url = os.environ.get("FLIGHTDECK_MLFLOW_UI_URL") or os.environ.get("MLFLOW_TRACKING_URI", "")
    return url.rstrip("/") if url.startswith(("http://", "https://")) else None


def airflow_ui_url() -> str:
    """Base of the Airflow UI links; relative to the page (mounted one level below the root) by default."""
    return os.environ.get("FLIGHTDECK_AIRFLOW_UI_URL", "..").rstrip("/")


def _a(href: str | None, text: str) -> str:
    if not href:
        return html.escape(text)
    return f"<a href='{html.escape(href, quote=True)}'>{html.escape(text)}</a>"


def _esc(value: Any) -> str:
    if value is None:
        return "<span class='muted'>-</span>"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


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
            from mlflow import MlflowClient

            return readmodel.model_versions(name, MlflowClient())
        return readmodel.model_versions(name, client)

    return {
        "model_name": name,
        "policy": cfg.drift.model_dump(mode="json"),
        "versions": _guard("MLflow registry", versions),
        "ledger": _guard("alias ledger", lambda: readmodel.alias_ledger(lake, name)),
        "drift": _guard("monitoring/drift_daily", lambda: readmodel.drift_rows(lake)),
        "ingest": _guard("monitoring/ingest_ledger", lambda: readmodel.ingest_ledger(lake)),
        "requests": _guard("retrain requests", lambda: readmodel.retrain_requests(lake)),
        "mlflow_url": mlflow_ui_url(),
        "airflow_url": airflow_ui_url(),
    }


# --- render (pure) ---------------------------------------------------------------------------


def svg_chart(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    thresholds: Mapping[str, float] | None = None,
    *,
    width: int = 760,
    height: int = 220,
    title: str = "",
) -> str:
    """A line chart over dates as inline SVG: one polyline per series, dashed threshold lines.

    ``series`` maps a label to ``(date, value)`` points (None values are gaps). Dates are
    placed in sorted order, evenly (one monitored window per step).
    """
    dates = sorted({d for points in series.values() for d, _ in points})
    values = [v for points in series.values() for _, v in points if v is not None]
    values += list((thresholds or {}).values())
    if not dates or not values:
        return f"<p class='muted'>{html.escape(title)}: no data yet</p>"
    pad_l, pad_r, pad_t, pad_b = 50, 140, 20, 40
    top = max(values) * 1.1 or 1.0
    bottom = min(0.0, *values)
    span = (top - bottom) or 1.0

    def x(i: int) -> float:
        return pad_l + (width - pad_l - pad_r) * (i / max(1, len(dates) - 1))

    def y(v: float) -> float:
        return pad_t + (height - pad_t - pad_b) * (1 - (v - bottom) / span)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{html.escape(title, quote=True)}'>",
        f"<text x='{pad_l}' y='14' font-size='12' font-weight='600'>{html.escape(title)}</text>",
        f"<line x1='{pad_l}' y1='{y(bottom):.1f}' x2='{width - pad_r}' y2='{y(bottom):.1f}' stroke='#999'/>",
        f"<text x='4' y='{y(top / 1.1):.1f}' font-size='10'>{top / 1.1:.3g}</text>",
        f"<text x='4' y='{y(bottom):.1f}' font-size='10'>{bottom:.3g}</text>",
    ]
    step = max(1, len(dates) // 8)
    for i, d in enumerate(dates):
        if i % step == 0 or i == len(dates) - 1:
            parts.append(
                f"<text x='{x(i):.1f}' y='{height - pad_b + 14}' font-size='9' text-anchor='middle'>{d}</text>"
            )
    for k, (label, limit) in enumerate((thresholds or {}).items()):
        yy = y(limit)
        parts.append(
            f"<line x1='{pad_l}' y1='{yy:.1f}' x2='{width - pad_r}' y2='{yy:.1f}' stroke='{colors[k % len(colors)]}' "
            f"stroke-dasharray='5,4' opacity='0.7'/>"
            f"<text x='{width - pad_r + 4}' y='{yy + 3:.1f}' font-size='10'>{html.escape(label)} {limit:g}</text>"
        )
    index = {d: i for i, d in enumerate(dates)}
    for k, (label, points) in enumerate(series.items()):
        color = colors[k % len(colors)]
        coords = [(x(index[d]), y(v)) for d, v in sorted(points) if v is not None]
        if not coords:
            continue
        parts.append(
            f"<polyline fill='none' stroke='{color}' stroke-width='2' "
            f"points='{' '.join(f'{a:.1f},{b:.1f}' for a, b in coords)}'/>"
        )
        parts += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{color}'/>" for a, b in coords]
        parts.append(
            f"<text x='{width - pad_r + 4}' y='{pad_t + 14 * (k + len(thresholds or {}) + 1)}' font-size='11' "
            f"fill='{color}'>{html.escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _error(part: Any) -> str | None:
    return part["error"] if isinstance(part, dict) and "error" in part else None


def _versions_table(data: Mapping[str, Any]) -> str:
    versions = data["versions"]
    if _error(versions):
        return f"<p class='err'>MLflow registry unavailable: {html.escape(_error(versions) or '')}</p>"
    if not versions:
        return "<p class='muted'>No model version registered yet: run flightdeck_train.</p>"
    mlflow_url = data.get("mlflow_url")
    rows = [
        "<table><tr><th>version</th><th>aliases</th><th>holdout AUC</th><th>log loss</th>"
        "<th>gate</th><th>gate reasons</th><th>promoted</th><th>run</th></tr>"
    ]
    for v in versions:
        tags = v.get("tags", {})
        aliases = " ".join(f"<span class='tag {html.escape(a)}'>{html.escape(a)}</span>" for a in v["aliases"])
        gate = tags.get("gate_passed")
        gate_html = (
            "<span class='muted'>-</span>"
            if gate is None
            else f"<span class='{'pass' if gate == 'true' else 'fail'}'>{'PASS' if gate == 'true' else 'FAIL'}</span>"
        )
        promoted = tags.get("promoted_at")
        promoted_html = _esc(f"at {promoted}" if promoted else None)
        version_link = f"{mlflow_url}/#/models/{data['model_name']}/versions/{v['version']}" if mlflow_url else None
        run_link = (
            f"{mlflow_url}/#/experiments/{v['experiment_id']}/runs/{v['run_id']}"
            if mlflow_url and v.get("run_id") and v.get("experiment_id")
            else None
        )
        rows.append(
            f"<tr><td>{_a(version_link, 'v' + v['version'])}</td><td>{aliases}</td>"
            f"<td>{_esc(v['metrics'].get('roc_auc'))}</td><td>{_esc(v['metrics'].get('log_loss'))}</td>"
            f"<td>{gate_html}</td><td>{_esc(tags.get('gate_reasons'))}</td><td>{promoted_html}</td>"
            f"<td>{_a(run_link, (v.get('run_id') or '')[:8])}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _dag_run_link(base: str, dag_id: str, run_id: str | None) -> str:
    if not run_id:
        return _esc(None)
    return _a(f"{base}/dags/{dag_id}/runs/{run_id}", str(run_id))


def _ledger_table(data: Mapping[str, Any]) -> str:
    ledger = data["ledger"]
    if _error(ledger):
        return f"<p class='err'>alias ledger unavailable: {html.escape(_error(ledger) or '')}</p>"
    if not ledger:
        return "<p class='muted'>No alias move recorded yet.</p>"
    rows = ["<table><tr><th>#</th><th>when</th><th>action</th><th>alias</th><th>move</th><th>who</th><th>why</th></tr>"]
    for r in reversed(ledger):
        action = str(r.get("action", ""))
        before, after = r.get("from", r.get("previous")), r.get("to", r.get("version"))
        move = f"{'v' + html.escape(str(before)) if before else 'none'} &rarr; v{html.escape(str(after))}"
        rows.append(
            f"<tr><td>{_esc(r.get('seq'))}</td><td>{_esc(r.get('at'))}</td>"
            f"<td class='{'bad' if action == 'rollback' else ''}'>{_esc(action)}</td><td>{_esc(r.get('alias'))}</td>"
            f"<td>{move}</td><td>{_esc(r.get('who'))}</td><td>{_esc(r.get('why') or r.get('decision_ref'))}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _drift_section(data: Mapping[str, Any]) -> str:
    rows = data["drift"]
    if _error(rows):
        return f"<p class='err'>drift table unavailable: {html.escape(_error(rows) or '')}</p>"
    if not rows:
        return "<p class='muted'>No partition monitored yet.</p>"
    policy = data.get("policy", {})
    series = drift_series(rows)
    thresholds = {"share": float(policy.get("drifted_share", 0.2))}
    pred_limit = policy.get("prediction_psi_threshold") or policy.get("psi_threshold")
    if pred_limit is not None:
        thresholds["prediction PSI"] = float(pred_limit)
    if policy.get("max_auc_drop") is not None:
        thresholds["AUC drop"] = float(policy["max_auc_drop"])
    chart = svg_chart(series, thresholds, title="Drift over time (dashed: thresholds)")
    last, top = readmodel.highest_psi(rows)
    table = ["<table><tr><th>feature</th><th>PSI</th><th>threshold</th><th>counted</th></tr>"]
    for r in top:
        state = "drifted" if r.get("breached") else (r.get("note") or "ok")
        table.append(
            f"<tr><td>{_esc(r['name'])}</td><td class='{'bad' if r.get('breached') else ''}'>{_esc(r['value'])}</td>"
            f"<td>{_esc(r.get('threshold'))}</td><td>{_esc(state)}</td></tr>"
        )
    table.append("</table>")
    k, n = policy.get("breaches", 1), policy.get("windows", 1)
    rule = (
        f"<p class='muted'>Policy: retrain when {k} of the last {n} windows breach; cooldown "
        f"{policy.get('cooldown_days')} days; at most one open request.</p>"
    )
    days = sorted({str(r["date"]) for r in rows}, reverse=True)[:10]
    reports = "<p>Drift reports: " + " · ".join(_a(f"reports/{d}", d) for d in days) + "</p>"
    return chart + rule + reports + f"<h3>Highest PSI on {html.escape(str(last))}</h3>" + "".join(table)


def _quarantine_section(data: Mapping[str, Any]) -> str:
    rows = data["ingest"]
    if _error(rows):
        return f"<p class='err'>ingest ledger unavailable: {html.escape(_error(rows) or '')}</p>"
    if not rows:
        return "<p class='muted'>Nothing ingested yet.</p>"
    by_day = readmodel.quarantine_per_day(rows)
    series = {"quarantined rows": [(d, float(v["rows_quarantined"])) for d, v in by_day.items()]}
    chart = svg_chart(series, title="Quarantined rows per day", height=180)
    table = ["<table><tr><th>day</th><th>rows in</th><th>quarantined</th><th>share</th></tr>"]
    for d in sorted(by_day, reverse=True)[:14]:
        v = by_day[d]
        share = v["rows_quarantined"] / v["rows_in"] if v["rows_in"] else 0.0
        table.append(
            f"<tr><td>{d}</td><td>{v['rows_in']}</td><td>{v['rows_quarantined']}</td><td>{share:.2%}</td></tr>"
        )
    table.append("</table>")
    return chart + "".join(table)


def _requests_section(data: Mapping[str, Any]) -> str:
    reqs = data["requests"]
    if _error(reqs):
        return f"<p class='err'>retrain requests unavailable: {html.escape(_error(reqs) or '')}</p>"
    if not reqs:
        return "<p class='muted'>No retrain requested yet.</p>"
    base = data.get("airflow_url", "..")
    rows = [
        "<table><tr><th>partition</th><th>state</th><th>reason</th><th>monitoring run</th><th>training run</th></tr>"
    ]
    for r in reversed(reqs):
        state = "consumed" if r.get("consumed_by") else "open"
        rows.append(
            f"<tr><td>{_esc(r.get('partition'))}</td><td>{state}</td><td>{_esc(r.get('reason'))}</td>"
            f"<td>{_dag_run_link(base, 'flightdeck_monitor', r.get('monitoring_run'))}</td>"
            f"<td>{_dag_run_link(base, 'flightdeck_train', r.get('consumed_by'))}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def champion_of(data: Mapping[str, Any]) -> dict[str, Any] | None:
    versions = data.get("versions")
    if not isinstance(versions, list):
        return None
    return next((v for v in versions if "champion" in v.get("aliases", [])), None)


def render_page(data: Mapping[str, Any]) -> str:
    """The whole page as HTML (no JavaScript; charts are inline SVG)."""
    name = html.escape(str(data["model_name"]))
    champion = champion_of(data)
    versions = data["versions"] if isinstance(data["versions"], list) else []
    challenger = next((v for v in versions if "challenger" in v.get("aliases", [])), None)
    head = (
        f"champion <b>v{html.escape(champion['version'])}</b> (holdout AUC {_esc(champion['metrics'].get('roc_auc'))})"
        if champion
        else "no champion yet"
    )
    if challenger:
        head += f" · challenger <b>v{html.escape(challenger['version'])}</b>"
    base = data.get("airflow_url", "..")
    links = " · ".join(
        _a(f"{base}/dags/{d}", d) for d in ("flightdeck_train", "flightdeck_score", "flightdeck_monitor")
    )
    if data.get("mlflow_url"):
        links += " · " + _a(f"{data['mlflow_url']}/#/models/{data['model_name']}", "MLflow model")
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>flightdeck: {name}</title><style>{_CSS}</style></head><body>",
            f"<h1>flightdeck · {name}</h1><p>{head}</p><p>{links}</p>",
            "<h2>Models: champion, challengers and gate decisions</h2>",
            _versions_table(data),
            "<h2>Promotions and rollbacks (alias ledger)</h2>",
            _ledger_table(data),
            "<h2>Drift</h2>",
            _drift_section(data),
            "<h2>Retrain requests</h2>",
            _requests_section(data),
            "<h2>Quarantine</h2>",
            _quarantine_section(data),
            "</body></html>",
        ]
    )


# --- the FastAPI app -------------------------------------------------------------------------


def create_app(
    cfg: PipelineConfig | None = None,
    *,
    client: MlflowClient | None = None,
    dependencies: Sequence[Any] = (),
) -> FastAPI:
    """The FastAPI app behind the page: ``/`` (HTML) and ``/api/state`` (the same data as JSON).

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
            return HTMLResponse(f"not a date: {html.escape(day)}", status_code=400)
        body = readmodel.drift_report_html(Lake((cfg or load_config()).lake.root), date)
        if body is None:
            return HTMLResponse(f"no drift report for {date}", status_code=404)
        return HTMLResponse(body)

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(_data(), default=str)))

    return app
