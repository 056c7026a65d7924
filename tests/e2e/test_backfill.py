"""End to end: a backfill with Airflow's defaults (ten active runs) ends like ten days run one by one.

The Backfill button creates up to ten ingest runs at once (Airflow's default, whatever the DAG's
own ``max_active_runs``); their bronze announcements reach the features DAG in any order, so a
day's features may be built before an earlier day it reads is committed, and are rebuilt when
that day commits. After the backfill settles, the lake holds, checksum for checksum, what the
same ten days give when each is ingested and built one after the other (in a separate process,
on a copy of the lake taken before the backfill).

Scoring is paused for these days: which model scores them depends on when a drift-triggered
retraining lands, which a concurrent backfill cannot make the same as a serial one. The
checksums are taken over each partition's rows (sorted), not its files: a re-ingested day's
Parquet files may hold the same rows in another order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# Long (ten days through two DAGs, then the same days one by one: 20-30 min on a 2-core machine):
# opt-in like the soak test, with `make soak`, on the e2e stack.
pytestmark = [pytest.mark.e2e, pytest.mark.soak]

FIRST, LAST = "2013-07-02", "2013-07-11"
HISTORY_START = dt.date(2013, 6, 17)  # the e2e's history: June 17..30 (and two weeks of January)


def _days() -> list[str]:
    first, last = dt.date.fromisoformat(FIRST), dt.date.fromisoformat(LAST)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _partition_checksum(lake: Any, zone: str, table: str, day: str) -> str:
    """SHA-256 of a committed partition's schema and rows, the rows in sorted order."""
    import pyarrow.dataset as ds

    data = ds.dataset(lake.partition_files(zone, table, day), format="parquet").to_table()
    # Quarantine rows name their landing file: compare it relative to the lake's root.
    rows = sorted(json.dumps(r, sort_keys=True, default=str).replace(lake.root, "<lake>") for r in data.to_pylist())
    digest = hashlib.sha256(str(data.schema).encode())
    for row in rows:
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()


def _lake_checksums(root: str, days: list[str]) -> dict[str, str | None]:
    """Every table of bronze, quarantine and features: the checksum of each day's partition (None: absent)."""
    from flightdeck.core.lake import Lake, list_folders

    lake = Lake(root)
    out: dict[str, str | None] = {}
    for zone in ("bronze", "quarantine", "features"):
        for table in sorted(Path(f).name for f in list_folders(lake.path(zone))):
            if table.startswith(("_", "ref_")):
                continue
            for day in days:
                key = f"{zone}/{table}/{day}"
                out[key] = _partition_checksum(lake, zone, table, day) if lake.is_committed(zone, table, day) else None
    return out


def _max_concurrent(runs: list[dict[str, Any]]) -> int:
    """The most runs whose [start, end] overlapped at one moment."""
    edges = sorted(
        [(r["start_date"], 1) for r in runs if r.get("start_date")]
        + [(r["end_date"], -1) for r in runs if r.get("end_date")]
    )
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(5)
    raise AssertionError(f"{what}: not done within {timeout:.0f}s")


def test_default_backfill_ends_as_the_days_run_one_by_one(stack: Any, demo_result: dict, tmp_path: Path) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, read_json
    from flightdeck.data import landing

    api, cfg = demo_result["api"], load_config()
    lake, days = Lake(cfg.lake.root), _days()
    api.patch("/api/v2/dags/flightdeck_score", {"is_paused": True})
    landing.feed(FIRST, LAST)
    reference = tmp_path / "lake"
    shutil.copytree(cfg.lake.root, reference)  # the lake before the backfill, its inbox delivered

    since = _now()
    backfill = api.backfill("flightdeck_ingest", FIRST, LAST, max_active_runs=None)
    assert backfill["max_active_runs"] == 10, backfill  # Airflow's default, not the DAG's 1

    def ingested() -> list[dict[str, Any]] | None:
        mine = [
            r
            for r in api.runs("flightdeck_ingest", 200)
            if r.get("run_type") == "backfill"
            and (r.get("queued_at") or "") >= since
            and (r.get("data_interval_start") or "")[:10] in days
        ]
        if len(mine) < len(days) or any(r["state"] not in {"success", "failed"} for r in mine):
            return None
        return mine

    runs = _wait("the ingest backfill", ingested, 1800)
    assert {r["state"] for r in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]
    assert _max_concurrent(runs) > 1, "the backfill's runs never overlapped"

    quiet: list[int] = [0]

    def settled() -> list[dict[str, Any]] | None:
        mine = [r for r in api.runs("flightdeck_features", 300) if (r.get("queued_at") or "") >= since]
        failed = [r["dag_run_id"] for r in mine if r["state"] == "failed"]
        assert not failed, f"features runs failed: {failed}"
        built = {r.get("partition_key") for r in mine if r["state"] == "success"}
        busy = [r for r in mine if r["state"] not in {"success", "failed"}]
        quiet[0] = quiet[0] + 1 if set(days) <= built and not busy else 0
        return mine if quiet[0] >= 4 else None  # asset-triggered runs appear within a scheduler loop or two

    features_runs = _wait("the features of the backfilled days", settled, 2400)
    print(f"features runs: {len(features_runs)} for {len(days)} days", file=sys.stderr)

    # The same ten days, one by one, on the copy of the lake.
    env = {**os.environ, "FLIGHTDECK__LAKE__ROOT": str(reference)}
    script = Path(__file__).with_name("days_one_by_one.py")
    done = subprocess.run(
        [sys.executable, str(script), FIRST, LAST], check=False, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    concurrent, serial = _lake_checksums(cfg.lake.root, days), _lake_checksums(str(reference), days)
    assert concurrent.keys() == serial.keys() and len(concurrent) >= 3 * len(days), sorted(concurrent)
    absent = [k for k, v in concurrent.items() if v is None and not k.startswith("quarantine/")]
    assert not absent, f"partitions the backfill did not commit: {absent}"
    differ = sorted(k for k in concurrent if concurrent[k] != serial[k])
    assert not differ, f"partitions that differ from the one-by-one run: {differ}"
    # No nested folder and no leftover staging in any partition the backfill wrote.
    for zone in ("bronze", "features"):
        for folder in Path(cfg.lake.root, zone).glob("*/date=2013-07-*"):
            assert not [p for p in folder.iterdir() if p.is_dir()], f"nested folder in {folder}"
    # Each day's final status names exactly the days its windows lack (before the history starts).
    for day in days:
        status = read_json(lake.feature_status(day))
        date = dt.date.fromisoformat(day)
        lacking = [
            (date - dt.timedelta(days=k)).isoformat()
            for k in range(cfg.features.lookback_days, 0, -1)
            if date - dt.timedelta(days=k) < HISTORY_START
        ]
        assert sorted(status["missing"]) == lacking, (day, status["missing"])
        assert status["built"] is True, status
