"""Landing files in their declared formats: CSV dialects (delimiter, quote, encoding, gzip,
multi-line fields), JSON lines and Parquet read into the same typing, quarantine and ledger."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import Column, FileFormat, PartitionDate, ReferenceSource, TimeSeriesSource
from flightdeck.core.lake import Lake
from flightdeck.data import ingest

pytestmark = pytest.mark.spark

DAY = "2024-03-09"


def _source(fmt: FileFormat) -> TimeSeriesSource:
    return TimeSeriesSource(
        name="events",
        columns=[
            Column(name="id", type="int", required=True),
            Column(name="day", type="date", required=True),
            Column(name="amount", type="double"),
            Column(name="city", type="string", required=True),
            Column(name="note", type="string"),
        ],
        keys=["id"],
        partition_date=PartitionDate(column="day"),
        event_time="day",
        row_rules={"negative_amount": "amount < 0"},
        format=fmt,
    )


def _ingest(spark: Any, paths: list[Path], source: TimeSeriesSource, days: list[str] | None = None) -> dict[str, Any]:
    """Inspect, read, classify and split files; the valid rows by id, quarantine by raw line, the ledgers."""
    files = [ingest.inspect_landing_file(str(p), source, d) for p, d in zip(paths, days or [DAY], strict=True)]
    raw = ingest.read_landing(spark, files, source)
    classified = ingest.classify_rows(raw, source)
    valid, quarantine = ingest.split_rows(classified, source)
    return {
        "valid": {r["id"]: r.asDict() for r in valid.drop("date").collect()},
        "quarantine": {r["raw_line"]: r["reasons"] for r in quarantine.collect()},
        "ledgers": ingest.build_ledgers(raw, classified, source),
    }


def _reconciles(ledger: Any, rows_in: int, valid: int, reasons: dict[str, int]) -> None:
    assert (ledger.rows_in, ledger.rows_valid, ledger.rows_quarantined) == (rows_in, valid, rows_in - valid)
    assert ledger.reasons == reasons


# --- lake file names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        (FileFormat(), "events_2024-03-09.csv"),
        (FileFormat(kind="jsonl", compression="gzip"), "events_2024-03-09.jsonl.gz"),
        (FileFormat(kind="parquet"), "events_2024-03-09.parquet"),
        (FileFormat(delimiter=";", compression="gzip"), "events_2024-03-09.csv.gz"),
    ],
)
def test_landing_file_follows_the_format_extension(fmt: FileFormat, name: str) -> None:
    lake = Lake("/lake")
    assert lake.landing_file("events", DAY, fmt.extension) == f"/lake/landing/events/{name}"
    assert lake.reference_file("cities", fmt.extension) == f"/lake/landing/reference/cities.{fmt.extension}"
    assert lake.landing_file("flights", "2013-01-02") == "/lake/landing/flights/flights_2013-01-02.csv"


# --- CSV dialects ------------------------------------------------------------------------

# (line, reasons) in a semicolon file; the good rows first.
SEMICOLON_ROWS = [
    ('1;2024-03-09;12.5;"Lyon; Rhône";plain', None),
    ("2;2024-03-09;3.25;Paris;", None),
    ('3;2024-03-09;1.0;Nice;"she said ""hi"""', None),
    ("4;2024-03-09;abc;Paris;x", ["unparseable:amount"]),
    ("5;2024-03-09;1.0;;x", ["missing_required:city"]),
    ("6;2024-03-10;1.0;Paris;x", ["wrong_partition"]),
    ("7;2024-03-09;-2;Paris;x", ["negative_amount"]),
    ("2;2024-03-09;1.0;Paris;again", ["duplicate_key"]),
    ("8;2024-03-09;1.0;Paris;x;oops", ["extra_fields"]),
]


