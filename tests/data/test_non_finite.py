"""Numbers that are not numbers, and records that span lines, through a real Spark ingest.

``NaN``, ``Infinity``, ``-inf``, ``inf`` and ``1e400`` all cast to doubles; each such row is
quarantined with ``non_finite:<column>`` and the day's bronze suite (ranges that NaN would
slip through and Infinity would fail) passes on the other rows. A quoted field holding a line
break is one row, and the ledger counts the file's logical rows. Expected values are written
here by hand from the file this test writes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import Column, FileFormat, PartitionDate, TimeSeriesSource, load_config
from flightdeck.core.lake import Lake
from flightdeck.data import ingest
from flightdeck.data.ingest_run import ingest_range
from flightdeck.data.landing import inbox_file
from flightdeck.data.sparkio import read_partitions

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "include" / "config" / "bikes.yaml")
DAY = dt.date(2011, 2, 1)
HEADER = "dteday,season,hr,holiday,weekday,workingday,weathersit,temp,atemp,hum,windspeed,casual,registered,cnt"
HOURS = [f"{h}{m}" for m in ("am", "pm") for h in (12, *range(1, 12))]


def _row(
    hr: str, temp: str = "5.0", atemp: str = "3.0", hum: str = "50.0", wind: str = "10.0", sit: str = "Clear"
) -> str:
    return f"2011-02-01,winter,{hr},No,Tue,Yes,{sit},{temp},{atemp},{hum},{wind},1,20,21"


def test_non_finite_tokens_are_quarantined_and_a_multi_line_record_is_one_row(
    spark: Any, lake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIGHTDECK_CONFIG", CONFIG)
    # Six of 24 rows are bad on purpose; the bikes budget (10%) would hold the day back.
    monkeypatch.setenv("FLIGHTDECK__INGEST__MAX_QUARANTINE_SHARE", "0.5")
    cfg = load_config()
    lake = Lake(str(lake_root))
    bad = {
        _row(HOURS[0], temp="NaN"): "non_finite:temp",
        _row(HOURS[1], atemp="Infinity"): "non_finite:atemp",
        _row(HOURS[2], hum="-inf"): "non_finite:hum",
        _row(HOURS[3], wind="inf"): "non_finite:windspeed",
        _row(HOURS[4], temp="1e400"): "non_finite:temp",
        # Two reasons: the first one is the row's reason.
        _row(HOURS[5], temp="-Infinity", hum="nan"): "non_finite:temp",
    }
    multi = _row(HOURS[6], sit='"Clear,\nthen mist"')
    good = [multi, *[_row(hr) for hr in HOURS[7:]]]
    lines = [*bad, *good]
    assert len(lines) == 24  # logical rows; the file has 25 physical lines of data
    path = Path(inbox_file(lake, cfg.dataset.entity, DAY))
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")

    result = ingest_range(spark, cfg, lake, [DAY])

    assert result.budget_failures == [] and result.validation_failures == []
    ledger = result.ledger[DAY.isoformat()]["rentals"]
    assert (ledger.rows_in, ledger.rows_valid, ledger.rows_quarantined) == (24, 18, 6)
    assert ledger.reasons == {
        "non_finite:atemp": 1,
        "non_finite:hum": 1,
        "non_finite:temp": 3,
        "non_finite:windspeed": 1,
    }
    stored = read_partitions(spark, lake, "monitoring", "ingest_ledger", [DAY.isoformat()]).collect()
    assert [(r["rows_in"], r["rows_valid"], r["rows_quarantined"]) for r in stored] == [(24, 18, 6)]

    quarantine = read_partitions(spark, lake, "quarantine", "rentals", [DAY.isoformat()]).collect()
    assert {r["raw_line"]: r["reason"] for r in quarantine} == bad
    both = next(r for r in quarantine if r["raw_line"].startswith(f"2011-02-01,winter,{HOURS[5]},"))
    # NaN sorts above every number in Spark, so the row rule "hum > 100" holds for it too.
    assert both["reasons"] == ["non_finite:temp", "non_finite:hum", "humidity_out_of_range"]

    # Bronze is committed (the suite passed) and holds only finite numbers.
    assert lake.is_committed("bronze", "rentals", DAY)
    bronze = read_partitions(spark, lake, "bronze", "rentals", [DAY.isoformat()]).collect()
    assert sorted(r["hr"] for r in bronze) == sorted(HOURS[6:])
    for r in bronze:
        assert all(math.isfinite(r[c]) for c in ("temp", "atemp", "hum", "windspeed"))
    assert next(r for r in bronze if r["hr"] == HOURS[6])["weathersit"] == "Clear,\nthen mist"
    report = json.loads((lake_root / "monitoring" / "validation" / "bronze_rentals" / f"{DAY}.json").read_text())
    assert report["success"]


def _source(fmt: FileFormat) -> TimeSeriesSource:
    return TimeSeriesSource(
        name="events",
        columns=[
            Column(name="id", type="int", required=True),
            Column(name="day", type="date", required=True),
            Column(name="amount", type="double"),
            Column(name="note", type="string"),
        ],
        keys=["id"],
        partition_date=PartitionDate(column="day"),
        event_time="day",
        format=fmt,
    )


def _ledger(spark: Any, path: Path, source: TimeSeriesSource) -> tuple[ingest.LandingFile, Any, dict[int, Any]]:
    files = [ingest.inspect_landing_file(str(path), source, "2024-03-09")]
    raw = ingest.read_landing(spark, files, source)
    classified = ingest.classify_rows(raw, source)
    valid, _ = ingest.split_rows(classified, source)
    ledger = ingest.build_ledgers(raw, classified, source)["2024-03-09"]
    return files[0], ledger, {r["id"]: r for r in valid.collect()}


def test_line_breaks_past_the_head_need_the_declared_dialect(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract check reads a file's head only; past it, ``format.multi_line`` says how to read."""
    monkeypatch.setattr(ingest, "HEAD_BYTES", 256)
    rows = [f"{i},2024-03-09,{i}.5,plain" for i in range(1, 41)]  # ~800 bytes: well past the head
    rows.append('41,2024-03-09,1.0,"a note\nover two lines"')
    path = tmp_path / "events_2024-03-09.csv"
    path.write_text("id,day,amount,note\n" + "\n".join(rows) + "\n")

    # Declared: one task reads the file whole, the record is one row, the ledger counts 41.
    lf, ledger, valid = _ledger(spark, path, _source(FileFormat(multi_line=True)))
    assert lf.multi_line
    assert (ledger.rows_in, ledger.rows_valid, ledger.rows_quarantined) == (41, 41, 0)
    assert valid[41]["note"] == "a note\nover two lines"

    # Not declared, and the head shows no quoted line break: read by lines, the record splits
    # in two; its first line passes with the field cut at the break, the second is
    # quarantined, and the ledger reconciles over 42 rows (what declaring the dialect avoids).
    lf, ledger, valid = _ledger(spark, path, _source(FileFormat()))
    assert not lf.multi_line
    assert (ledger.rows_in, ledger.rows_valid, ledger.rows_quarantined) == (42, 41, 1)
    assert valid[41]["note"] != "a note\nover two lines"

    # A quote never closed past the head swallows the rest of the file: the read stops at the
    # field bound and the file is named, instead of one huge value in memory.
    monkeypatch.setattr(ingest, "MAX_FIELD_CHARS", 100)
    rows[-1] = '41,2024-03-09,1.0,"never closed'
    path.write_text("id,day,amount,note\n" + "\n".join(rows + [f"{i},2024-03-09,1.0,x" for i in range(42, 60)]) + "\n")
    with pytest.raises(ingest.IngestContractError, match="never closed") as err:
        _ledger(spark, path, _source(FileFormat(multi_line=True)))
    assert path.name in str(err.value)


