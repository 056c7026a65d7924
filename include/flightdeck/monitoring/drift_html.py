"""The drift report of one scored partition as a standalone HTML page (charts as base64 PNG).

Written to ``monitoring/drift_reports/D.html`` in the lake and logged to MLflow by
``jobs/detect_drift.py``. Pure apart from matplotlib: takes the drift report, the reference
profile and the current bin proportions, returns a string.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

MAX_DISTRIBUTION_CHARTS = 4

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}.bad{color:#b00020;font-weight:600}.muted{color:#777}img{max-width:100%}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _p(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2g}"


def _span(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f} .. {interval[1]:.3f}"


def _rule(report: Mapping[str, Any]) -> str:
    """The sentence saying which statistic decided drift on this day, and why."""
    n_rows, large = report.get("n_rows"), report.get("large_sample_rows")
    if report.get("feature_statistic") == "chi2":
        text = (
            f"Features judged by a chi-square test on the binned counts ({_fmt(n_rows)} rows &lt; "
            f"{_fmt(large)}, where PSI is unreliable): drifted when the p-value, "
            f"{_fmt(report.get('p_value_correction'))}-corrected over the features, is below "
            f"{_fmt(report.get('p_value_threshold'), 4)}."
        )
    else:
        text = f"Features judged by PSI &ge; {_fmt(report.get('psi_threshold'), 2)}"
        text += f" ({_fmt(n_rows)} rows &ge; {_fmt(large)})." if large is not None else "."
    pred = report.get("prediction_statistic") or {}
    if pred.get("statistic") == "chi2":
        text += (
            f" Score distribution: chi-square goodness of fit on {_fmt(pred.get('n_rows'))} predictions, "
            f"p {_p(pred.get('p_value'))} vs {_fmt(pred.get('threshold'), 4)}."
        )
    elif pred:
        text += f" Score distribution: PSI &ge; {_fmt(pred.get('threshold'), 2)}."
    return text


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):+.1%}"


def _span_pct(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:+.1%} .. {interval[1]:+.1%}"


def _performance_rule(perf: Mapping[str, Any]) -> str:
    """Why the labelled day was or was not judged, and how a breach is decided."""
    if perf.get("status") != "ok":
        return f"Not judged: {html.escape(str(perf.get('reason') or perf.get('status')))}."
    if perf.get("task") == "regression":
        if perf.get("rmse_rise_interval") is None:
            return "Judged on the point estimate of the RMSE rise (no bootstrap)."
        return (
            f"A breach needs the whole {float(perf.get('confidence', 0.95)):.0%} bootstrap interval "
            f"({_fmt(perf.get('bootstrap_samples'))} resamples of the labelled rows) of the RMSE rise, relative "
            f"to the holdout RMSE, at or above {_pct(perf.get('max_rmse_rise'))}; MAE is reported, never judged."
        )
    if perf.get("auc_drop_interval") is None:
        return "Judged on the point estimates (no bootstrap)."
    return (
        f"A breach needs the whole {float(perf.get('confidence', 0.95)):.0%} bootstrap interval "
        f"({_fmt(perf.get('bootstrap_samples'))} resamples, stratified by class) at or above the "
        f"threshold (AUC drop {_fmt(perf.get('max_auc_drop'))}, log-loss rise {_fmt(perf.get('max_log_loss_rise'))})."
    )


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def psi_chart(report: Mapping[str, Any]) -> str:
    """Horizontal PSI bars per feature and for the prediction, with the thresholds."""
    plt = _pyplot()
    values = {n: v for n, v in report.get("psi", {}).items() if v is not None}
    if report.get("prediction_psi") is not None:
        values["(prediction)"] = report["prediction_psi"]
    names = sorted(values, key=lambda n: values[n])
    drifted = {*report.get("drifted", []), *(["(prediction)"] if report.get("prediction_drifted") else [])}
    excluded = set(report.get("excluded", []))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(names) + 1)))
    colors = ["tab:red" if n in drifted else "tab:gray" if n in excluded else "tab:blue" for n in names]
    ax.barh(names, [values[n] for n in names], color=colors)
    # a threshold line only where PSI decided; on a small day a chi-square test did (red bars)
    if report.get("feature_statistic", "psi") == "psi":
        ax.axvline(float(report.get("psi_threshold", 0.0)), color="black", linestyle="--", label="feature threshold")
    pred_stat = report.get("prediction_statistic") or {}
    if report.get("prediction_threshold") is not None and pred_stat.get("statistic", "psi") == "psi":
        ax.axvline(
            float(report["prediction_threshold"]), color="tab:orange", linestyle=":", label="prediction threshold"
        )
    ax.set_xlabel("PSI vs the champion's training data")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    return _png(fig)


def distribution_chart(name: str, labels: Sequence[str], expected: Sequence[float], actual: Sequence[float]) -> str:
    """Reference vs current share per bin of one feature (or of the score)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], expected, width=0.4, label="reference (training)")
    ax.bar([i + 0.2 for i in x], actual, width=0.4, label="this partition")
    ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _bins(name: str, profile: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], list, list] | None:
    if name in profile.get("numeric", {}) and name in current.get("numeric", {}):
        ref, cur = profile["numeric"][name], current["numeric"][name]
        edges = ref["edges"]
        labels = [f"[{edges[i]:.3g}, {edges[i + 1]:.3g})" for i in range(len(edges) - 1)] + ["null"]
        return labels, [*ref["proportions"], ref.get("null", 0.0)], [*cur["proportions"], cur.get("null", 0.0)]
    if name in profile.get("categorical", {}) and name in current.get("categorical", {}):
        ref, cur = profile["categorical"][name], current["categorical"][name]
        return [str(c) for c in ref["categories"]], list(ref["proportions"]), list(cur["proportions"])
    return None