def test_semicolon_csv_with_its_declared_delimiter(spark: Any, tmp_path: Path) -> None:
    source = _source(FileFormat(delimiter=";"))
    path = tmp_path / f"events_{DAY}.csv"
    path.write_text("\n".join(["id;day;amount;city;note", *[line for line, _ in SEMICOLON_ROWS]]) + "\n")
    got = _ingest(spark, [path], source)

    assert got["valid"][2] == {"id": 2, "day": dt.date(2024, 3, 9), "amount": 3.25, "city": "Paris", "note": None}
    assert got["valid"][1]["city"] == "Lyon; Rhône" and got["valid"][1]["amount"] == 12.5
    assert got["valid"][3]["note"] == 'she said "hi"'
    # A quarantined line is shown in its own dialect, quoting as in the file.
    assert got["quarantine"] == {line: reasons for line, reasons in SEMICOLON_ROWS if reasons}
    _reconciles(
        got["ledgers"][DAY],
        9,
        3,
        {
            "duplicate_key": 1,
            "extra_fields": 1,
            "missing_required:city": 1,
            "negative_amount": 1,
            "unparseable:amount": 1,
            "wrong_partition": 1,
        },
    )


def test_other_delimiter_than_declared_is_named(tmp_path: Path) -> None:
    path = tmp_path / f"events_{DAY}.csv"
    path.write_text("id,day,amount,city,note\n1,2024-03-09,1.0,Paris,x\n")
    with pytest.raises(
        ingest.IngestContractError, match=r"not semicolon-separated \(its header is split by commas\)"
    ) as err:
        ingest.inspect_landing_file(str(path), _source(FileFormat(delimiter=";")), DAY)
    assert str(path) in str(err.value) and "expected header: id;day;amount;city;note" in str(err.value)
    path.write_text("id;day;amount;city;note\n1;2024-03-09;1.0;Paris;x\n")
    with pytest.raises(ingest.IngestContractError, match=r"not comma-separated \(its header is split by semicolons\)"):
        ingest.inspect_landing_file(str(path), _source(FileFormat()), DAY)


def test_latin1_csv_is_decoded_with_its_declared_encoding(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / f"events_{DAY}.csv"
    text = "id,day,amount,city,note\n1,2024-03-09,1.5,Orléans,çà\n2,2024-03-09,x,Besançon,\n"
    path.write_bytes(text.encode("latin-1"))
    got = _ingest(spark, [path], _source(FileFormat(encoding="latin-1")))
    assert got["valid"] == {1: {"id": 1, "day": dt.date(2024, 3, 9), "amount": 1.5, "city": "Orléans", "note": "çà"}}
    assert got["quarantine"] == {"2,2024-03-09,x,Besançon,": ["unparseable:amount"]}
    _reconciles(got["ledgers"][DAY], 2, 1, {"unparseable:amount": 1})

    # The same bytes declared UTF-8: the file fails, naming the byte, its line and offset.
    offset = text.encode("latin-1").index(b"\xe9")
    with pytest.raises(
        ingest.IngestContractError, match=rf"not valid UTF-8: byte 0xe9 at line 2 \(offset {offset}\)"
    ) as err:
        ingest.inspect_landing_file(str(path), _source(FileFormat()), DAY)
    assert str(path) in str(err.value) and "format.encoding" in str(err.value)


def test_gzip_csv_over_two_days(spark: Any, tmp_path: Path) -> None:
    source = _source(FileFormat(compression="gzip"))
    days = {"2024-03-09": ["1,2024-03-09,1.0,Lyon,a", "2,2024-03-09,,,b"], "2024-03-10": ["3,2024-03-10,2.0,Nice,c"]}
    paths = []
    for day, rows in days.items():
        path = tmp_path / f"events_{day}.csv.gz"
        path.write_bytes(gzip.compress(("\n".join(["id,day,amount,city,note", *rows]) + "\n").encode()))
        paths.append(path)
    got = _ingest(spark, paths, source, list(days))
    assert {i: (r["day"], r["amount"], r["city"]) for i, r in got["valid"].items()} == {
        1: (dt.date(2024, 3, 9), 1.0, "Lyon"),
        3: (dt.date(2024, 3, 10), 2.0, "Nice"),
    }
    assert got["quarantine"] == {"2,2024-03-09,,,b": ["missing_required:city"]}
    _reconciles(got["ledgers"]["2024-03-09"], 2, 1, {"missing_required:city": 1})
    _reconciles(got["ledgers"]["2024-03-10"], 1, 1, {})


def test_gzip_whole_file_errors_name_the_file(tmp_path: Path) -> None:
    source = _source(FileFormat(compression="gzip"))
    path = tmp_path / f"events_{DAY}.csv.gz"
    path.write_bytes(b"id,day,amount,city,note\n1,2024-03-09,1.0,Lyon,a\n")  # not gzipped
    with pytest.raises(ingest.IngestContractError, match="is not a valid gzip file") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)
    path.write_bytes(gzip.compress(b"id,day,amount,city,note\n1,2024-03-09,1.0,Orl\xe9ans,a\n"))
    with pytest.raises(ingest.IngestContractError, match=r"not valid UTF-8: byte 0xe9 at line 2 .*decompressed"):
        ingest.inspect_landing_file(str(path), source, DAY)
    path.write_bytes(gzip.compress(b"id,day,amount,city,note\n"))
    with pytest.raises(ingest.IngestContractError, match="holds only a header and no rows") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)


