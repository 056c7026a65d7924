"""One writer of a lake table, run as its own OS process by tests/reliability/test_concurrent_writers.py.

Usage: ``writer_child.py <lake root> <zone>/<table> <date>[,<date>...] <tag> [spark]``.

Without ``spark`` each date is committed through :func:`flightdeck.data.sparkio.commit_partition`
(the writers' commit, lease and recovery) with plain pyarrow files and
:class:`flightdeck.data.sparkio.LocalFs` (a Spark Connect job's file operations), so a process
starts in a second; with ``spark`` the dates go through the real
:func:`flightdeck.data.sparkio.write_partitions` in a local Spark session. Either way a date's
complete output is ``ROWS[mode]`` rows ``(tag, i)`` for ``i`` in ``range(n)``, in two files
(pyarrow) or one (Spark). The test hooks (``FLIGHTDECK_TEST_PAUSE_AT``, ``FLIGHTDECK_TEST_BARRIER``)
and the lease settings come from the environment.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROWS = {"files": 4, "spark": 3}


def _write_files(tag: str) -> Callable[[str], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(staging: str) -> None:
        os.makedirs(staging)
        half = ROWS["files"] // 2
        for part, rows in enumerate((range(half), range(half, ROWS["files"]))):
            table = pa.table({"tag": [tag] * len(rows), "i": list(rows)})
            pq.write_table(table, f"{staging}/part-{part}.parquet")
        Path(f"{staging}/_SUCCESS").touch()

    return write


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    root, zone_table, date_spec, tag, *mode = argv
    zone, table = zone_table.split("/", 1)
    dates = date_spec.split(",")

    from flightdeck.core.lake import Lake

    lake = Lake(root)
    if mode == ["spark"]:
        from flightdeck.data.sparkio import build_session, write_partitions

        spark = build_session(
            f"writer-{tag}",
            {
                "spark.master": "local[1]",
                "spark.ui.enabled": "false",
                "spark.driver.memory": "512m",
                "spark.sql.shuffle.partitions": "1",
            },
        )
        rows = [(tag, i, d) for d in dates for i in range(ROWS["spark"])]
        df = spark.createDataFrame(rows, "tag string, i long, date string").repartition(1)
        write_partitions(df, lake, zone, table, dates)
        spark.stop()
    else:
        from flightdeck.data.sparkio import LocalFs, commit_partition

        write = _write_files(tag)
        for date in dates:
            commit_partition(LocalFs(), lake, zone, table, date, write)
    logging.getLogger("writer_child").info("writer %s committed %s", tag, dates)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
