"""Training and evaluation with a delayed label source see only the outcomes arrived by the cut.

The bikes config (``dataset.labels``: the hourly counts arrive days after the hour). Features
partitions carry no label; the label source's bronze partitions are arrival days. The expected
labels, days and counts below are written by hand from the rows the test writes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightdeck.core.config import PipelineConfig, load_config
from flightdeck.core.lake import Lake
from flightdeck.data.sparkio import read_partitions, write_partitions
from flightdeck.model.documents import Manifest, TrainResult
from flightdeck.model.evaluation import holdout_with_arrived_labels
from flightdeck.model.reproduce import ReproductionError, _check_same_data, _with_arrived_labels
from flightdeck.model.train_run import TrainRequest, _run_params, split_window

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
HOURS = [f"{h % 12 or 12}{'am' if h < 12 else 'pm'}" for h in range(24)]
FEATURE_DAYS = [dt.date(2011, 3, d) for d in range(1, 11)]  # Mar 1..10
CUT = dt.date(2011, 3, 10)


def _config(tmp_path: Path, *, delayed: bool = True) -> PipelineConfig:
    raw = yaml.safe_load((ROOT / "include" / "config" / "bikes.yaml").read_text())
    raw["model"] |= {"holdout_days": 2, "validation_days": 0}
    if not delayed:
        del raw["dataset"]["labels"]
        del raw["validation"]["bronze"]["rental_counts"]
    path = tmp_path / "bikes.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, environ={})


def _count(day: dt.date, hr: str) -> int:
    return day.day * 100 + HOURS.index(hr)


def _write_features(spark: Any, cfg: PipelineConfig, lake: Lake, *, with_label: bool) -> None:
    numeric = cfg.features.numeric
    cols = ["dteday", "hr", "season", "weathersit", *numeric, "rentals", "event_ts", "date"]
    rows = []
    for day in FEATURE_DAYS:
        for i, hr in enumerate(HOURS):
            label = float(_count(day, hr)) if with_label else None
            ts = dt.datetime.combine(day, dt.time(i))
            rows.append((day, hr, "Spring", "Clear", *[float(i)] * len(numeric), label, ts, day))
    schema = ", ".join(
        ["dteday date, hr string, season string, weathersit string"]
        + [f"{c} double" for c in numeric]
        + ["rentals double, event_ts timestamp, date date"]
    )
    df = spark.createDataFrame(rows, schema).select(*cols)
    write_partitions(df, lake, "features", "rentals", FEATURE_DAYS)


def _write_outcomes(spark: Any, lake: Lake) -> None:
    """Counts arrive two days after their hour; Mar 9 and 10 have none by the cut; four exceptions."""
    late = {(dt.date(2011, 3, 5), "3am"), (dt.date(2011, 3, 8), "4am")}  # arrive Mar 11, after the cut
    rows = []
    for day in FEATURE_DAYS:
        for hr in HOURS:
            arrival = dt.date(2011, 3, 11) if (day, hr) in late else day + dt.timedelta(days=2)
            rows.append((day, hr, _count(day, hr), arrival))
    mar4 = dt.date(2011, 3, 4)
    rows += [
        (mar4, "1am", 12, dt.date(2011, 3, 9)),  # a correction known by the cut: it wins
        (mar4, "2am", 99, dt.date(2011, 3, 11)),  # a correction after the cut: not seen
    ]
    out = [
        (d, hr, 0, n, n, dt.datetime.combine(arrival, dt.time(6)), arrival)
        for d, hr, n, arrival in rows
        if arrival <= dt.date(2011, 3, 11)
    ]
    schema = "dteday date, hr string, casual int, registered int, cnt int, known_at timestamp, date date"
    df = spark.createDataFrame(out, schema)
    write_partitions(df, lake, "bronze", "rental_counts", sorted({r[-1] for r in out}))


def test_training_and_evaluation_see_only_arrived_labels(spark: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    lake = Lake(str(tmp_path / "lake"))
    _write_features(spark, cfg, lake, with_label=False)
    _write_outcomes(spark, lake)

    split = split_window(spark, cfg, lake, TrainRequest(FEATURE_DAYS[0], CUT))
    # Mar 9 and 10 have no outcome by Mar 10: they leave the window; the holdout is Mar 7..8.
    assert split.holdout == ["2011-03-07", "2011-03-08"]
    assert split.train == [f"2011-03-0{d}" for d in range(1, 7)]
    assert split.unlabelled == {"2011-03-05": 1, "2011-03-08": 1, "2011-03-09": 24, "2011-03-10": 24}
    assert split.labels_known_by == "2011-03-10"
    assert split.rows(split.train) == 6 * 24 - 1 and split.rows(split.holdout) == 2 * 24 - 1
    labels = {(str(r["dteday"]), r["hr"]): r["rentals"] for r in split.df.collect()}
    assert ("2011-03-05", "3am") not in labels and ("2011-03-08", "4am") not in labels
    assert labels[("2011-03-04", "1am")] == 12.0  # the correction that arrived by the cut
    assert labels[("2011-03-04", "2am")] == 402.0  # the first value: its correction came after
    assert labels[("2011-03-06", "11pm")] == 623.0
    assert set(split.df.columns) == set(spark.read.parquet(lake.table("features", "rentals")).columns)
    params = _run_params(cfg, split, TrainRequest(FEATURE_DAYS[0], CUT), {"params": {}, "trial": 0}, 1)
    assert params["unlabelled_rows"] == 50 and params["labels_known_by"] == "2011-03-10"

    # Evaluation re-reads the holdout and labels it as training did (outcomes known by Mar 10).
    train = TrainResult(
        model_name=cfg.model.name, version="1", run_id="r", train_partitions=split.train,
        validation_partitions=[], holdout_partitions=split.holdout, metrics={}, chosen_params={},
        trials=1, reason="test", seconds=0.0, labels_known_by="2011-03-10", unlabelled_rows=50,
    )  # fmt: skip
    holdout = holdout_with_arrived_labels(
        spark, cfg, lake, read_partitions(spark, lake, "features", "rentals", split.holdout), train
    )
    got = {(str(r["dteday"]), r["hr"]): r["rentals"] for r in holdout.collect()}
    assert len(got) == 47 and ("2011-03-08", "4am") not in got
    assert got[("2011-03-08", "5am")] == 805.0

    # Reproduction labels the window as of the manifest's cut: the correction that arrived on
    # Mar 11 (after it) leaves the data fingerprint as it was; a later cut would not.
    manifest = Manifest(
        model_name=cfg.model.name, train_start="2011-03-01", train_end="2011-03-10",
        train_partitions=split.train, holdout_partitions=split.holdout,
        data_fingerprint=split.fingerprint(), labels_known_by="2011-03-10",
    )  # fmt: skip
    features = read_partitions(spark, lake, "features", "rentals", [*split.train, *split.holdout])
    _check_same_data(_with_arrived_labels(spark, cfg, lake, features, manifest), cfg, manifest)
    later = manifest.model_copy(update={"labels_known_by": "2011-03-11"})
    with pytest.raises(ReproductionError, match="2011-03-04"):
        _check_same_data(_with_arrived_labels(spark, cfg, lake, features, later), cfg, manifest)


def test_without_a_label_source_the_label_is_the_entity_s(spark: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, delayed=False)
    lake = Lake(str(tmp_path / "lake"))
    _write_features(spark, cfg, lake, with_label=True)

    split = split_window(spark, cfg, lake, TrainRequest(FEATURE_DAYS[0], CUT))
    assert split.holdout == ["2011-03-09", "2011-03-10"] and split.unlabelled == {}
    assert split.labels_known_by is None and split.rows([d.isoformat() for d in FEATURE_DAYS]) == 240
    params = _run_params(cfg, split, TrainRequest(FEATURE_DAYS[0], CUT), {"params": {}, "trial": 0}, 1)
    assert "unlabelled_rows" not in params