def test_quoted_fields_holding_line_breaks(spark: Any, tmp_path: Path) -> None:
    source = _source(FileFormat())
    good = '1,2024-03-09,1.0,Lyon,"first line\nsecond line"'
    bad = '2,2024-03-09,abc,Paris,"a note\r\nover two lines, with a comma"'
    path = tmp_path / f"events_{DAY}.csv"
    path.write_bytes(("id,day,amount,city,note\n" + good + "\n" + bad + "\n3,2024-03-09,2.0,Nice,\n").encode())
    lf = ingest.inspect_landing_file(str(path), source, DAY)
    assert lf.multi_line and lf.header == ["id", "day", "amount", "city", "note"]
    got = _ingest(spark, [path], source)
    assert got["valid"][1]["note"] == "first line\nsecond line"
    assert got["valid"][3] == {"id": 3, "day": dt.date(2024, 3, 9), "amount": 2.0, "city": "Nice", "note": None}
    assert got["quarantine"] == {bad: ["unparseable:amount"]}  # the whole record, line break and quotes kept
    _reconciles(got["ledgers"][DAY], 3, 2, {"unparseable:amount": 1})

    # The header check reads records, not lines: a header whose only row spans lines has rows.
    path.write_text('id,day,amount,city,note\n1,2024-03-09,1.0,Lyon,"a\nb"\n')
    assert ingest.inspect_landing_file(str(path), source, DAY).multi_line
    # A quote never closed would swallow every later line into one field: the file fails.
    path.write_text('id,day,amount,city,note\n1,2024-03-09,1.0,Lyon,ok\n2,2024-03-09,1.0,Paris,"open\n3,x,y,z,w\n')
    with pytest.raises(ingest.IngestContractError, match="quoted field opened at line 3 that is never closed") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)


# --- JSON lines --------------------------------------------------------------------------

