"""Ingest landing files into bronze, quarantine and the ingest ledger, one date partition at a time.

    spark-submit jobs/ingest.py --partition 2013-01-01..2013-01-31 [--config PATH] [--run-key K]
                                [--refresh-reference]

Reference tables are ingested first when bronze lacks them (or with --refresh-reference).
Then, for the entity and every time series, all the range's landing files are read in one
Spark read, checked once (cached), and written with one Spark write per zone for the whole
range (``write_partitions``), into one partition per date:

    quarantine/<source>/date=D        bad rows: raw_line, reason, reasons, source_file
    monitoring/ingest_ledger/date=D   one row per source: rows_in, rows_valid, rows_quarantined, reasons
    monitoring/validation/bronze_<source>/D.json, monitoring/data_docs/bronze_<source>/D.html
                                      the bronze suite's report and Data Docs page
    bronze/<source>/date=D            typed valid rows (only within the quarantine budget and
                                      when the bronze suite passes)

Every partition is replaced atomically, so a rerun gives the same result. A missing entity
file is an error; a missing time-series file is logged and reported (nothing arrived that
day; feature validation catches the lost coverage). Before bronze is committed, each source
with a suite in ``validation.bronze`` is validated with Great Expectations (types are fixed
by the schema; ranges, null budgets, reference category sets, row counts vs the median of
recent partitions). The job fails (exit 2) when a partition's quarantined share exceeds
ingest.max_quarantine_share or its bronze suite fails, after writing its quarantine, ledger
and reports, without writing its bronze partition.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import emit_result, parser, partitions, run, setup
from flightdeck.core.lake import COMMIT_MARKER, json_exists, reference_table
from flightdeck.data.ingest import (
    LEDGER_TABLE,
    IngestContractError,
    LandingFile,
    PartitionLedger,
    QuarantineBudgetExceeded,
    build_ledgers,
    check_budget,
    classify_rows,
    ingest_reference,
    inspect_landing_file,
    ledger_frame,
    read_landing,
    read_reference_tables,
    split_rows,
)
from flightdeck.data.sparkio import build_session, write_partitions
from flightdeck.data.validation import (
    BronzeValidationError,
    bronze_spec,
    ledger_counts,
    log_data_docs,
    partition_row_bounds,
    validate_range,
    write_reports,
)

log = logging.getLogger("flightdeck.jobs.ingest")


def main(argv: Sequence[str]) -> None:
    """Parse arguments, ingest references if needed, then ingest every requested date."""
    p = parser("ingest", __doc__.splitlines()[0] if __doc__ else "ingest")
    p.add_argument("--refresh-reference", action="store_true", help="re-ingest the reference tables from landing")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-ingest")

    refs = cfg.dataset.reference
    bronze_missing = [
        r.name for r in refs if not json_exists(f"{lake.table('bronze', reference_table(r.name))}/{COMMIT_MARKER}")
    ]
    landed = all(json_exists(lake.reference_file(r.name)) for r in refs)
    reference_counts: dict[str, int] = {}
    if refs and landed and (bronze_missing or args.refresh_reference):
        reference_counts = ingest_reference(spark, cfg, lake)
    elif bronze_missing:
        log.warning("reference tables %s are neither in bronze nor landed", bronze_missing)
    needed = sorted({name for s in [cfg.dataset.entity, *cfg.dataset.timeseries] for name in s.references.values()})
    ref_frames = read_reference_tables(spark, lake, needed)

    sources = [cfg.dataset.entity, *cfg.dataset.timeseries]
    missing: dict[str, list[str]] = {}
    extra: dict[str, dict[str, list[str]]] = {}
    work: list[tuple[Any, list[LandingFile], Any, dict[str, PartitionLedger]]] = []
    for source in sources:
        files: list[LandingFile] = []
        for date in dates:
            path = lake.landing_file(source.name, date)
            try:
                files.append(inspect_landing_file(path, source, date, cfg.ingest.extra_columns))
            except IngestContractError:
                if source is cfg.dataset.entity or json_exists(path):
                    raise
                log.warning(
                    "no %s landing file for %s (%s); skipping that source for that date", source.name, date, path
                )
                missing.setdefault(date.isoformat(), []).append(source.name)
        for f in files:
            if f.extra_columns:
                extra.setdefault(f.date.isoformat(), {})[source.name] = f.extra_columns
        if not files:
            continue
        raw = read_landing(spark, files, source)
        slices = max(1, min(len(files), 2 * spark.sparkContext.defaultParallelism))
        # One shuffle by date serves the duplicate window and keeps each date's rows together.
        classified = classify_rows(raw.repartition(slices, "date"), source, ref_frames, refs).cache()
        ledgers = build_ledgers(raw, classified, source)
        log.info("checked %d %s files in %.1fs", len(files), source.name, time.monotonic() - started)
        work.append((source, files, classified, ledgers))

    # One write per zone and source for the whole range (each date still swapped in atomically):
    # quarantine and ledger first, then bronze only for the dates within the quarantine budget.
    day_ledgers: dict[str, list[PartitionLedger]] = {d.isoformat(): [] for d in dates}
    budget_failures: list[str] = []
    bronze: list[tuple[Any, Any, list[dt.date], dict[str, PartitionLedger]]] = []
    for source, files, classified, ledgers in work:
        source_dates = [f.date for f in files]
        valid, quarantine = split_rows(classified, source)
        write_partitions(quarantine, lake, "quarantine", source.name, source_dates)
        within_budget: list[dt.date] = []
        for date in source_dates:
            key = date.isoformat()
            ledger = ledgers.get(key) or PartitionLedger(key, source.name, 0, 0, 0, {})
            day_ledgers[key].append(ledger)
            problem = check_budget(ledger, cfg.ingest.max_quarantine_share)
            if problem:
                log.error("%s", problem)
                budget_failures.append(problem)
            else:
                within_budget.append(date)
        bronze.append((source, valid, within_budget, ledgers))
    all_ledgers = [lg for d in dates for lg in day_ledgers[d.isoformat()]]
    write_partitions(ledger_frame(spark, all_ledgers), lake, "monitoring", LEDGER_TABLE, dates)

    # The bronze suites, on the rows about to be committed; row counts are bounded by the
    # ledger's recent partitions (this run's own counts for dates inside the range).
    history_days = cfg.validation.row_count.history_days
    ref_keys = {r.name: r.key for r in refs}
    history = ledger_counts(spark, lake, dates[0] - dt.timedelta(days=history_days), dates[-1])
    validation_failures: list[str] = []
    all_reports: dict[str, Any] = {}
    for source, valid, within_budget, ledgers in bronze:
        if source.name in cfg.validation.bronze and within_budget:
            keys = [d.isoformat() for d in within_budget]
            sets = {
                col: [r[0] for r in ref_frames[ref].select(ref_keys[ref]).distinct().collect() if r[0] is not None]
                for col, ref in source.references.items()
            }
            spec = bronze_spec(cfg, source, sets)
            counts = history.get(source.name, {}) | {k: lg.rows_valid for k, lg in ledgers.items()}
            bounds = partition_row_bounds(cfg, spec, keys, counts)
            reports = validate_range(valid.where(valid.date.isin(keys)), cfg, keys, spec=spec, row_bounds=bounds)
            validation_failures += write_reports(lake, reports, f"bronze/{source.name}")
            all_reports |= {f"{spec.name}/{k}": r for k, r in reports.items()}
            commit = [d for d in within_budget if reports[d.isoformat()].success]
        else:
            commit = within_budget
        write_partitions(valid, lake, "bronze", source.name, commit)
    log_data_docs(lake, all_reports, f"{dates[0]}..{dates[-1]}")
    for key, lgs in day_ledgers.items():
        log.info("ingested %s: %s", key, ", ".join(f"{lg.source} {lg.rows_valid}/{lg.rows_in} valid" for lg in lgs))
    per_date = {key: {lg.source: lg.as_dict() for lg in lgs} for key, lgs in day_ledgers.items()}

    for _, _, classified, _ in work:
        classified.unpersist()
    result: dict[str, Any] = {
        "job": "ingest",
        "partitions": [d.isoformat() for d in dates],
        "references": reference_counts,
        "ledger": per_date,
        "rows_in": sum(v["rows_in"] for d in per_date.values() for v in d.values()),
        "rows_quarantined": sum(v["rows_quarantined"] for d in per_date.values() for v in d.values()),
        "missing_files": missing,
        "extra_columns": extra,
        "budget_failures": budget_failures,
        "validation_failures": validation_failures,
        "seconds": round(time.monotonic() - started, 1),
    }
    emit_result(result, lake, args.run_key, "ingest")
    if budget_failures:
        raise QuarantineBudgetExceeded(
            f"{len(budget_failures)} partition(s) over the quarantine budget: "
            + "; ".join(budget_failures)
            + ("; also failed validation: " + "; ".join(validation_failures) if validation_failures else "")
        )
    if validation_failures:
        raise BronzeValidationError(
            f"{len(validation_failures)} bronze partition(s) failed validation, not committed: "
            + "; ".join(validation_failures)
        )


if __name__ == "__main__":
    sys.exit(run(main, None))