def _distribution_charts(
    report: Mapping[str, Any], profile: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    psis = report.get("psi", {})
    top = sorted((n for n in report.get("drifted", [])), key=lambda n: -float(psis.get(n) or 0))
    charts = []
    for name in top[:MAX_DISTRIBUTION_CHARTS]:
        bins = _bins(name, profile, current)
        if bins:
            charts.append(f"<img alt='{html.escape(name)}' src='{distribution_chart(name, *bins)}'>")
    ref_pred, cur_pred = profile.get("prediction"), current.get("prediction")
    if ref_pred and cur_pred:
        edges = ref_pred["edges"]
        probability = ref_pred.get("column", "probability") == "probability"
        title, spec = ("predicted probability", ".2f") if probability else ("predicted value", ".3g")
        labels = [f"[{edges[i]:{spec}}, {edges[i + 1]:{spec}})" for i in range(len(edges) - 1)]
        chart = distribution_chart(title, labels, ref_pred["proportions"], cur_pred["proportions"])
        charts.append(f"<img alt='score distribution' src='{chart}'>")
    return ["<h2>Distributions</h2>" + "".join(charts)] if charts else []


def _regression_performance_table(perf: Mapping[str, Any]) -> str:
    ref = perf.get("reference") or {}
    return (
        "<table><tr><th>labelled day</th><th>rows</th><th>status</th>"
        "<th>RMSE</th><th>holdout RMSE</th><th>rise</th><th>rise interval</th>"
        "<th>MAE</th><th>holdout MAE</th><th>rise</th><th>rise interval</th></tr>"
        f"<tr><td>{_fmt(perf.get('date'))}</td><td>{_fmt(perf.get('n_rows'))}</td>"
        f"<td>{_fmt(perf.get('status'))}</td>"
        f"<td>{_fmt(perf.get('rmse'), 4)}</td><td>{_fmt(ref.get('rmse'), 4)}</td>"
        f"<td class='{'bad' if perf.get('rmse_breach') else ''}'>{_pct(perf.get('rmse_rise'))}</td>"
        f"<td>{_span_pct(perf.get('rmse_rise_interval'))}</td>"
        f"<td>{_fmt(perf.get('mae'), 4)}</td><td>{_fmt(ref.get('mae'), 4)}</td>"
        f"<td>{_pct(perf.get('mae_rise'))}</td><td>{_span_pct(perf.get('mae_rise_interval'))}</td>"
        "</tr></table>"
    )


def _performance_section(perf: Mapping[str, Any] | None) -> list[str]:
    parts = ["<h2>Performance once labels arrived</h2>"]
    if not perf:
        return [*parts, "<p class='muted'>No labelled predictions yet (the previous day was not scored).</p>"]
    if perf.get("task") == "regression":
        return [*parts, _regression_performance_table(perf), f"<p>{_performance_rule(perf)}</p>"]
    ref = perf.get("reference") or {}
    parts.append(
        "<table><tr><th>labelled day</th><th>rows</th><th>positive / negative</th><th>status</th>"
        "<th>AUC</th><th>holdout AUC</th><th>drop</th><th>drop interval</th>"
        "<th>log loss</th><th>holdout log loss</th><th>rise</th><th>rise interval</th></tr>"
        f"<tr><td>{_fmt(perf.get('date'))}</td><td>{_fmt(perf.get('n_rows'))}</td>"
        f"<td>{_fmt(perf.get('n_positive'))} / {_fmt(perf.get('n_negative'))}</td>"
        f"<td>{_fmt(perf.get('status'))}</td>"
        f"<td>{_fmt(perf.get('roc_auc'))}</td><td>{_fmt(ref.get('roc_auc'))}</td>"
        f"<td class='{'bad' if perf.get('auc_breach') else ''}'>{_fmt(perf.get('auc_drop'))}</td>"
        f"<td>{_span(perf.get('auc_drop_interval'))}</td>"
        f"<td>{_fmt(perf.get('log_loss'))}</td><td>{_fmt(ref.get('log_loss'))}</td>"
        f"<td class='{'bad' if perf.get('log_loss_breach') else ''}'>{_fmt(perf.get('log_loss_rise'))}</td>"
        f"<td>{_span(perf.get('log_loss_rise_interval'))}</td>"
        "</tr></table>"
    )
    return [*parts, f"<p>{_performance_rule(perf)}</p>"]


def _statistics_table(report: Mapping[str, Any]) -> list[str]:
    """Every feature (and the score) with its PSI, whether it counted, and the statistic that decided."""
    parts = [
        "<h2>Every statistic</h2><table><tr><th>feature</th><th>PSI</th><th>counted</th>"
        "<th>decided by</th><th>chi-square</th><th>p-value</th><th>p-value corrected</th><th>threshold</th></tr>"
    ]
    drifted = set(report.get("drifted", []))
    excluded = set(report.get("excluded", []))
    statistics = report.get("statistics") or {}
    rows = [(n, v, statistics.get(n) or {}) for n, v in report.get("psi", {}).items()]
    if report.get("prediction_psi") is not None:
        rows.append(("(prediction)", report["prediction_psi"], report.get("prediction_statistic") or {}))
        if report.get("prediction_drifted"):
            drifted.add("(prediction)")
    for name, value, stat in sorted(rows, key=lambda r: -(r[1] or 0)):
        state = "drifted" if name in drifted else "excluded" if name in excluded else "ok"
        tested = stat.get("statistic") == "chi2"
        parts.append(
            f"<tr><td>{html.escape(name)}</td><td class='{'bad' if name in drifted else ''}'>{_fmt(value)}</td>"
            f"<td>{state}</td><td>{_fmt(stat.get('statistic', 'psi'))}</td>"
            f"<td>{_fmt(stat.get('value') if tested else None, 1)}</td><td>{_p(stat.get('p_value'))}</td>"
            f"<td>{_p(stat.get('p_value_adjusted'))}</td><td>{_fmt(stat.get('threshold'), 4)}</td></tr>"
        )
    return [*parts, "</table>"]


def render_report(
    report: Mapping[str, Any],
    profile: Mapping[str, Any] | None = None,
    current: Mapping[str, Any] | None = None,
    *,
    decision: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> str:
    """The HTML page: summary and the rule that decided (PSI or chi-square test), PSI chart,
    distributions of the most drifted features and of the score, performance on the labelled
    day with its bootstrap interval, and the table of every statistic."""
    day = html.escape(str(report.get("date", "")))
    version = html.escape(str(report.get("model_version", "")))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Drift {day}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Drift report {day}</h1>",
        f"<p>Reference: model version <b>v{version}</b> (its training data and holdout). "
        f"{_fmt(report.get('n_rows'))} feature rows, {_fmt(report.get('n_predictions'))} predictions; "
        f"status <b>{_fmt(report.get('status'))}</b> (minimum {_fmt(report.get('min_rows'))} rows).</p>",
        f"<p>{len(report.get('drifted', []))} of {report.get('n_features', 0)} features drifted "
        f"(share {_fmt(report.get('drifted_share'), 2)}); prediction PSI {_fmt(report.get('prediction_psi'))}.</p>",
        f"<p>{_rule(report)}</p>",
    ]
    if decision:
        cls = "bad" if decision.get("retrain") else ""
        verdict = "retrain requested" if decision.get("retrain") else "no retrain"
        parts.append(f"<p class='{cls}'>Policy: {verdict} — {html.escape(str(decision.get('reason', '')))}</p>")
    if links:
        parts.append("<p>" + " · ".join(f"<a href='{html.escape(u)}'>{html.escape(k)}</a>" for k, u in links.items()))
    if report.get("psi"):
        parts.append(f"<h2>PSI per feature</h2><img alt='PSI per feature' src='{psi_chart(report)}'>")
        if report.get("feature_statistic") == "chi2":
            parts.append(
                "<p class='muted'>PSI shown for information: on a day this small it is inflated by "
                "sampling noise, so a chi-square test decided (red: drifted by the test).</p>"
            )
    if profile and current:
        parts += _distribution_charts(report, profile, current)
    parts += _performance_section(report.get("performance"))
    parts += _statistics_table(report)
    parts.append("</body></html>")
    return "\n".join(parts)
