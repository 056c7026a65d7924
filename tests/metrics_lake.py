"""A small lake written by hand with the real document classes, for the metrics tests.

Two ingested days of two sources, three timed job stages over two runs, two gate decisions
(one passed), champion moves 1 -> 2 -> 3 and a challenger at 4, two drift reports (the
newest without labels, the older one with a labelled day), three retrain requests (one
consumed, one expired, one open), and two committed predictions partitions (plus one
uncommitted). ``EXPECTED`` holds the numbers written here, typed out by hand: the tests
compare what the collector (or Prometheus) reports with these, never with a recomputation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flightdeck.core.lake import Lake, write_json
from flightdeck.data.documents import BuildFeaturesResult, IngestLedgerEntry, IngestResult
from flightdeck.model.documents import GateResult, LedgerEntry, ScoreResult
from flightdeck.monitoring.documents import RetrainRequest, write_retrain_request

MODEL = "flightdeck-late-arrival"  # the default (flights) configuration's model
ENTITY = "flights"
DAY1, DAY2 = "2013-07-01", "2013-07-02"
PREDICTIONS_COMMIT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)  # the newest partition's marker mtime

EXPECTED: dict[str, Any] = {
    "quarantined": {(DAY2, "flights"): 25, (DAY2, "weather"): 0, (DAY1, "flights"): 3},
    "rows_in": {(DAY2, "flights"): 1000, (DAY2, "weather"): 48},
    "day2_quarantined_total": 25,
    "wall_seconds": {"ingest": (2, 30.0), "build_features": (1, 12.5), "score": (1, 8.0)},
    "last_ingest_seconds": 20.0,
    "last_ingest_cpu_seconds": 4.5,
    "scored_rows_all": 7 + 5,
    "scored_rows_newest": 5,
    "newest_predictions": DAY2,
    "throughput": 400 / 8.0,
    "most_drifted": ("wx_temp", 0.62),
    "feature_psi": {"wx_temp": 0.62, "distance": 0.03, "dep_hour": 0.11},
    "prediction_psi": 0.27,
    "drifted_share": 1 / 3,
    "live_roc_auc": 0.71,
    "holdout_roc_auc": 0.76,
    "gate": {"pass": 1, "fail": 1},
    "champion": 3,
    "challenger": 4,
    "requests": 3,
    "requests_open": 1,
    "commit_ts": PREDICTIONS_COMMIT.timestamp(),
}


def _ledger_table(lake: Lake, date: str, entries: list[IngestLedgerEntry]) -> None:
    folder = Path(lake.partition("monitoring", "ingest_ledger", date))
    folder.mkdir(parents=True)
    rows = [
        {
            "source": e.source,
            "rows_in": e.rows_in,
            "rows_valid": e.rows_valid,
            "rows_quarantined": e.rows_quarantined,
            "quarantine_share": e.quarantine_share,
            "reasons": json.dumps(e.reasons, sort_keys=True),
        }
        for e in entries
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-00000.parquet")
    (folder / "_SUCCESS").touch()


def _ingest(date: str, seconds: float, entries: list[IngestLedgerEntry], cpu: float | None = None) -> IngestResult:
    return IngestResult(
        partitions=[date],
        references={},
        ledger={date: {e.source: e for e in entries}},
        rows_in=sum(e.rows_in for e in entries),
        rows_quarantined=sum(e.rows_quarantined for e in entries),
        missing_files={},
        extra_columns={},
        budget_failures=[],
        validation_failures=[],
        seconds=seconds,
        cpu_seconds=cpu,
    )


def _set_mtime(path: str, when: dt.datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def _predictions(lake: Lake, date: str, rows: int, *, commit: dt.datetime | None) -> None:
    folder = Path(lake.partition("predictions", ENTITY, date))
    folder.mkdir(parents=True)
    table = pa.table({"probability": [0.5] * rows, "model_version": ["3"] * rows})
    pq.write_table(table, folder / "part-00000.parquet")
    if commit is not None:
        (folder / "_SUCCESS").touch()
        _set_mtime(str(folder / "_SUCCESS"), commit)


def _move(lake: Lake, alias: str, seq: int, frm: str | None, to: str, at: str) -> None:
    entry = LedgerEntry.model_validate(
        {"action": "promote", "alias": alias, "model_name": MODEL, "seq": seq, "from": frm, "to": to}
        | {"who": "test", "at": at, "why": "gate passed", "version": to, "previous": frm}
    )
    write_json(lake.promotion(f"{MODEL}-{alias}-{seq:06d}.json"), entry.to_json())


def build_metrics_lake(root: Path) -> Lake:
    """Write the lake described in the module docstring under ``root``."""
    lake = Lake(str(root))
    day1 = [IngestLedgerEntry(date=DAY1, source="flights", rows_in=900, rows_valid=897, rows_quarantined=3)]
    day2 = [
        IngestLedgerEntry(
            date=DAY2, source="flights", rows_in=1000, rows_valid=975, rows_quarantined=25, reasons={"bad_time": 25}
        ),
        IngestLedgerEntry(date=DAY2, source="weather", rows_in=48, rows_valid=48, rows_quarantined=0),
    ]
    _ledger_table(lake, DAY1, day1)
    _ledger_table(lake, DAY2, day2)

    # Job runs: the older run's documents get an older mtime, so "the newest run" is the second.
    old, new = "scheduled__2013-07-01T00:00:00+00:00", "scheduled__2013-07-02T00:00:00+00:00"
    _ingest(DAY1, 10.0, day1).write(lake, old)
    _ingest(DAY2, 20.0, day2, cpu=4.5).write(lake, new)
    BuildFeaturesResult.model_validate(
        {"table": "features_daily", "partitions": [DAY2], "seconds": 12.5}
        | {"rows": {DAY2: 975}, "timeseries_partitions": {}, "history_partitions": []}
    ).write(lake, new)
    ScoreResult(model_name=MODEL, model_version="3", partitions={DAY2: 400}, shadow_version=None, seconds=8.0).write(
        lake, new
    )
    for stage in ("ingest",):
        _set_mtime(lake.run_doc(old, stage), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    gate = {"candidate_roc_auc": 0.76, "champion_roc_auc": 0.74, "reasons": []}
    GateResult.model_validate({"candidate_version": "3", "champion_version": "2", "passed": True} | gate).write(
        lake, "manual__train-1"
    )
    GateResult.model_validate({"candidate_version": "4", "champion_version": "3", "passed": False} | gate).write(
        lake, "manual__train-2"
    )

    _move(lake, "champion", 1, None, "1", "2026-01-01T00:00:00+00:00")
    _move(lake, "champion", 2, "1", "2", "2026-01-02T00:00:00+00:00")
    _move(lake, "champion", 3, "2", "3", "2026-01-03T00:00:00+00:00")
    _move(lake, "challenger", 1, None, "4", "2026-01-03T00:00:01+00:00")

    psi = EXPECTED["feature_psi"]
    base = {"model_version": "3", "status": "ok", "n_rows": 975, "min_rows": 200, "drifted": ["wx_temp"]}
    labelled = {
        "date": DAY1,
        "task": "binary",
        "roc_auc": 0.71,
        "log_loss": 0.58,
        "reference": {"roc_auc": 0.76, "log_loss": 0.55},
        "status": "ok",
        "model_version": "3",
    }
    write_json(
        lake.drift_report(DAY1),
        base
        | {"date": DAY1, "psi": {"wx_temp": 0.05}, "prediction_psi": 0.01, "drifted_share": 0.0}
        | {"performance": labelled},
    )
    write_json(
        lake.drift_report(DAY2),
        base | {"date": DAY2, "psi": psi, "prediction_psi": 0.27, "drifted_share": 1 / 3, "performance": None},
    )

    # Requests: consumed; expired (older than request_ttl_days before DAY2); open (DAY2).
    write_retrain_request(lake, RetrainRequest(partition="2013-06-30", reason="drift", consumed_by="train-1"))
    write_retrain_request(lake, RetrainRequest(partition="2013-05-01", reason="drift"))
    write_retrain_request(lake, RetrainRequest(partition=DAY2, reason="drift", features={"wx_temp": 0.62}))

    _predictions(lake, DAY1, 7, commit=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    _predictions(lake, DAY2, 5, commit=PREDICTIONS_COMMIT)
    _predictions(lake, "2013-07-03", 9, commit=None)  # being written: not committed, not counted
    return lake
