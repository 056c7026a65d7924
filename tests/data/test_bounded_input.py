"""A landing file several times larger than the ingest driver's memory ingests.

``jobs/ingest.py`` runs as its own Spark application (spark-submit, ``spark.driver.memory``
512m, local[2]) on a generated CSV of about 1.5 GB: the contract checks read its first MiB
only and Spark reads the rows, so the job's processes never hold the file. The rows are
counted here, by construction, independently of Spark: rows in = valid + quarantined, and
the quarantined ones are exactly the NaN rows written.

Memory headroom, not luck: the only per-key state in the ingest path is the duplicate-key
window (a sort, which spills); the hash aggregates group by date and by (date, reason), a
handful of keys. What did not fit was the cache of the checked rows: one date's rows are one
block, and Spark's columnar cache builds it on the heap before spilling (``OutOfMemoryError``
in ``ColumnBuilder`` with a 512m driver); a file larger than the checks' head is now kept on
local disk instead. Spark's memory settings are its defaults; no bronze suite (GX is tested
elsewhere; its Spark engine is what a partition this large uses).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from testkit import spark_home

from flightdeck.core.config import JOBS_DIR, PROJECT_ROOT
from flightdeck.core.lake import Lake

CONFIG = PROJECT_ROOT / "include" / "config" / "bikes.yaml"
DAY = "2011-02-01"
DRIVER_MEMORY_MB = 512
TARGET_BYTES = 1536 << 20  # 3x the driver's memory
BLOCK_ROWS = 20_000
NAN_EVERY = 1000  # one row in a thousand has temp=NaN (quarantined: non_finite:temp)
HOURS = [f"{h}{m}" for m in ("am", "pm") for h in (12, *range(1, 12))]
# A wide string column (no rule reads it) keeps the row count, and so the test's time, down.
PAD = "x" * 180


def _config(tmp_path: Path) -> Path:
    """bikes.yaml with a unique row id as the entity key and no bronze suite."""
    raw = yaml.safe_load(CONFIG.read_text())
    entity = raw["dataset"]["entity"]
    entity["columns"].insert(0, {"name": "rid", "type": "long", "required": True})
    entity["keys"] = ["rid"]
    raw["validation"]["bronze"] = {}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _generate(path: Path, header: list[str]) -> tuple[int, int]:
    """Write the file block by block (fast: one join per block); returns (rows, NaN rows)."""
    assert header[:8] == ["rid", "dteday", "season", "hr", "holiday", "weekday", "workingday", "weathersit"]
    suffixes = []
    for i in range(BLOCK_ROWS):
        temp = "NaN" if i % NAN_EVERY == 0 else f"{(i % 300) / 10:.1f}"
        suffixes.append(f",{DAY},{PAD},{HOURS[i % 24]},No,Tue,Yes,Clear,{temp},3.0,50.0,10.0\n")
    rows = bad = 0
    with path.open("w") as out:
        out.write(",".join(header) + "\n")
        while out.tell() < TARGET_BYTES:
            base = rows
            out.write("".join(f"{base + i}{s}" for i, s in enumerate(suffixes)))
            rows += BLOCK_ROWS
            bad += BLOCK_ROWS // NAN_EVERY
    return rows, bad


class _PeakRss:
    """The peak resident memory of a process and its children (the JVM), sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@pytest.mark.spark
