"""An ingest run: landing files of a range of dates -> quarantine, ingest ledger, bronze (``jobs/ingest.py``).

Reference tables are ingested first when bronze lacks them (or on request). Then, for the
entity and every time series, all the range's landing files (``<source>_<date>.<ext>``, the
extension of the source's ``format``) are read in as few Spark reads as possible, checked
once (cached, :func:`flightdeck.data.ingest.classify_rows`), and written with one Spark
write per zone for the whole range (``write_partitions``), into one partition per date:

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
recent partitions: :func:`flightdeck.data.validation.check_partitions`). The run fails
(:func:`raise_for_failures`, exit 2) when a partition's quarantined share exceeds
ingest.max_quarantine_share or its bronze suite fails, after writing its quarantine, ledger
and reports, without writing its bronze partition.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import PipelineConfig, TimeSeriesSource
from flightdeck.core.lake import COMMIT_MARKER, Lake, json_exists, reference_table
from flightdeck.data.documents import IngestLedgerEntry, IngestResult
from flightdeck.data.ingest import (
    LEDGER_TABLE,
    IngestContractError,
    LandingFile,
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
from flightdeck.data.landing import inbox_file
from flightdeck.data.sparkio import parallelism, write_partitions
from flightdeck.data.validation import (
    PANDAS_MAX_ROWS,
    BronzeValidationError,
    EngineChoice,
    PartitionChecks,
    TableCheck,
    bronze_spec,
    check_partitions,
    publish_data_docs,
    recent_ledger_counts,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass
class _Checked:
    """One source's rows of the range, checked and cached, with its per-date ledgers."""

    source: TimeSeriesSource
    dates: list[dt.date]
    classified: DataFrame
    ledgers: dict[str, IngestLedgerEntry]
    within_budget: list[dt.date] = field(default_factory=list)


@dataclass
class _Run:
    """What the run has found so far (reported in the result)."""

    dates: list[dt.date]
    ref_frames: dict[str, DataFrame]  # the bronze reference tables the checks and suites need
    missing: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    budget_failures: list[str] = field(default_factory=list)
    day_ledgers: dict[str, list[IngestLedgerEntry]] = field(default_factory=dict)


def ensure_references(spark: SparkSession, cfg: PipelineConfig, lake: Lake, *, refresh: bool = False) -> dict[str, int]:
    """Ingest the landed reference tables when bronze lacks one (or ``refresh``); rows per table ingested."""
    refs = cfg.dataset.reference
    bronze_missing = [
        r.name for r in refs if not json_exists(f"{lake.table('bronze', reference_table(r.name))}/{COMMIT_MARKER}")
    ]
    landed = all(json_exists(lake.reference_file(r.name, r.format.extension)) for r in refs)
    if refs and landed and (bronze_missing or refresh):
        return ingest_reference(spark, cfg, lake)
    if bronze_missing:
        log.warning("reference tables %s are neither in bronze nor landed", bronze_missing)
    return {}


def _landing_files(cfg: PipelineConfig, lake: Lake, source: TimeSeriesSource, run: _Run) -> list[LandingFile]:
    """The source's landing files of the run's dates that passed the whole-file checks.

    Raises:
        IngestContractError: an entity file is missing, or a file that exists breaks the contract.
    """
    files: list[LandingFile] = []
    for date in run.dates:
        path = inbox_file(lake, source, date)
        try:
            files.append(inspect_landing_file(path, source, date, cfg.ingest.extra_columns))
        except IngestContractError:
            if source is cfg.dataset.entity or json_exists(path):
                raise
            log.warning("no %s landing file for %s (%s); skipping that source for that date", source.name, date, path)
            run.missing.setdefault(date.isoformat(), []).append(source.name)
    for f in files:
        if f.extra_columns:
            run.extra.setdefault(f.date.isoformat(), {})[source.name] = f.extra_columns
    return files


def _check_sources(spark: SparkSession, cfg: PipelineConfig, lake: Lake, run: _Run) -> list[_Checked]:
    """Read and check every source's landing files of the range (one Spark read per source)."""
    from pyspark import StorageLevel

    started = time.monotonic()
    checked: list[_Checked] = []
    for source in cfg.dataset.daily_sources:
        files = _landing_files(cfg, lake, source, run)
        if not files:
            continue
        raw = read_landing(spark, files, source)
        slices = max(1, min(len(files), 2 * parallelism(spark)))
        # One shuffle by date serves the duplicate window and keeps each date's rows together.
        checked_rows = classify_rows(raw.repartition(slices, "date"), source, run.ref_frames, cfg.dataset.reference)
        if any(f.large for f in files):
            # A file larger than the checks' head may not fit in memory. The columnar cache
            # builds its batches on the heap (OutOfMemoryError with a 512m driver); rows kept
            # on local disk, one at a time, do not.
            classified = checked_rows.localCheckpoint(eager=False, storageLevel=StorageLevel.DISK_ONLY)
        else:
            classified = checked_rows.cache()
        ledgers = build_ledgers(raw, classified, source)
        log.info("checked %d %s files in %.1fs", len(files), source.name, time.monotonic() - started)
        checked.append(_Checked(source, [f.date for f in files], classified, ledgers))
    return checked


def _quarantine(cfg: PipelineConfig, lake: Lake, run: _Run, item: _Checked) -> DataFrame:
    """Write a source's quarantine, account its ledgers per day, keep the dates within budget; its valid rows."""
    valid, quarantine = split_rows(item.classified, item.source)
    write_partitions(quarantine, lake, "quarantine", item.source.name, item.dates)
    for date in item.dates:
        key = date.isoformat()
        ledger = item.ledgers.get(key) or IngestLedgerEntry(date=key, source=item.source.name)
        run.day_ledgers[key].append(ledger)
        problem = check_budget(ledger, cfg.ingest.max_quarantine_share)
        if problem:
            log.error("%s", problem)
            run.budget_failures.append(problem)
        else:
            item.within_budget.append(date)
    return valid