def test_contract_checks_read_the_head_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes past the head are Spark's to read: invalid UTF-8 there does not fail the check."""
    monkeypatch.setattr(ingest, "HEAD_BYTES", 64)
    path = tmp_path / "events_2024-03-09.csv"
    path.write_bytes(b"id,day,amount,note\n" + b"1,2024-03-09,1.0,a\n" * 10 + b"2,2024-03-09,1.0,Orl\xe9ans\n")
    lf = ingest.inspect_landing_file(str(path), _source(FileFormat()), "2024-03-09")
    assert lf.header == ["id", "day", "amount", "note"] and not lf.multi_line
    # Within the head the same byte is named, with its line.
    monkeypatch.setattr(ingest, "HEAD_BYTES", 1 << 20)
    with pytest.raises(ingest.IngestContractError, match=r"not valid UTF-8: byte 0xe9 at line 12"):
        ingest.inspect_landing_file(str(path), _source(FileFormat()), "2024-03-09")
    # A head that ends inside a multi-line record says the file is multi-line (not "never closed").
    monkeypatch.setattr(ingest, "HEAD_BYTES", 52)
    path.write_bytes(b'id,day,amount,note\n1,2024-03-09,1.0,"first\nsecond\nthird\nfourth\nfifth"\n')
    assert ingest.inspect_landing_file(str(path), _source(FileFormat()), "2024-03-09").multi_line