@pytest.mark.slow
def test_landing_file_larger_than_driver_memory_ingests(tmp_path: Path, capsys: Any) -> None:
    import pyarrow.parquet as pq

    from flightdeck.core.config import load_config
    from flightdeck.data.landing import inbox_file

    config = _config(tmp_path)
    cfg = load_config(config)
    lake_root = tmp_path / "lake"
    lake = Lake(str(lake_root))
    path = Path(inbox_file(lake, cfg.dataset.entity, DAY))
    path.parent.mkdir(parents=True)
    started = time.monotonic()
    try:
        rows, bad = _generate(path, [c.header for c in cfg.dataset.entity.columns])
        size = path.stat().st_size
        generated = time.monotonic() - started
        assert size >= 3 * (DRIVER_MEMORY_MB << 20)

        submit = spark_home() / "bin" / "spark-submit"
        env = os.environ | {
            "FLIGHTDECK__LAKE__ROOT": str(lake_root),
            "FLIGHTDECK_CONFIG": str(config),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        cmd = [
            str(submit),
            "--master",
            "local[2]",
            "--driver-memory",
            f"{DRIVER_MEMORY_MB}m",
            "--conf",
            "spark.sql.shuffle.partitions=4",
            "--conf",
            "spark.ui.enabled=false",
            str(JOBS_DIR / "ingest.py"),
            "--partition",
            DAY,
            "--config",
            str(config),
        ]
        log = tmp_path / "ingest.log"
        job_started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            rss = _PeakRss(proc.pid)
            code = proc.wait(timeout=900)
            peak = rss.stop()
        seconds = time.monotonic() - job_started
        assert code == 0, log.read_text()[-4000:]

        ledger = pq.read_table(lake_root / "monitoring" / "ingest_ledger" / f"date={DAY}").to_pylist()
        assert [(r["source"], r["rows_in"], r["rows_valid"], r["rows_quarantined"]) for r in ledger] == [
            ("rentals", rows, rows - bad, bad)
        ]
        assert ledger[0]["reasons"] == f'{{"non_finite:temp": {bad}}}'
        assert lake.is_committed("bronze", "rentals", DAY)
        assert pq.ParquetDataset(lake_root / "bronze" / "rentals" / f"date={DAY}").read(columns=["rid"]).num_rows == (
            rows - bad
        )
        # The job's processes (Python driver and JVM) together stay below the file's size.
        assert peak < size, f"peak RSS {peak >> 20} MiB >= file {size >> 20} MiB"
        with capsys.disabled():
            print(
                f"\nbounded input: {size >> 20} MiB, {rows} rows generated in {generated:.0f}s; ingest "
                f"{seconds:.0f}s with driver memory {DRIVER_MEMORY_MB}m, peak RSS {peak >> 20} MiB"
            )
    finally:
        path.unlink(missing_ok=True)


def test_contract_checks_stream_the_head_from_s3(tmp_path: Path, s3_bucket: str) -> None:
    """Over S3 the checks read a gzip CSV's head and a Parquet footer with ranged GETs: a gzip
    stream cut off past the head, which a whole-file read would refuse, passes the check."""
    import gzip

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flightdeck.core.config import Column, FileFormat, PartitionDate, TimeSeriesSource
    from flightdeck.data import ingest

    def source(fmt: FileFormat) -> TimeSeriesSource:
        return TimeSeriesSource(
            name="events",
            columns=[Column(name="id", type="long", required=True), Column(name="day", type="date")],
            keys=["id"],
            partition_date=PartitionDate(column="day"),
            event_time="day",
            format=fmt,
        )

    s3 = boto3.client("s3")
    text = "id,day\n" + "".join(f"{i},2024-03-09\n" for i in range(400_000))  # ~6.8 MB
    packed = gzip.compress(text.encode(), compresslevel=1)
    s3.put_object(Bucket=s3_bucket, Key="in/events_2024-03-09.csv.gz", Body=packed[: len(packed) // 2])
    lf = ingest.inspect_landing_file(
        f"s3://{s3_bucket}/in/events_2024-03-09.csv.gz", source(FileFormat(compression="gzip")), "2024-03-09"
    )
    assert lf.header == ["id", "day"] and not lf.multi_line
    with pytest.raises(EOFError):
        gzip.decompress(packed[: len(packed) // 2])  # what reading it whole would meet

    local = tmp_path / "events.parquet"
    pq.write_table(pa.table({"id": list(range(200_000)), "day": ["2024-03-09"] * 200_000}), local)
    s3.put_object(Bucket=s3_bucket, Key="in/events_2024-03-09.parquet", Body=local.read_bytes())
    lf = ingest.inspect_landing_file(
        f"s3://{s3_bucket}/in/events_2024-03-09.parquet", source(FileFormat(kind="parquet")), "2024-03-09"
    )
    assert lf.header == ["id", "day"] and lf.signature == ("int64", "string")
