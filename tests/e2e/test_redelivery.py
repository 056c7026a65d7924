"""End to end: a file re-delivered for a day already ingested re-runs that day and the days that read it.

Nobody triggers anything here: the inbox watcher in Airflow's triggerer sees the new bytes,
its asset event starts ``flightdeck_inbox``, which re-ingests the day and announces bronze
for it and for the later days whose rolling windows include it; features, scoring and
monitoring follow by asset events.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REDELIVERED = "2013-06-30"


def _late_rate(lake: Any, day: str) -> float:
    import pyarrow.dataset as ds

    table = ds.dataset(lake.partition("features", "flights", day), format="parquet").to_table()
    values = [v for v in table.column("origin_late_rate_7d").to_pylist() if v is not None]
    assert values, f"no origin_late_rate_7d on {day}"
    return sum(values) / len(values)


def _every_flight_late(path: Path) -> bytes:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    col = rows[0].index("arr_delay")
    for row in rows[1:]:
        row[col] = "120"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _wait_for(api: Any, dag_id: str, since: str, done: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in api.runs(dag_id) if (r.get("queued_at") or "") >= since]
        if done(runs):
            return runs
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not failed, f"{dag_id} runs failed: {failed}"
        time.sleep(5)
    raise AssertionError(f"{dag_id}: no finished run since {since} within {timeout:.0f}s")


def test_redelivered_day_reruns_it_and_the_days_that_read_it(stack: Any, demo_result: dict) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, write_bytes
    from flightdeck.data import landing
    from flightdeck.ops.demo import wait_chain

    api, later = demo_result["api"], demo_result["day"]
    cfg = load_config()
    lake = Lake(cfg.lake.root)
    before = _late_rate(lake, later)
    since = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    path = Path(landing.inbox_file(lake, cfg.dataset.entity, REDELIVERED))
    write_bytes(str(path), _every_flight_late(path))  # the upstream re-delivers the day, corrected

    inbox = _wait_for(api, "flightdeck_inbox", since, lambda rs: any(r["state"] == "success" for r in rs), 900)
    assert {r["run_type"] for r in inbox} == {"asset_triggered"}
    wait_chain(api, [REDELIVERED, later], since, 1500, lambda m: print(m, file=sys.stderr, flush=True))
    features = _wait_for(api, "flightdeck_features", since, lambda rs: len(rs) >= 2, 60)
    assert {r["partition_key"] for r in features} >= {REDELIVERED, later}

    after = _late_rate(lake, later)
    # Every flight of June 30 is now late, and July 1's 7-day windows read June 24..30.
    assert after > before + 0.05, (before, after)
    assert landing.redelivered_days(cfg, lake) == []  # the re-delivered file is marked
