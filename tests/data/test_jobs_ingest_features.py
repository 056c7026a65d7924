"""One real day through jobs/ingest.py, jobs/build_features.py and jobs/validate_features.py, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import landing
from flightdeck.data.sparkio import read_partitions

pytestmark = pytest.mark.spark


def test_real_day_through_the_jobs(spark: Any, lake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config()
    lake = Lake(str(lake_root))
    landing.land_reference(cfg, lake)
    landing.land_range(cfg, lake, "2013-01-01", "2013-01-02")

    load_job("ingest").main(["--partition", "2013-01-01..2013-01-02"])
    assert lake.committed_partitions("bronze", "flights") == lake.committed_partitions("bronze", "weather")
    ledger = read_partitions(spark, lake, "monitoring", "ingest_ledger", ["2013-01-02"]).collect()
    for r in ledger:
        assert r["rows_in"] == r["rows_valid"] + r["rows_quarantined"]
    flights = {r["source"]: r for r in ledger}["flights"]
    assert flights["rows_in"] == 943
    quarantined = read_partitions(spark, lake, "quarantine", "flights", ["2013-01-02"])
    assert quarantined.count() == flights["rows_quarantined"]

    load_job("build_features").main(["--partition", "2013-01-02", "--run-key", "r1"])
    features = read_partitions(spark, lake, "features", "flights", ["2013-01-02"])
    assert features.count() == flights["rows_valid"]
    assert features.where("wx_temp IS NULL").count() < 0.05 * flights["rows_valid"]
    assert set(features.columns) >= {*cfg.features.model_inputs, cfg.label.name, "event_ts", "date"}
    assert json.loads((lake_root / "runs" / "r1" / "build_features.json").read_text())["rows"] == {
        "2013-01-02": flights["rows_valid"]
    }

    capsys.readouterr()
    load_job("validate_features").main(["--partition", "2013-01-02"])
    out = capsys.readouterr().out
    assert '"success": true' in out
    report = json.loads((lake_root / "monitoring" / "validation" / "features" / "2013-01-02.json").read_text())
    assert report["success"] and report["n_rows"] == flights["rows_valid"]
