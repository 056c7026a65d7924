"""The atomic writers: a write replaces exactly its partitions, commits each with a marker, leaves no staging."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.lake import COMMIT_MARKER, Lake
from flightdeck.data.sparkio import read_partitions, write_partition, write_partitions

pytestmark = pytest.mark.spark

SCHEMA = "id int, name string, date string"


def _files(partition: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(partition.iterdir()) if p.is_file()}


def test_write_partitions_replaces_only_the_rewritten_date(spark: Any, lake_root: Path) -> None:
    from pyspark.testing import assertDataFrameEqual

    lake = Lake(str(lake_root))
    rows = [(1, "a", "2013-01-01"), (2, "b", "2013-01-01"), (3, "c", "2013-01-02"), (4, "d", "2013-01-03")]
    dates = ["2013-01-01", "2013-01-02", "2013-01-03"]
    paths = write_partitions(spark.createDataFrame(rows, SCHEMA), lake, "bronze", "t", dates)

    table = lake_root / "bronze" / "t"
    assert paths == [str(table / f"date={d}") for d in dates]
    assert lake.committed_partitions("bronze", "t") == [dt.date(2013, 1, d) for d in (1, 2, 3)]
    for d in dates:
        assert (table / f"date={d}" / COMMIT_MARKER).is_file()
    assert not list((table / "_staging").iterdir())
    assertDataFrameEqual(read_partitions(spark, lake, "bronze", "t", dates), spark.createDataFrame(rows, SCHEMA))

    untouched = {d: _files(table / f"date={d}") for d in ("2013-01-01", "2013-01-03")}
    # Rerun of one date with other rows (and rows of other dates, which must be ignored).
    rerun = [(5, "e", "2013-01-02"), (6, "f", "2013-01-02"), (7, "g", "2013-01-03")]
    write_partitions(spark.createDataFrame(rerun, SCHEMA), lake, "bronze", "t", ["2013-01-02"])

    assert {d: _files(table / f"date={d}") for d in ("2013-01-01", "2013-01-03")} == untouched
    assertDataFrameEqual(
        read_partitions(spark, lake, "bronze", "t", dates),
        spark.createDataFrame(
            [
                (1, "a", "2013-01-01"),
                (2, "b", "2013-01-01"),
                (5, "e", "2013-01-02"),
                (6, "f", "2013-01-02"),
                (4, "d", "2013-01-03"),
            ],
            SCHEMA,
        ),
    )
    assert not list((table / "_staging").iterdir())
    assert not (table / "_trash").exists() or not list((table / "_trash").iterdir())


def test_a_date_without_rows_is_committed_empty_with_the_schema(spark: Any, lake_root: Path) -> None:
    lake = Lake(str(lake_root))
    first = spark.createDataFrame([(1, "a", "2013-01-01"), (2, "b", "2013-01-02")], SCHEMA)
    write_partitions(first, lake, "quarantine", "t", ["2013-01-01", "2013-01-02"])

    # The rerun has no row for 2013-01-02: its partition must become empty, not keep the old row.
    write_partitions(
        spark.createDataFrame([(3, "c", "2013-01-01")], SCHEMA), lake, "quarantine", "t", ["2013-01-01", "2013-01-02"]
    )
    assert lake.is_committed("quarantine", "t", "2013-01-02")
    empty = read_partitions(spark, lake, "quarantine", "t", ["2013-01-02"])
    assert empty.count() == 0
    assert [(f.name, f.dataType.simpleString()) for f in empty.schema.fields] == [
        ("id", "int"),
        ("name", "string"),
        ("date", "string"),
    ]
    assert [tuple(r) for r in read_partitions(spark, lake, "quarantine", "t", ["2013-01-01"]).collect()] == [
        (3, "c", "2013-01-01")
    ]
    assert not list((lake_root / "quarantine" / "t" / "_staging").iterdir())


def test_all_dates_empty(spark: Any, lake_root: Path) -> None:
    lake = Lake(str(lake_root))
    write_partitions(spark.createDataFrame([], SCHEMA), lake, "monitoring", "t", ["2013-01-05", "2013-01-06"])
    assert [d.isoformat() for d in lake.committed_partitions("monitoring", "t")] == ["2013-01-05", "2013-01-06"]
    assert read_partitions(spark, lake, "monitoring", "t", ["2013-01-05", "2013-01-06"]).count() == 0


def test_write_partition_and_write_partitions_agree(spark: Any, lake_root: Path) -> None:
    lake = Lake(str(lake_root))
    write_partition(spark.createDataFrame([(1, "a")], "id int, name string"), lake, "bronze", "t", "2013-01-01")
    write_partitions(spark.createDataFrame([(2, "b", "2013-01-02")], SCHEMA), lake, "bronze", "t", ["2013-01-02"])
    # write_partition replaces the date written by write_partitions and vice versa.
    write_partition(spark.createDataFrame([(3, "c")], "id int, name string"), lake, "bronze", "t", "2013-01-02")
    got = sorted(tuple(r) for r in read_partitions(spark, lake, "bronze", "t", ["2013-01-01", "2013-01-02"]).collect())
    assert got == [(1, "a", "2013-01-01"), (3, "c", "2013-01-02")]
    assert (lake_root / "bronze" / "t" / "date=2013-01-02" / COMMIT_MARKER).is_file()


def test_write_partitions_needs_the_date_column(spark: Any, lake_root: Path) -> None:
    with pytest.raises(ValueError, match="column 'day' not in"):
        write_partitions(
            spark.createDataFrame([(1, "a", "2013-01-01")], SCHEMA),
            Lake(str(lake_root)),
            "bronze",
            "t",
            ["2013-01-01"],
            date_col="day",
        )


def test_the_final_rename_never_lands_inside_an_existing_folder(spark: Any, lake_root: Path) -> None:
    """Hadoop's local rename moves a folder *into* an existing one and reports success; the commit refuses."""
    from flightdeck.data.sparkio import _Fs, _swap_in

    table = lake_root / "bronze" / "t"
    staged = table / "_staging" / "date=2013-01-01-0123456789ab"
    final = table / "date=2013-01-01"
    for folder in (staged, final):
        folder.mkdir(parents=True)
        (folder / COMMIT_MARKER).touch()
    (staged / "new.parquet").write_bytes(b"new")
    (final / "old.parquet").write_bytes(b"old")
    fs = _Fs(spark, str(table))

    class Reappearing:
        """A filesystem on which the old version reappears after being moved aside (a foreign writer)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(fs, name)

        def rename(self, src: str, dst: str) -> bool:
            moved = fs.rename(src, dst)
            if dst.endswith("-fedcba987654") and moved:
                final.mkdir()
                (final / "intruder.parquet").write_bytes(b"x")
            return moved

    with pytest.raises(RuntimeError, match=r"refusing to move .* exists \(it would nest"):
        _swap_in(Reappearing(), str(staged), str(final), str(table / "_trash" / "date=2013-01-01-fedcba987654"))
    assert sorted(p.name for p in final.iterdir()) == ["intruder.parquet"]
    assert (staged / "new.parquet").is_file(), "the staged version stays where it was"


def test_recovery_drops_an_old_version_whose_replacement_was_committed(spark: Any, lake_root: Path) -> None:
    """A writer killed after its second rename leaves the old version in _trash; the next writer deletes it."""
    lake = Lake(str(lake_root))
    write_partition(spark.createDataFrame([(1, "a")], "id int, name string"), lake, "bronze", "t", "2013-01-01")
    table = lake_root / "bronze" / "t"
    stale = table / "_trash" / "date=2013-01-01-0123456789ab"
    stale.mkdir(parents=True)
    (stale / COMMIT_MARKER).touch()
    (stale / "old.parquet").write_bytes(b"old")
    write_partition(spark.createDataFrame([(2, "b")], "id int, name string"), lake, "bronze", "t", "2013-01-02")
    assert not list((table / "_trash").iterdir())
    got = sorted(tuple(r) for r in read_partitions(spark, lake, "bronze", "t", ["2013-01-01"]).collect())
    assert got == [(1, "a", "2013-01-01")]
    assert not (table / "_lease").exists()
