"""A Spark job killed (SIGKILL) mid-write leaves the previous partition intact; the retry completes."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from testkit import kill_job_when_staged

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import landing
from flightdeck.data.sparkio import _Fs, _restore_interrupted, read_partitions

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-01-02"


def _checksums(folder: Path) -> list[str]:
    files = sorted(folder.glob("*.parquet"))
    assert files, f"no data files in {folder}"
    return sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


def test_ingest_killed_mid_write_keeps_the_previous_partition(spark: Any, lake_root: Path, tmp_path: Path) -> None:
    cfg = load_config()
    lake = Lake(str(lake_root))
    landing.land_reference(cfg, lake)
    landing.land_day(cfg, lake, DAY)
    job = load_job("ingest")
    job.main(["--partition", DAY])
    partition = lake_root / "bronze" / "flights" / f"date={DAY}"
    before = _checksums(partition)
    rows_before = read_partitions(spark, lake, "bronze", "flights", [DAY]).count()

    # The day's file is re-exported with 100 rows fewer, so the new version differs from the old.
    path = Path(lake.landing_file("flights", DAY))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-100]) + "\n")

    # The rerun pauses once bronze is staged; it is killed there, as a lost executor host would be.
    staged = kill_job_when_staged("ingest", ["--partition", DAY], lake_root, "bronze/flights", tmp_path / "killed.log")

    # The previous version is intact and readable; the staged output is invisible to readers.
    assert (staged / "_SUCCESS").exists()
    assert _checksums(partition) == before
    assert read_partitions(spark, lake, "bronze", "flights", [DAY]).count() == rows_before
    assert [d.isoformat() for d in lake.committed_partitions("bronze", "flights")] == [DAY]

    # The retry completes with the new file, and clears what the killed run left behind.
    job.main(["--partition", DAY])
    assert read_partitions(spark, lake, "bronze", "flights", [DAY]).count() < rows_before
    assert _checksums(partition) != before
    assert not staged.exists()
    leftovers = [p for p in lake_root.rglob("*") if p.name in {"_staging", "_trash"} and any(p.iterdir())]
    assert not leftovers, leftovers


def test_a_version_left_in_trash_between_the_two_renames_is_restored(spark: Any, lake_root: Path) -> None:
    from flightdeck.data.sparkio import write_partitions

    lake = Lake(str(lake_root))
    df = spark.createDataFrame([(1, DAY), (2, DAY), (3, "2013-01-03")], "x int, date string")
    write_partitions(df, lake, "bronze", "t", [DAY, "2013-01-03"])
    table = lake_root / "bronze" / "t"
    before = _checksums(table / f"date={DAY}")
    # What a job killed after moving the old version aside, before moving the new one in, leaves.
    (table / "_trash").mkdir()
    (table / f"date={DAY}").rename(table / "_trash" / f"date={DAY}-0123456789ab")
    assert not lake.is_committed("bronze", "t", DAY)

    _restore_interrupted(_Fs(spark, str(table)), str(table))
    assert lake.is_committed("bronze", "t", DAY) and _checksums(table / f"date={DAY}") == before
    assert not list((table / "_trash").iterdir())


def test_leftovers_of_killed_writers_are_swept_by_the_next_write_of_the_table(spark: Any, lake_root: Path) -> None:
    from flightdeck.data.sparkio import write_partitions

    lake = Lake(str(lake_root))
    staging = lake_root / "bronze" / "t" / "_staging"
    dead = staging / "date=2013-01-02..2013-01-04-0123456789ab"  # a killed backfill that covered 01-03
    other = staging / "date=2013-01-05-0123456789ac"  # another day's: dead too, as nobody holds the table's lease
    for folder in (dead, other):
        (folder / "date=x").mkdir(parents=True)
    df = spark.createDataFrame([(1, "2013-01-03")], "x int, date string")
    write_partitions(df, lake, "bronze", "t", ["2013-01-03"])
    assert sorted(p.name for p in staging.iterdir()) == []
    assert lake.committed_partitions("bronze", "t") == [dt.date(2013, 1, 3)]
