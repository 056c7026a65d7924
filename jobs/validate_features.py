"""Validate feature partitions with Great Expectations; fail when any expectation fails.

    spark-submit jobs/validate_features.py --partition 2013-01-01..2013-01-31 [--config PATH]
                                           [--run-key K] [--engine auto|spark|pandas]

Each date's ``features/<entity>/date=D`` is validated against the suite built from the
config (see flightdeck.data.validation), its row count bounded by the ingest ledger's recent
partitions; its report is written to ``monitoring/validation/features/D.json`` and its Data
Docs page to ``monitoring/data_docs/features/D.html`` (and logged to MLflow when
``MLFLOW_TRACKING_URI`` is set). The range is validated as one Great Expectations batch;
a date is validated on its own only when the batch or its per-date counts call for it
(``flightdeck.data.validation.validate_range``), so a passing date's report is derived from the
batch. The job exits non-zero (2) naming every failed partition and expectation, after
writing all the reports.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import emit_result, parser, partitions, run, setup
from flightdeck.data.sparkio import build_session, read_partitions
from flightdeck.data.validation import (
    FeatureValidationError,
    features_spec,
    ledger_counts,
    log_data_docs,
    partition_row_bounds,
    validate_range,
    write_reports,
)

log = logging.getLogger("flightdeck.jobs.validate_features")


def main(argv: Sequence[str]) -> None:
    """Parse arguments, validate the requested feature partitions, write one report each, fail on failures."""
    p = parser("validate_features", "Validate feature partitions with Great Expectations.")
    p.add_argument(
        "--engine",
        choices=["auto", "spark", "pandas"],
        default="auto",
        help="GX engine: auto (default) uses pandas for batches up to a few hundred thousand rows, else Spark",
    )
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-validate-features")
    table = cfg.dataset.entity.name

    # One read over the range (all partitions must be committed). Not cached here: a batch
    # validated on pandas is read twice (the counts, then one Arrow collect), which is cheaper
    # than building a cache; validate_range persists it itself when GX runs on Spark.
    features = read_partitions(spark, lake, "features", table, dates)
    keys = [d.isoformat() for d in dates]
    spec = features_spec(cfg)
    # A feature row per valid entity row: bound the counts by the ledger's recent partitions.
    history = ledger_counts(spark, lake, dates[0] - dt.timedelta(days=cfg.validation.row_count.history_days), dates[-1])
    bounds = partition_row_bounds(cfg, spec, keys, history.get(table, {}))
    outcome = validate_range(features, cfg, keys, engine=args.engine, spec=spec, row_bounds=bounds)
    failures = write_reports(lake, outcome, f"features/{table}")
    mlflow_run = log_data_docs(lake, outcome, f"{keys[0]}..{keys[-1]}")
    reports: dict[str, dict[str, Any]] = {
        key: {"success": r.success, "n_rows": r.n_rows, "failed": [f.message for f in r.failed]}
        for key, r in outcome.items()
    }
    result: dict[str, Any] = {
        "job": "validate_features",
        "partitions": keys,
        "success": not failures,
        "reports": reports,
        "data_docs_run": mlflow_run,
        "seconds": round(time.monotonic() - started, 1),
    }
    emit_result(result, lake, args.run_key, "validate_features")
    if failures:
        raise FeatureValidationError("; ".join(failures))


if __name__ == "__main__":
    sys.exit(run(main, None))
