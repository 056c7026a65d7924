"""Ingest: every landed row ends in bronze or quarantine with its reason; whole-file errors are clear."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import ingest, landing
from flightdeck.data.sparkio import read_partitions

pytestmark = pytest.mark.spark

HEADER = (
    "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,"
    "tailnum,origin,dest,air_time,distance,hour,minute,time_hour"
)
COLS = HEADER.split(",")
GOOD = dict(
    zip(
        COLS,
        [
            "2013",
            "1",
            "2",
            "517",
            "515",
            "2",
            "830",
            "819",
            "11",
            "UA",
            "1545",
            "N14228",
            "EWR",
            "IAH",
            "227",
            "1400",
            "5",
            "15",
            "2013-01-02T10:00:00Z",
        ],
        strict=True,
    )
)


def row(**changes: str) -> str:
    return ",".join({**GOOD, **changes}[c] for c in COLS)


# One row per row-level reason (a file's worth of each class of bad row), with the reason it must get.
BAD_ROWS = {
    row(flight="2", dep_delay="abc"): "unparseable:dep_delay",
    row(flight="12", time_hour="2013-01-02 25:99"): "unparseable:time_hour",
    row(flight="13", dep_time="5:17"): "unparseable:dep_time",
    row(flight="3", distance="-5"): "negative_distance",
    row(flight="14", air_time="-1"): "negative_air_time",
    row(flight="4", hour="25"): "hour_out_of_range",
    row(flight="15", minute="61"): "minute_out_of_range",
    row(flight="16", month="2", day="30"): "invalid_date",
    row(flight="5", carrier="NA"): "missing_required:carrier",
    row(flight="", origin="LGA"): "missing_required:flight",
    row(flight="17", origin=""): "missing_required:origin",
    row(flight="6", carrier="ZZ"): "unknown_reference:carrier",
    row(flight="18", origin="XYZ"): "unknown_reference:origin",
    row(flight="7", day="3", time_hour="2013-01-03T10:00:00Z"): "wrong_partition",
    row(flight="8", dest="XXX"): "unknown_reference:dest",
    row(): "duplicate_key",  # the same business key as the first GOOD row
    row(flight="19") + ",oops": "extra_fields",  # an unquoted delimiter: more fields than the header
}


@pytest.fixture()
def refs(spark: Any) -> dict[str, Any]:
    return {
        "airlines": spark.createDataFrame([("UA", "United"), ("AA", "American")], "carrier string, name string"),
        "airports": spark.createDataFrame([(c,) for c in ("EWR", "LGA", "JFK", "IAH", "ORD")], "faa string"),
    }


def _land(tmp_path: Path, lines: list[str], name: str = "flights_2013-01-02.csv", header: str = HEADER) -> str:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def test_each_bad_row_is_quarantined_with_its_reason(spark: Any, tmp_path: Path, refs: dict[str, Any]) -> None:
    cfg = load_config()
    source = cfg.dataset.entity
    good = [row(), row(flight="10", carrier="AA", origin="JFK", dest="ORD"), row(flight="11", arr_delay="NA")]
    path = _land(tmp_path, [good[0], *BAD_ROWS, *good[1:]])
    files = [ingest.inspect_landing_file(path, source, "2013-01-02")]
    raw = ingest.read_landing(spark, files, source)
    valid, quarantine = ingest.split_rows(ingest.classify_rows(raw, source, refs, cfg.dataset.reference), source)

    got = {r["raw_line"]: (r["reason"], r["source_file"], r["date"]) for r in quarantine.collect()}
    assert got == {line: (reason, path, "2013-01-02") for line, reason in BAD_ROWS.items()}
    assert sorted(r["flight"] for r in valid.collect()) == [10, 11, 1545]
    typed = {f.name: f.dataType.simpleString() for f in valid.schema.fields}
    assert typed["flight"] == "int" and typed["distance"] == "double" and typed["time_hour"] == "timestamp"
    assert valid.where("flight = 11").first()["arr_delay"] is None  # NA is a null marker, not an error

    ledgers = ingest.build_ledgers(raw, ingest.classify_rows(raw, source, refs, cfg.dataset.reference), source)
    ledger = ledgers["2013-01-02"]
    assert (ledger.rows_in, ledger.rows_valid, ledger.rows_quarantined) == (20, 3, 17)
    assert ledger.rows_in == ledger.rows_valid + ledger.rows_quarantined
    assert ledger.reasons == dict.fromkeys(sorted(BAD_ROWS.values()), 1)


def test_all_reasons_are_kept_and_first_is_reason(spark: Any, tmp_path: Path, refs: dict[str, Any]) -> None:
    cfg = load_config()
    path = _land(tmp_path, [row(flight="x1", distance="-1", hour="30")])
    files = [ingest.inspect_landing_file(path, cfg.dataset.entity, "2013-01-02")]
    raw = ingest.read_landing(spark, files, cfg.dataset.entity)
    classified = ingest.classify_rows(raw, cfg.dataset.entity, refs, cfg.dataset.reference)
    _, quarantine = ingest.split_rows(classified, cfg.dataset.entity)
    r = quarantine.first()
    assert r["reasons"] == ["unparseable:flight", "negative_distance", "hour_out_of_range"]
    assert r["reason"] == "unparseable:flight"  # present but not an int: unparseable, not missing


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        (HEADER + "\n", "only a header"),
        (HEADER.replace(",distance", ",dist") + "\n" + row() + "\n", r"lacks columns \['distance'\]"),
        (HEADER.replace("carrier", "airline") + "\n" + row() + "\n", r"lacks columns \['carrier'\]"),
        (HEADER.replace(",", ";") + "\n" + row().replace(",", ";") + "\n", "not comma-separated.*split by semicolons"),
        (HEADER.replace(",", "\t") + "\n" + row().replace(",", "\t") + "\n", "not comma-separated.*split by tabs"),
        (HEADER + ",year\n" + row() + ",2013\n", r"repeats columns \['year'\]"),
        ("\n\n  \n", "is empty"),
    ],
)
def test_whole_file_violations_raise(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "flights_2013-01-02.csv"
    path.write_text(content)
    with pytest.raises(ingest.IngestContractError, match=message) as err:
        ingest.inspect_landing_file(str(path), load_config().dataset.entity, "2013-01-02")
    assert str(path) in str(err.value) and "expected header: year,month,day" in str(err.value)


def test_undecodable_bytes_raise_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "flights_2013-01-02.csv"
    latin1 = row(tailnum="N\u00e9").encode("latin-1")  # é as one byte 0xe9: not UTF-8
    path.write_bytes(HEADER.encode() + b"\n" + row().encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(ingest.IngestContractError, match=r"not valid UTF-8: byte 0xe9 at line 3") as err:
        ingest.inspect_landing_file(str(path), load_config().dataset.entity, "2013-01-02")
    assert str(path) in str(err.value) and "expected header: year,month,day" in str(err.value)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "flights_2013-01-02.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\n" + row().encode() + b"\n")
    assert ingest.inspect_landing_file(str(path), load_config().dataset.entity, "2013-01-02").header == COLS


def test_extra_columns_rejected_by_policy(tmp_path: Path) -> None:
    path = _land(tmp_path, [row() + ",x"], header=HEADER + ",note")
    with pytest.raises(ingest.IngestContractError, match=r"extra columns \['note'\] and ingest.extra_columns"):
        ingest.inspect_landing_file(path, load_config().dataset.entity, "2013-01-02", extra_columns="reject")


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ingest.IngestContractError, match="not found"):
        ingest.inspect_landing_file(str(tmp_path / "nope.csv"), load_config().dataset.entity, "2013-01-02")


def test_extra_and_reordered_columns_are_read_by_name(spark: Any, tmp_path: Path, refs: dict[str, Any]) -> None:
    cfg = load_config()
    cols = ["note", *reversed(COLS)]
    line = ",".join(["hello", *reversed(row().split(","))])
    path = _land(tmp_path, [line], header=",".join(cols))
    lf = ingest.inspect_landing_file(path, cfg.dataset.entity, "2013-01-02")
    assert lf.extra_columns == ["note"]
    raw = ingest.read_landing(spark, [lf], cfg.dataset.entity)
    classified = ingest.classify_rows(raw, cfg.dataset.entity, refs, cfg.dataset.reference)
    valid, quarantine = ingest.split_rows(classified, cfg.dataset.entity)
    assert quarantine.count() == 0
    assert valid.first()["flight"] == 1545 and valid.first()["carrier"] == "UA"


def _ledger(lake: Lake, date: str) -> dict[str, dict[str, Any]]:
    return {
        r["source"]: r.asDict()
        for r in read_partitions(lake_spark(), lake, "monitoring", "ingest_ledger", [date]).collect()
    }


def lake_spark() -> Any:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    assert session is not None
    return session


def _checksums(folder: Path) -> list[str]:
    """SHA-256 of each data file of a partition, in order (file names hold a per-write id)."""
    import hashlib

    files = sorted(folder.glob("*.parquet"))
    assert files, f"no data files in {folder}"
    return sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


def test_job_budget_rerun_and_ledger(spark: Any, lake_root: Path) -> None:
    cfg = load_config()
    lake = Lake(str(lake_root))
    landing.land_reference(cfg, lake)
    landing.land_day(cfg, lake, "2013-01-02")
    job = load_job("ingest")

    job.main(["--partition", "2013-01-02", "--run-key", "t1"])
    bronze = read_partitions(spark, lake, "bronze", "flights", ["2013-01-02"])
    first = Counter(tuple(r) for r in bronze.drop("date").collect())  # rows hold nulls: compare as multisets
    ledger = _ledger(lake, "2013-01-02")
    assert ledger["flights"]["rows_in"] == 943 == first.total() + ledger["flights"]["rows_quarantined"]
    assert json.loads(ledger["flights"]["reasons"]) == {"unknown_reference:dest": 26}  # SJU, BQN, PSE, STT
    assert ledger["weather"]["rows_valid"] == 72
    run_doc = json.loads((lake_root / "runs" / "t1" / "ingest.json").read_text())
    assert run_doc["ledger"]["2013-01-02"]["flights"]["rows_valid"] == first.total()

    for suite in ("bronze_flights", "bronze_weather"):  # the bronze suites ran; their Data Docs are kept
        report = json.loads((lake_root / "monitoring" / "validation" / suite / "2013-01-02.json").read_text())
        assert report["success"] and report["suite"] == suite
        assert (lake_root / "monitoring" / "data_docs" / suite / "2013-01-02.html").read_text().startswith("<!DOCTYPE")
    day = "date=2013-01-02"
    checksums = {zone: _checksums(lake_root / zone / "flights" / day) for zone in ("bronze", "quarantine")}

    # Rerun: the partition is replaced, not appended, byte for byte.
    job.main(["--partition", "2013-01-02"])
    again = Counter(
        tuple(r) for r in read_partitions(spark, lake, "bronze", "flights", ["2013-01-02"]).drop("date").collect()
    )
    assert again == first
    for zone, sums in checksums.items():
        assert _checksums(lake_root / zone / "flights" / day) == sums, zone

    # Over budget: quarantine + ledger written, bronze for that date not touched.
    path = Path(lake.landing_file("flights", "2013-01-03"))
    landing.land_day(cfg, lake, "2013-01-03")
    lines = path.read_text().splitlines()
    bad = [ln.replace(",EWR,", ",XXX,").replace(",LGA,", ",XXX,").replace(",JFK,", ",XXX,") for ln in lines[1:101]]
    path.write_text("\n".join([lines[0], *bad, *lines[101:]]) + "\n")
    with pytest.raises(ingest.QuarantineBudgetExceeded, match=r"flights 2013-01-03: 1\d\d of 914 rows quarantined"):
        job.main(["--partition", "2013-01-03"])
    assert lake.is_committed("quarantine", "flights", "2013-01-03")
    assert _ledger(lake, "2013-01-03")["flights"]["rows_quarantined"] >= 100
    assert not lake.is_committed("bronze", "flights", "2013-01-03")
    assert lake.is_committed("bronze", "weather", "2013-01-03")
