"""jobs/detect_drift.py in-process on a tiny hand-made lake and an MLflow SQLite store.

Expected values are computed by hand from the data below: feature and score PSI against a
two-bin reference, and AUC / log loss of the previous day's labelled predictions.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.jobargs import load_job

pytestmark = pytest.mark.spark
INF = float("inf")
DAY, PREVIOUS = "2013-07-02", "2013-07-01"

PROFILE = {
    "n_rows": 100,
    "numeric": {"wx_temp": {"edges": [-INF, 50.0, INF], "proportions": [0.5, 0.5], "null": 0.0}},
    "categorical": {"origin": {"categories": ["EWR", "JFK", "__other__"], "proportions": [0.5, 0.5, 0.0]}},
    "prediction": {"column": "probability", "edges": [-INF, 0.5, INF], "proportions": [0.5, 0.5]},
}


def _write(root: Path, day: str, temps: list[float], probs: list[float], labels: list[int]) -> None:
    """A features partition and its predictions, written as committed parquet partitions (no Spark job):
    one prediction per flight; the first flight has no dep_time (a null key)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(temps)
    keys = {
        "carrier": ["UA"] * n,
        "flight": [100 + i for i in range(n)],
        "origin": ["EWR" if i % 2 else "JFK" for i in range(n)],
        "dep_time": [None if i == 0 else 900 + i for i in range(n)],
        "event_ts": pa.array([dt.datetime.fromisoformat(f"{day}T08:00:00+00:00")] * n, pa.timestamp("us", "UTC")),
    }
    tables = {
        "features": pa.table({**keys, "wx_temp": [float(t) for t in temps], "late_arrival": labels}),
        "predictions": pa.table({**keys, "probability": [float(x) for x in probs], "model_version": ["1"] * n}),
    }
    for zone, table in tables.items():
        folder = root / zone / "flights" / f"date={day}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-0.parquet")
        (folder / "_SUCCESS").touch()


def test_detect_drift_job_by_hand(spark: Any, lake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FLIGHTDECK__DRIFT__MIN_ROWS", "4")
    monkeypatch.setenv("FLIGHTDECK__DRIFT__MIN_LABELED_ROWS", "4")
    # four rows a day: judged by PSI and by the point estimates, so the expectations stay hand-computable
    # (the small-sample tests and the bootstrap interval are in test_small_samples.py)
    monkeypatch.setenv("FLIGHTDECK__DRIFT__LARGE_SAMPLE_ROWS", "1")
    monkeypatch.setenv("FLIGHTDECK__DRIFT__MIN_LABELS_PER_CLASS", "2")
    monkeypatch.setenv("FLIGHTDECK__DRIFT__BOOTSTRAP_SAMPLES", "0")
    cfg = load_config()
    lake = Lake(str(lake_root))
    client = MlflowClient(uri)
    train_exp = client.create_experiment("train", artifact_location=str(tmp_path / "art-train"))
    client.create_experiment(f"{cfg.model.name}-monitoring", artifact_location=str(tmp_path / "art-mon"))
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=train_exp) as run:
        mlflow.log_dict(PROFILE, "reference_profile.json")
        mlflow.log_metrics({"roc_auc": 0.85, "log_loss": 0.40})
    client.create_registered_model(cfg.model.name)
    client.create_model_version(cfg.model.name, source=str(tmp_path / "model"), run_id=run.info.run_id)

    # the previous day: labels known now; today: 3 of 4 temperatures below 50, 3 of 4 scores below 0.5
    _write(lake_root, PREVIOUS, [10, 60, 20, 70], [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    _write(lake_root, DAY, [10, 20, 30, 60], [0.1, 0.2, 0.3, 0.9], [0, 1, 0, 1])

    result = load_job("detect_drift").main(["--partition", DAY, "--model-version", "1", "--run-key", "k1"])

    # wx_temp [0.75, 0.25] vs [0.5, 0.5]: 0.25 ln 1.5 + 0.25 ln 2 = 0.274653; same for the scores
    hand = 0.25 * math.log(1.5) + 0.25 * math.log(2)
    assert result["psi"]["wx_temp"] == pytest.approx(hand, abs=1e-3)  # null bin: eps vs eps
    assert result["prediction_psi"] == pytest.approx(hand)
    assert result["n_rows"] == 4 and result["n_predictions"] == 4
    assert result["feature_statistic"] == "psi" and result["statistics"]["wx_temp"]["statistic"] == "psi"
    # origin: JFK, EWR, JFK, EWR = [0.5, 0.5, 0] -> PSI 0
    assert result["psi"]["origin"] == pytest.approx(0.0, abs=1e-9)
    perf = result["performance"]
    assert perf["date"] == PREVIOUS and perf["n_rows"] == 4 and perf["status"] == "ok"
    assert perf["roc_auc"] == pytest.approx(0.75)  # null dep_time joined null-safely: all 4 rows
    assert perf["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert perf["auc_drop"] == pytest.approx(0.10) and perf["auc_breach"]
    assert (perf["n_positive"], perf["n_negative"], perf["auc_drop_interval"]) == (2, 2, None)

    table = {(r["kind"], r["name"]): r for r in _read(lake, DAY)}
    assert table[("performance", "roc_auc")]["reference"] == pytest.approx(0.85)
    assert table[("performance", "roc_auc")]["data_date"] == PREVIOUS
    assert table[("prediction", "probability")]["breached"] is True
    assert table[("feature", "wx_temp")]["breached"] is True
    assert table[("performance", "roc_auc")]["breached"] is True  # what `flightdeck status` shows as breached

    html = Path(lake.drift_report(DAY, "html")).read_text()
    assert "data:image/png;base64," in html and "Drift report 2013-07-02" in html
    report = json.loads(Path(lake.drift_report(DAY)).read_text())
    assert report["performance"]["auc_breach"] is True
    artifacts = {a.path for a in client.list_artifacts(result["mlflow_run_id"])}
    assert {"drift_report.json", f"drift_report_{dt.date.fromisoformat(DAY)}.html"} <= artifacts


def _read(lake: Any, day: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    folder = Path(lake.partition("monitoring", "drift_daily", day))
    assert (folder / "_SUCCESS").exists()
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
