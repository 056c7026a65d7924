"""The per-partition HTML drift report and the monitoring table rows (pure, no Spark)."""

from __future__ import annotations

import pytest

from flightdeck.core.config import load_config
from flightdeck.monitoring.drift import monitoring_rows
from flightdeck.monitoring.drift_html import render_report

INF = float("inf")
PROFILE = {
    "numeric": {"wx_temp": {"edges": [-INF, 50.0, INF], "proportions": [0.5, 0.5], "null": 0.0}},
    "categorical": {},
    "prediction": {"column": "probability", "edges": [-INF, 0.5, INF], "proportions": [0.5, 0.5]},
}
CURRENT = {
    "numeric": {"wx_temp": {"proportions": [0.75, 0.25], "null": 0.0}},
    "categorical": {},
    "prediction": {"proportions": [0.75, 0.25]},
}
PERF = {"status": "ok", "date": "2013-07-01", "n_rows": 900, "roc_auc": 0.70, "log_loss": 0.55,
        "reference": {"roc_auc": 0.76, "log_loss": 0.53}, "auc_drop": 0.06, "log_loss_rise": 0.02,
        "auc_breach": True, "log_loss_breach": False}  # fmt: skip
REPORT = {"date": "2013-07-02", "model_version": "3", "status": "ok", "n_rows": 900, "n_predictions": 900,
          "min_rows": 200, "psi": {"wx_temp": 0.2747, "day_of_week": 3.0}, "drifted": ["wx_temp"],
          "excluded": ["day_of_week"], "missing": [], "n_features": 1, "drifted_share": 1.0, "psi_threshold": 0.2,
          "prediction_psi": 0.2747, "prediction_threshold": 0.2, "prediction_drifted": True,
          "performance": PERF}  # fmt: skip


def test_html_report_has_charts_tables_and_the_decision() -> None:
    page = render_report(REPORT, PROFILE, CURRENT, decision={"retrain": True, "reason": "1 of 1 features drifted"})
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert page.count("data:image/png;base64,") == 3  # PSI bars, wx_temp distribution, score distribution
    assert "Drift report 2013-07-02" in page and "model version <b>v3</b>" in page
    assert "<td class='bad'>0.060</td>" in page  # the AUC drop that breached
    assert "retrain requested" in page and "1 of 1 features drifted" in page
    assert "<td>day_of_week</td><td class=''>3.000</td><td>excluded</td>" in page


def test_monitoring_rows_one_per_statistic() -> None:
    rows = monitoring_rows(REPORT, load_config().drift)
    by = {(r["kind"], r["name"], r["statistic"]): r for r in rows}
    assert set(by) == {
        ("feature", "wx_temp", "psi"),
        ("feature", "day_of_week", "psi"),
        ("prediction", "probability", "psi"),
        ("features", "drifted_share", "share"),
        ("performance", "roc_auc", "auc_drop"),
        ("performance", "log_loss", "log_loss_rise"),
    }
    assert (
        by[("feature", "day_of_week", "psi")]["note"] == "excluded"
        and not by[("feature", "day_of_week", "psi")]["breached"]
    )
    auc = by[("performance", "roc_auc", "auc_drop")]
    assert (auc["value"], auc["observed"], auc["reference"], auc["breached"]) == (0.06, 0.70, 0.76, True)
    assert auc["data_date"] == "2013-07-01" and auc["date"] == "2013-07-02" and auc["n_rows"] == 900
    assert by[("features", "drifted_share", "share")]["breached"] is True
    assert all(r["model_version"] == "3" for r in rows)
    with pytest.raises(KeyError):
        monitoring_rows({k: v for k, v in REPORT.items() if k != "date"}, load_config().drift)