def _reference_keys(
    cfg: PipelineConfig, source: TimeSeriesSource, ref_frames: dict[str, DataFrame]
) -> dict[str, list[Any]]:
    """The allowed values of a source's referenced columns: the keys of their reference tables."""
    ref_keys = {r.name: r.key for r in cfg.dataset.reference}
    return {
        col: [r[0] for r in ref_frames[ref].select(ref_keys[ref]).distinct().collect() if r[0] is not None]
        for col, ref in source.references.items()
    }


def _commit_bronze(
    spark: SparkSession,
    cfg: PipelineConfig,
    lake: Lake,
    run: _Run,
    valid: list[tuple[_Checked, DataFrame]],
) -> list[PartitionChecks]:
    """Validate each source's rows within budget with its bronze suite, then commit the dates that pass."""
    # Row counts are bounded by the ledger's recent partitions (this run's own counts inside the range).
    history = recent_ledger_counts(spark, lake, cfg, run.dates)
    checks: list[PartitionChecks] = []
    for item, rows in valid:
        commit = item.within_budget
        if item.source.name in cfg.validation.bronze and item.within_budget:
            keys = [d.isoformat() for d in item.within_budget]
            spec = bronze_spec(cfg, item.source, _reference_keys(cfg, item.source, run.ref_frames))
            counts = history.get(item.source.name, {}) | {k: lg.rows_valid for k, lg in item.ledgers.items()}
            check = TableCheck(f"bronze/{item.source.name}", spec, keys, counts)
            # GX on pandas collects the rows into the driver: only for what fits there.
            n_rows = sum(item.ledgers[k].rows_valid for k in keys if k in item.ledgers)
            engine: EngineChoice = "spark" if n_rows > PANDAS_MAX_ROWS else "auto"
            checks.append(check_partitions(rows.where(rows.date.isin(keys)), cfg, lake, check, engine=engine))
            commit = [d for d in item.within_budget if checks[-1].reports[d.isoformat()].success]
        write_partitions(rows, lake, "bronze", item.source.name, commit)
    return checks


def ingest_range(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, dates: Sequence[dt.date], *, refresh_reference: bool = False
) -> IngestResult:
    """Ingest every source's landing files of ``dates``: quarantine, ledger, bronze suites, bronze.

    Returns the run's result; :func:`raise_for_failures` then fails the run when a partition
    was over the quarantine budget or failed its bronze suite.

    Raises:
        IngestContractError: a landing file breaks the contract (or an entity file is missing).
        MissingPartition: a reference table the checks need is not in bronze.
    """
    started = time.monotonic()
    references = ensure_references(spark, cfg, lake, refresh=refresh_reference)
    sources = cfg.dataset.daily_sources
    ref_frames = read_reference_tables(spark, lake, sorted({n for s in sources for n in s.references.values()}))
    run = _Run(list(dates), ref_frames, day_ledgers={d.isoformat(): [] for d in dates})
    checked = _check_sources(spark, cfg, lake, run)

    # One write per zone and source for the whole range (each date still swapped in atomically):
    # quarantine and ledger first, then bronze only for the dates within the quarantine budget.
    valid = [(item, _quarantine(cfg, lake, run, item)) for item in checked]
    ledgers = [lg for d in dates for lg in run.day_ledgers[d.isoformat()]]
    write_partitions(ledger_frame(spark, ledgers), lake, "monitoring", LEDGER_TABLE, dates)
    checks = _commit_bronze(spark, cfg, lake, run, valid)
    publish_data_docs(lake, checks, f"{dates[0]}..{dates[-1]}", by_suite=True)
    for key, lgs in run.day_ledgers.items():
        log.info("ingested %s: %s", key, ", ".join(f"{lg.source} {lg.rows_valid}/{lg.rows_in} valid" for lg in lgs))
    for item in checked:
        item.classified.unpersist()

    per_date = {k: {lg.source: lg for lg in lgs} for k, lgs in run.day_ledgers.items()}
    return IngestResult(
        partitions=[d.isoformat() for d in dates],
        references=references,
        ledger=per_date,
        rows_in=sum(e.rows_in for d in per_date.values() for e in d.values()),
        rows_quarantined=sum(e.rows_quarantined for d in per_date.values() for e in d.values()),
        missing_files=run.missing,
        extra_columns=run.extra,
        budget_failures=run.budget_failures,
        validation_failures=[f for c in checks for f in c.failures],
        seconds=round(time.monotonic() - started, 1),
    )


def raise_for_failures(result: IngestResult) -> None:
    """Fail an ingest run whose partitions broke the quarantine budget or their bronze suite.

    Raises:
        QuarantineBudgetExceeded: a partition quarantined too large a share (also names validation failures).
        BronzeValidationError: a bronze partition failed its suite (it was not committed).
    """
    budget, failed = result.budget_failures, result.validation_failures
    if budget:
        raise QuarantineBudgetExceeded(
            f"{len(budget)} partition(s) over the quarantine budget: "
            + "; ".join(budget)
            + ("; also failed validation: " + "; ".join(failed) if failed else "")
        )
    if failed:
        raise BronzeValidationError(
            f"{len(failed)} bronze partition(s) failed validation, not committed: " + "; ".join(failed)
        )