JSONL_ROWS = [
    ('{"id": 1, "day": "2024-03-09", "amount": 1.25, "city": "Lyon", "note": {"k": [1, 2]}}', None),
    ('{"id": "2", "day": "2024-03-09", "amount": "7", "city": "Paris"}', None),  # strings and a missing key
    ('{"id": 3, "day": "2024-03-09", "amount": "abc", "city": "Nice", "note": null}', ["unparseable:amount"]),
    ('{"id": 4, "day": "2024-03-09", "amount": 1, "city": null}', ["missing_required:city"]),
    ('{"id": 5, "day": "2024-03-11", "amount": 1, "city": "Nice"}', ["wrong_partition"]),
    ('{"id": 1, "day": "2024-03-09", "amount": 2, "city": "Lyon"}', ["duplicate_key"]),
    ("not json at all", ["malformed_record"]),
    ("[1, 2, 3]", ["malformed_record"]),
    ('{"id": 6, "day": "2024-03-09"', ["malformed_record"]),
    ('{"id": 7, "day": "2024-03-09", "amount": 1, "city": "Lyon"} trailing', ["malformed_record"]),
]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_json_lines(spark: Any, tmp_path: Path, compression: str) -> None:
    source = _source(FileFormat(kind="jsonl", compression=compression))  # type: ignore[arg-type]
    body = (
        "\n".join([line for line, _ in JSONL_ROWS[:3]])
        + "\n\n   \n"
        + "\n".join(line for line, _ in JSONL_ROWS[3:])
        + "\n"
    ).encode()
    path = tmp_path / f"events_{DAY}.{source.format.extension}"
    path.write_bytes(gzip.compress(body) if compression == "gzip" else body)
    got = _ingest(spark, [path], source)

    assert got["valid"] == {
        1: {"id": 1, "day": dt.date(2024, 3, 9), "amount": 1.25, "city": "Lyon", "note": '{"k":[1,2]}'},
        2: {"id": 2, "day": dt.date(2024, 3, 9), "amount": 7.0, "city": "Paris", "note": None},
    }
    # Blank lines are not rows; a line that is not a JSON object keeps its raw text and one reason.
    assert got["quarantine"] == {line: reasons for line, reasons in JSONL_ROWS if reasons}
    _reconciles(
        got["ledgers"][DAY],
        10,
        2,
        {
            "duplicate_key": 1,
            "malformed_record": 4,
            "missing_required:city": 1,
            "unparseable:amount": 1,
            "wrong_partition": 1,
        },
    )


def test_json_lines_whole_file_errors_name_the_file(tmp_path: Path) -> None:
    source = _source(FileFormat(kind="jsonl"))
    path = tmp_path / f"events_{DAY}.jsonl"
    path.write_text('{"id": 1, "day": "2024-03-09", "amount": 1}\n{"id": 2, "day": "2024-03-09", "note": "x"}\n')
    with pytest.raises(ingest.IngestContractError, match=r"lacks columns \['city'\] in every line") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value) and "expected keys: id, day, amount, city, note" in str(err.value)
    path.write_text("\n \n")
    with pytest.raises(ingest.IngestContractError, match="is empty"):
        ingest.inspect_landing_file(str(path), source, DAY)
    path.write_text("id,day,amount,city,note\n1,2024-03-09,1.0,Lyon,a\n")  # a CSV named .jsonl
    with pytest.raises(ingest.IngestContractError, match=r"holds no JSON object \(lines \[1, 2\]") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)
    lf = ingest.inspect_landing_file(str(_jsonl(tmp_path, {"extra": 1})), source, DAY)
    assert lf.extra_columns == ["extra"]
    with pytest.raises(ingest.IngestContractError, match=r"extra columns \['extra'\]"):
        ingest.inspect_landing_file(str(_jsonl(tmp_path, {"extra": 1})), source, DAY, extra_columns="reject")


def test_latin1_json_lines(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / f"events_{DAY}.jsonl"
    line = '{"id": 1, "day": "2024-03-09", "amount": 2, "city": "Orléans", "note": "çà"}'
    path.write_bytes((line + "\n").encode("latin-1"))
    got = _ingest(spark, [path], _source(FileFormat(kind="jsonl", encoding="latin-1")))
    assert got["valid"] == {1: {"id": 1, "day": dt.date(2024, 3, 9), "amount": 2.0, "city": "Orléans", "note": "çà"}}


def test_unreadable_declared_formats_are_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, {})
    with pytest.raises(ingest.IngestError, match=r"JSON lines are read as UTF-8.*not 'utf-16'"):
        ingest.inspect_landing_file(str(path), _source(FileFormat(kind="jsonl", encoding="utf-16")), DAY)
    with pytest.raises(ingest.IngestError, match="unknown encoding 'klingon'"):
        ingest.inspect_landing_file(str(path), _source(FileFormat(encoding="klingon")), DAY)


def _jsonl(tmp_path: Path, more: dict[str, Any]) -> Path:
    path = tmp_path / f"events_{DAY}.jsonl"
    row = {"id": 1, "day": DAY, "amount": 1.0, "city": "Lyon", "note": "a", **more}
    path.write_text(json.dumps(row) + "\n")
    return path


