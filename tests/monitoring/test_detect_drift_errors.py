"""jobs/detect_drift.py's user errors: one clear line and exit code 2, before any Spark work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flightdeck.core.errors import FlightdeckError
from flightdeck.core.jobargs import load_job, run
from flightdeck.monitoring.drift_run import DriftRunError, one_partition


def test_one_partition_only() -> None:
    assert one_partition([dt.date(2013, 7, 2)]) == dt.date(2013, 7, 2)
    with pytest.raises(DriftRunError, match="takes one partition; got 2"):
        one_partition([dt.date(2013, 7, 1), dt.date(2013, 7, 2)])
    assert issubclass(DriftRunError, FlightdeckError)


def test_several_partitions_exit_2(lake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = load_job("detect_drift").main
    assert run(main, ["--partition", "2013-07-01..2013-07-02", "--model-version", "1"]) == 2
    assert "detect_drift takes one partition; got 2" in capsys.readouterr().err


def test_unknown_alias_exit_2(
    lake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    main = load_job("detect_drift").main
    assert run(main, ["--partition", "2013-07-01", "--model-version", "champion"]) == 2
    assert "no version with alias 'champion'" in capsys.readouterr().err
