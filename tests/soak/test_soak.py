"""Soak: 30 consecutive days of real data through landing, ingest, features, validation,
scoring and monitoring, with nothing lost and the cost per day staying flat.

Not part of ``make test`` (it takes about a quarter of an hour); ``make soak`` runs it and
writes ``.flightdeck/soak/soak.json`` and ``soak.md``. A first champion is trained on the
first two weeks of January 2013; then each day from 2013-01-15 lands, is ingested, gets its
features built and validated, is scored by the champion and monitored for drift, all in one
long-lived Spark session (so a leak of cached data or state would show up as growth).

Per day it records the wall time, the Spark jobs the day needed (the "task count"), the
bytes the lake grew by, and the rows in / valid / quarantined / scored. It asserts that every
day is committed in every zone, that rows in = valid + quarantined and every valid row is
scored (lost = 0), and that the time, the job count and the lake growth of the last ten days
stay within 1.5x of the first ten (flat, not growing with the days already processed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import PROJECT_ROOT, load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake, date_range
from flightdeck.data import landing
from flightdeck.data.sparkio import read_partitions
from flightdeck.model import registry

pytestmark = [pytest.mark.soak, pytest.mark.spark]

HISTORY = (dt.date(2013, 1, 1), dt.date(2013, 1, 14))
DAYS = int(os.environ.get("FLIGHTDECK_SOAK_DAYS", "30"))
FLAT = 1.5  # last ten days / first ten days, at most


def _lake_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def test_thirty_days_nothing_lost_and_flat(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "lake"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) goes under tmp
    env = {
        "FLIGHTDECK__LAKE__ROOT": str(root),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "FLIGHTDECK__MODEL__NAME": "flightdeck-soak",
        "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "2",
        "FLIGHTDECK__MODEL__VALIDATION_DAYS": "1",
        "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "40",
        "FLIGHTDECK__MODEL__SEARCH__MAX_TRIALS": "1",
        "FLIGHTDECK_ACTOR": "soak",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config()
    lake = Lake(str(root))
    entity = cfg.dataset.entity.name
    jobs = {n: load_job(n) for n in ("ingest", "build_features", "validate_features", "score", "detect_drift")}

    landing.land_reference(cfg, lake)
    landing.land_range(cfg, lake, *HISTORY)
    span = f"{HISTORY[0]}..{HISTORY[1]}"
    jobs["ingest"].main(["--partition", span])
    jobs["build_features"].main(["--partition", span])
    trained = load_job("train").main(["--train-start", str(HISTORY[0]), "--train-end", str(HISTORY[1])])
    version = str(trained["version"])
    registry.promote(registry.Move(cfg.model.name, version, expected_current=None, decision_ref="soak"), lake=lake)

    sc = spark.sparkContext
    days = date_range(HISTORY[1] + dt.timedelta(days=1), HISTORY[1] + dt.timedelta(days=DAYS))
    rows: list[dict[str, Any]] = []
    for day in days:
        key = day.isoformat()
        size_before = _lake_bytes(root)
        sc.setJobGroup(f"soak-{key}", f"soak day {key}")
        t0 = time.monotonic()
        landing.land_day(cfg, lake, day)
        jobs["ingest"].main(["--partition", key])
        jobs["build_features"].main(["--partition", key])
        jobs["validate_features"].main(["--partition", key])
        jobs["score"].main(["--partition", key, "--model-version", "champion"])
        jobs["detect_drift"].main(["--partition", key, "--model-version", version])
        seconds = time.monotonic() - t0
        (ledger,) = [
            r.asDict()
            for r in read_partitions(spark, lake, "monitoring", "ingest_ledger", [key]).collect()
            if r["source"] == entity
        ]
        scored = read_partitions(spark, lake, "predictions", entity, [key]).count()
        rows.append(
            {
                "date": key,
                "seconds": round(seconds, 2),
                "spark_jobs": len(sc.statusTracker().getJobIdsForGroup(f"soak-{key}")),
                "lake_growth_bytes": _lake_bytes(root) - size_before,
                "rows_in": ledger["rows_in"],
                "rows_valid": ledger["rows_valid"],
                "rows_quarantined": ledger["rows_quarantined"],
                "rows_scored": scored,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    for r in rows:  # nothing lost, every day committed everywhere
        assert r["rows_in"] == r["rows_valid"] + r["rows_quarantined"], r
        assert r["rows_scored"] == r["rows_valid"] > 0, r
    for zone, table in [
        ("bronze", entity),
        ("quarantine", entity),
        ("features", entity),
        ("predictions", entity),
        ("monitoring", "ingest_ledger"),
        ("monitoring", "drift_daily"),
    ]:
        committed = set(lake.committed_partitions(zone, table))
        assert set(days) <= committed, (zone, table, sorted(set(days) - committed))
    leftovers = [p for p in root.rglob("*") if p.name in {"_staging", "_trash"} and any(p.iterdir())]
    assert not leftovers, leftovers

    first, last = rows[:10], rows[-10:]
    summary = {
        metric: {
            "first_10_median": _median([r[metric] for r in first]),
            "last_10_median": _median([r[metric] for r in last]),
        }
        for metric in ("seconds", "spark_jobs", "lake_growth_bytes")
    }
    for s in summary.values():
        s["ratio"] = round(s["last_10_median"] / s["first_10_median"], 3) if s["first_10_median"] else None
    totals = {k: sum(r[k] for r in rows) for k in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored")}
    totals["rows_lost"] = totals["rows_in"] - totals["rows_valid"] - totals["rows_quarantined"]
    _write_report(rows, summary, totals)
    for metric, s in summary.items():
        assert s["ratio"] is not None and s["ratio"] <= FLAT, (metric, s)


def _write_report(rows: list[dict[str, Any]], summary: dict[str, Any], totals: dict[str, int]) -> None:
    folder = Path(os.environ.get("FLIGHTDECK_SOAK_DIR") or PROJECT_ROOT / ".flightdeck" / "soak")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(json.dumps({"days": rows, "summary": summary, "totals": totals}, indent=2))
    lines = [
        "| date | seconds | Spark jobs | lake growth (KiB) | rows in | valid | quarantined | scored |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['date']} | {r['seconds']:.1f} | {r['spark_jobs']} | {r['lake_growth_bytes'] / 1024:.0f} "
        f"| {r['rows_in']} | {r['rows_valid']} | {r['rows_quarantined']} | {r['rows_scored']} |"
        for r in rows
    ]
    lines += ["", "| metric | first 10 days (median) | last 10 days (median) | ratio |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {m} | {s['first_10_median']:.1f} | {s['last_10_median']:.1f} | {s['ratio']} |" for m, s in summary.items()
    ]
    lines += ["", "totals: " + ", ".join(f"{k} {v}" for k, v in totals.items())]
    (folder / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