# --- Parquet ------------------------------------------------------------------------------


def _parquet(path: Path, columns: dict[str, list[Any]], types: dict[str, Any] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = types or {}
    table = pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
    pq.write_table(table, path)
    return path


def test_parquet(spark: Any, tmp_path: Path) -> None:
    import pyarrow as pa

    source = _source(FileFormat(kind="parquet"))
    d = dt.date(2024, 3, 9)
    path = _parquet(
        tmp_path / f"events_{DAY}.parquet",
        {
            "note": ["a", None, "c", "d", "e", "f"],  # another column order than the config's
            "id": [1, 2, 3, 4, 5, 1],
            "day": [d, d, d, d, dt.date(2024, 3, 10), d],
            "amount": ["1.5", "abc", "-1", "2", "2", "3"],  # a string column: cast like any text
            "city": ["Lyon", "Paris", "Nice", None, "Nice", "Lyon"],
            "extra": [{"k": 1}] * 6,
        },
        {"id": pa.int64(), "day": pa.date32()},
    )
    got = _ingest(spark, [path], source)
    assert got["valid"] == {1: {"id": 1, "day": d, "amount": 1.5, "city": "Lyon", "note": "a"}}
    # raw_line: the row as JSON, in the file's column order, nulls kept.
    row = '{{"note":{n},"id":{i},"day":"{day}","amount":"{a}","city":{c},"extra":{{"k":1}}}}'
    assert got["quarantine"] == {
        row.format(n="null", i=2, day=DAY, a="abc", c='"Paris"'): ["unparseable:amount"],
        row.format(n='"c"', i=3, day=DAY, a="-1", c='"Nice"'): ["negative_amount"],
        row.format(n='"d"', i=4, day=DAY, a="2", c="null"): ["missing_required:city"],
        row.format(n='"e"', i=5, day="2024-03-10", a="2", c='"Nice"'): ["wrong_partition"],
        row.format(n='"f"', i=1, day=DAY, a="3", c='"Lyon"'): ["duplicate_key"],
    }
    _reconciles(
        got["ledgers"][DAY],
        6,
        1,
        {
            "duplicate_key": 1,
            "missing_required:city": 1,
            "negative_amount": 1,
            "unparseable:amount": 1,
            "wrong_partition": 1,
        },
    )


def test_parquet_whole_file_errors_name_the_file(tmp_path: Path) -> None:
    source = _source(FileFormat(kind="parquet"))
    path = _parquet(tmp_path / f"events_{DAY}.parquet", {"id": [1], "day": [DAY], "note": ["x"]})
    with pytest.raises(ingest.IngestContractError, match=r"lacks columns \['amount', 'city'\]") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value) and "expected columns: id, day, amount, city, note" in str(err.value)
    empty = {c: [] for c in ("id", "day", "amount", "city", "note")}
    _parquet(path, empty, dict.fromkeys(empty, __import__("pyarrow").string()))
    with pytest.raises(ingest.IngestContractError, match="holds no rows") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)
    path.write_text("id,day\n1,2024-03-09\n")
    with pytest.raises(ingest.IngestContractError, match="is not a Parquet file") as err:
        ingest.inspect_landing_file(str(path), source, DAY)
    assert str(path) in str(err.value)


# --- reference tables ---------------------------------------------------------------------


def _ref(fmt: FileFormat) -> ReferenceSource:
    return ReferenceSource(name="cities", key="city", column_types={"population": "long"}, format=fmt)


def test_reference_tables_in_every_format(spark: Any, tmp_path: Path) -> None:
    expected = {("Lyon", 522000, "Rhône"), ("Paris", None, "Île-de-France")}

    semicolon = tmp_path / "cities.csv.gz"
    text = "city;population;region\nLyon;522000;Rhône\nParis;NA;Île-de-France\n"
    semicolon.write_bytes(gzip.compress(text.encode("latin-1")))
    fmt = FileFormat(delimiter=";", encoding="latin-1", compression="gzip")
    got = ingest.read_reference(spark, str(semicolon), _ref(fmt))
    assert {tuple(r) for r in got.collect()} == expected
    assert dict(got.dtypes)["population"] == "bigint"

    jsonl = tmp_path / "cities.jsonl"
    jsonl.write_text(
        '{"city": "Lyon", "population": 522000, "region": "Rhône"}\n{"city": "Paris", "region": "Île-de-France"}\n'
    )
    got = ingest.read_reference(spark, str(jsonl), _ref(FileFormat(kind="jsonl")))
    assert {(r["city"], r["population"], r["region"]) for r in got.collect()} == expected

    parquet = _parquet(
        tmp_path / "cities.parquet",
        {"city": ["Lyon", "Paris"], "population": [522000, None], "region": ["Rhône", "Île-de-France"]},
    )
    got = ingest.read_reference(spark, str(parquet), _ref(FileFormat(kind="parquet")))
    assert {tuple(r) for r in got.collect()} == expected


def test_reference_whole_file_errors_name_the_file(tmp_path: Path) -> None:
    jsonl = tmp_path / "cities.jsonl"
    jsonl.write_text('{"city": "Lyon", "population": 1}\nnot json\n')
    with pytest.raises(ingest.IngestContractError, match=r"lines \[2\] that are not JSON objects") as err:
        ingest.read_reference(None, str(jsonl), _ref(FileFormat(kind="jsonl")))  # type: ignore[arg-type]
    assert str(jsonl) in str(err.value)
    parquet = _parquet(tmp_path / "cities.parquet", {"name": ["Lyon"], "population": [1]})
    with pytest.raises(ingest.IngestContractError, match=r"lacks columns \['city'\]") as err:
        ingest.read_reference(None, str(parquet), _ref(FileFormat(kind="parquet")))  # type: ignore[arg-type]
    assert str(parquet) in str(err.value)


# --- the ingest run finds each source's files by its format's extension ---------------------------


def test_ingest_run_reads_each_source_in_its_format(spark: Any, lake_root: Path) -> None:
    import csv
    import io

    from flightdeck.core.config import load_config
    from flightdeck.data import landing
    from flightdeck.data.ingest_run import ingest_range

    cfg = load_config()
    lake = Lake(str(lake_root))
    landing.land_reference(cfg, lake)
    landing.land_day(cfg, lake, "2013-01-02")
    # The upstream delivers the flights gzipped and the airlines table as JSON lines; weather stays CSV.
    gz, jl = FileFormat(compression="gzip"), FileFormat(kind="jsonl")
    flights_csv = Path(lake.landing_file("flights", "2013-01-02"))
    Path(lake.landing_file("flights", "2013-01-02", gz.extension)).write_bytes(gzip.compress(flights_csv.read_bytes()))
    flights_csv.unlink()
    airlines_csv = Path(lake.reference_file("airlines"))
    airlines = list(csv.DictReader(io.StringIO(airlines_csv.read_text())))
    Path(lake.reference_file("airlines", jl.extension)).write_text("".join(json.dumps(r) + "\n" for r in airlines))
    airlines_csv.unlink()
    entity = cfg.dataset.entity.model_copy(update={"format": gz})
    refs = [r.model_copy(update={"format": jl}) if r.name == "airlines" else r for r in cfg.dataset.reference]
    cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"entity": entity, "reference": refs})})

    result = ingest_range(spark, cfg, lake, [dt.date(2013, 1, 2)])
    assert result.references["airlines"] == len(airlines) == 16
    flights = result.ledger["2013-01-02"]["flights"]
    # The same accounting as the plain CSV day (tests/data/test_ingest.py).
    assert (flights.rows_in, flights.rows_quarantined) == (943, 26)
    assert flights.reasons == {"unknown_reference:dest": 26}
    assert result.ledger["2013-01-02"]["weather"].rows_valid == 72
    assert lake.is_committed("bronze", "flights", "2013-01-02") and lake.is_committed("bronze", "weather", "2013-01-02")
