"""Ingest: landing CSV -> typed bronze rows + quarantined rows with reasons + a reconciled ledger.

A landing file is read with every column as a string, under the names of its own header
(checked against the configured columns: never inferred). Each row is then typed with
``try_cast`` (ANSI mode is on) and checked; a row failing any check goes to quarantine with
its raw line and every reason, in this order::

    extra_fields              the line has more fields than its header (an unquoted delimiter)
    missing_required:<col>    a required value is absent (empty or a null marker)
    unparseable:<col>         a value is present but does not cast to the column's type
    <row rule name>           a configured row rule (SQL condition marking a bad row) holds
    unknown_reference:<col>   the value is not a key of the configured reference table
    invalid_date              year, month and day do not form a calendar date (e.g. 2023-02-30)
    wrong_partition           the row's local date (``partition_date``: a date column, a timestamp's
                              day in its zone, or year/month/day) is not the file's partition date
    duplicate_key             the row repeats the keys of an earlier row of the same file

``reason`` is the first of them, ``reasons`` all of them. Whole-file problems raise
:class:`IngestContractError` naming the file, the problem and the expected header: missing
file, bytes that are not UTF-8, empty file, header only, a delimiter other than a comma,
missing (or renamed) or repeated columns, and extra columns when ``ingest.extra_columns``
is ``reject`` (by default they are ignored and reported). The functions here are pure transforms over DataFrames, plus
small readers; :mod:`flightdeck.data.ingest_run` does the writing for ``jobs/ingest.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flightdeck.core.columns import PARTITION as DATE
from flightdeck.core.columns import RAW_LINE, REASON, REASONS, SOURCE_FILE
from flightdeck.core.config import ExtraColumns, PartitionDate, PipelineConfig, ReferenceSource, TimeSeriesSource
from flightdeck.core.errors import FlightdeckError, MissingPartition
from flightdeck.core.lake import Lake, LakeError, parse_date, read_bytes, reference_table
from flightdeck.data.documents import IngestLedgerEntry

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

_ROW = "__row"
# A column past the header's: Spark's permissive CSV reader drops the tokens of a line that
# has more fields than the schema; one spare column catches them, so the line is quarantined.
_OVERFLOW = "__overflow"
CSV_OPTIONS = {
    "header": "true",
    "sep": ",",
    "quote": '"',
    "escape": '"',
    "mode": "PERMISSIVE",
    "encoding": "UTF-8",
    "inferSchema": "false",
}
QUARANTINE_COLUMNS = (RAW_LINE, REASON, REASONS, SOURCE_FILE)
# monitoring/<LEDGER_TABLE>/date=D: one row per source with its row accounting.
LEDGER_TABLE = "ingest_ledger"
# Delimiters people export by mistake; a header split on one of them is reported as such.
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class IngestError(FlightdeckError):
    """Ingest cannot proceed; the message says what to fix."""


class IngestContractError(IngestError):
    """A landing file as a whole breaks the contract (missing, empty, header only, wrong header)."""


class QuarantineBudgetExceeded(IngestError):
    """Too large a share of a partition's rows was quarantined; its bronze partition was not written."""


class LedgerMismatch(RuntimeError):
    """Rows in != rows valid + rows quarantined: a bug, never a data problem."""


@dataclass(frozen=True)
class LandingFile:
    """A landing file that passed the whole-file checks."""

    path: str
    date: dt.date
    header: list[str]
    extra_columns: list[str] = field(default_factory=list)


# --- whole-file checks ------------------------------------------------------------------


def _expected(columns: Sequence[str]) -> str:
    return ",".join(columns)


def _read_text(path: str, expected: str) -> str | None:
    """A landing file's text (strict UTF-8, BOM dropped), or None when it does not exist.

    Day-sized files are read whole, with the lake's reader (local or S3).

    Raises:
        IngestContractError: the file holds bytes that are not UTF-8.
    """
    try:
        body = read_bytes(path)
    except LakeError:
        return None
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = body[: err.start].count(b"\n") + 1
        raise IngestContractError(
            f"landing file {path} is not valid UTF-8: byte 0x{body[err.start]:02x} at line {line} "
            f"(offset {err.start}); re-export it as UTF-8; expected header: {expected}"
        ) from err


def _head(text: str, lines: int = 2) -> list[str]:
    """The first non-blank lines of a text."""
    found: list[str] = []
    for line in text.splitlines():
        if line.strip():
            found.append(line)
            if len(found) == lines:
                break
    return found


def inspect_landing_file(
    path: str, source: TimeSeriesSource, date: dt.date | str, extra_columns: ExtraColumns = "ignore"
) -> LandingFile:
    """Check a landing file as a whole before reading its rows.

    Args:
        path: the landing file (local path or ``s3://``/``s3a://`` URI).
        source: the configured source the file belongs to.
        date: the partition the file lands for.
        extra_columns: ``ignore`` reads the configured columns by name and reports the
            others; ``reject`` fails the file (``ingest.extra_columns``).

    Raises:
        IngestContractError: the file is missing, not UTF-8, empty, holds only a header, is
            split by another delimiter, lacks configured columns (or repeats one), or has
            extra columns that the policy rejects; the message names the file, the problem
            and the expected header.
    """
    wanted = list(source.headers.values())
    expected = _expected(wanted)
    text = _read_text(path, expected)
    if text is None:
        raise IngestContractError(
            f"landing file {path} not found: land {source.name} for {parse_date(date)} first "
            f"(expected header: {expected})"
        )
    head = _head(text)
    if not head:
        raise IngestContractError(f"landing file {path} is empty; expected header: {expected} and at least one row")
    header = [h.strip() for h in next(csv.reader([head[0]]))]
    if len(header) == 1 and len(wanted) > 1:
        used = [name for sep, name in _OTHER_DELIMITERS.items() if len(re.findall(re.escape(sep), head[0])) > 0]
        raise IngestContractError(
            f"landing file {path} is not comma-separated"
            + (f" (its header is split by {used[0]}s)" if used else " (its header is one column)")
            + f": {head[0][:200]!r}; expected header: {expected}"
        )
    missing = [c for c in wanted if c not in header]
    if missing:
        raise IngestContractError(
            f"landing file {path} has header {head[0][:300]!r}, which lacks columns {missing} of source "
            f"{source.name!r} (renamed or missing?); expected header: {expected}"
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise IngestContractError(f"landing file {path} repeats columns {repeated}; expected header: {expected}")
    extra = [h for h in header if h not in wanted]
    if extra and extra_columns == "reject":
        raise IngestContractError(
            f"landing file {path} has extra columns {extra} and ingest.extra_columns is 'reject' "
            f"(set it to 'ignore' to read the configured columns only); expected header: {expected}"
        )
    if len(head) == 1:
        raise IngestContractError(
            f"landing file {path} holds only a header and no rows; expected header: {expected}, then at least one row"
        )
    if extra:
        log.warning("landing file %s has extra columns %s; ignoring them (ingest.extra_columns)", path, extra)
    return LandingFile(path=path, date=parse_date(date), header=header, extra_columns=extra)


# --- reading ----------------------------------------------------------------------------


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _quoted(col: Column) -> Column:
    """A raw field as it would appear in a CSV line (quoted when it holds a comma or quote)."""
    from pyspark.sql import functions as F

    return (
        F.when(col.isNull(), F.lit(""))
        .when(col.rlike('[,"]'), F.concat(F.lit('"'), F.regexp_replace(col, '"', '""'), F.lit('"')))
        .otherwise(col)
    )


def read_landing(spark: SparkSession, files: Sequence[LandingFile], source: TimeSeriesSource) -> DataFrame:
    """Read checked landing files in as few Spark reads as possible, every column a string.

    Returns the configured columns (strings) plus ``raw_line``, ``source_file``, ``date``
    (the file's partition, YYYY-MM-DD) and an internal row order column.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if not files:
        raise IngestError(f"no landing files of {source.name} to read")
    names = [_basename(f.path) for f in files]
    if len(set(names)) != len(names):
        raise IngestError(f"landing files of {source.name} must have distinct file names; got {names}")
    groups: dict[tuple[str, ...], list[LandingFile]] = {}
    for f in files:
        groups.setdefault(tuple(f.header), []).append(f)
    frames = []
    for header, group in groups.items():
        schema = StructType([StructField(c, StringType(), True) for c in [*header, _OVERFLOW]])
        raw = spark.read.options(**CSV_OPTIONS).schema(schema).csv([f.path for f in group])
        base = F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1)
        to_path = F.create_map(*[x for f in group for x in (F.lit(_basename(f.path)), F.lit(f.path))])
        to_date = F.create_map(*[x for f in group for x in (F.lit(_basename(f.path)), F.lit(f.date.isoformat()))])
        frames.append(
            raw.select(
                *[F.col(h).alias(c) for c, h in source.headers.items()],
                F.concat_ws(
                    ",",
                    *[_quoted(F.col(c)) for c in header],
                    # concat_ws skips a null: the overflow shows only when the line had one.
                    F.when(F.col(_OVERFLOW).isNotNull(), _quoted(F.col(_OVERFLOW))),
                ).alias(RAW_LINE),
                F.col(_OVERFLOW),
                to_path[base].alias(SOURCE_FILE),
                to_date[base].alias(DATE),
                # Increasing in file order within a file (one split per landing file).
                F.monotonically_increasing_id().alias(_ROW),
            )
        )
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


# --- row checks -------------------------------------------------------------------------


def _typed(raw: Column, type_name: str, null_values: Sequence[str]) -> tuple[Column, Column]:
    """(value with null markers removed, typed value)."""
    from pyspark.sql import functions as F

    present = F.when(raw.isin(*null_values), F.lit(None).cast("string")).otherwise(raw) if null_values else raw
    if type_name == "string":
        return present, present
    return present, present.try_cast(type_name)


def local_date(spec: PartitionDate) -> Column:
    """A typed row's local calendar date (its partition) under the source's ``partition_date``.

    Null when the columns are null, or when year/month/day do not form a date. A timestamp's
    day is taken in the configured zone (the session clock is UTC, see ``sparkio``).
    """
    from pyspark.sql import functions as F

    if spec.column is not None:
        return F.col(spec.column)
    if spec.timestamp is not None:
        return F.to_date(F.from_utc_timestamp(F.col(spec.timestamp), str(spec.timezone)))
    return F.try_to_date(F.format_string("%04d-%02d-%02d", spec.year, spec.month, spec.day), "yyyy-MM-dd")


def classify_rows(
    df: DataFrame,
    source: TimeSeriesSource,
    reference_frames: Mapping[str, DataFrame] | None = None,
    references: Sequence[ReferenceSource] = (),
) -> DataFrame:
    """Type every configured column and attach ``reasons`` (empty when the row is valid) and ``reason``.

    ``df`` holds the configured columns as strings plus ``date`` and ``source_file`` (as from
    :func:`read_landing`); ``raw_line`` and the row order are added when absent.
    ``reference_frames`` maps reference names to bronze reference tables (needed only when the
    source declares ``references``); ``references`` (the config's reference sources) gives
    their key columns, else a one-column frame's column is the key.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing_cols = [c for c in [*source.column_names, DATE, SOURCE_FILE] if c not in df.columns]
    if missing_cols:
        raise ValueError(f"rows of {source.name} lack columns {missing_cols}; read them with read_landing")
    if _ROW not in df.columns:
        df = df.withColumn(_ROW, F.monotonically_increasing_id())
    if RAW_LINE not in df.columns:
        df = df.withColumn(RAW_LINE, F.concat_ws(",", *[_quoted(F.col(c)) for c in source.column_names]))
    if _OVERFLOW not in df.columns:
        df = df.withColumn(_OVERFLOW, F.lit(None).cast("string"))

    present_cols: dict[str, Column] = {}
    typed_cols: dict[str, Column] = {}
    for c in source.columns:
        present_cols[c.name], typed_cols[c.name] = _typed(F.col(c.name), c.type, source.null_values)
    present_names = {c: f"__present_{c}" for c in source.column_names}
    df = df.select(
        *[typed_cols[c].alias(c) for c in source.column_names],
        *[present_cols[c].alias(present_names[c]) for c in source.column_names],
        RAW_LINE,
        SOURCE_FILE,
        DATE,
        _ROW,
        _OVERFLOW,
    )

    checks: list[tuple[str, Column]] = [("extra_fields", F.col(_OVERFLOW).isNotNull())]
    for name in source.required_columns:
        checks.append((f"missing_required:{name}", F.col(present_names[name]).isNull()))
    for col_cfg in source.columns:
        if col_cfg.type != "string":
            checks.append(
                (
                    f"unparseable:{col_cfg.name}",
                    F.col(present_names[col_cfg.name]).isNotNull() & F.col(col_cfg.name).isNull(),
                )
            )
    for name, condition in source.row_rules.items():
        checks.append((name, F.coalesce(F.expr(condition), F.lit(False))))

    df, reference_checks = _reference_checks(df, source, reference_frames or {}, references)
    checks += reference_checks

    spec = source.partition_date
    date_known = F.lit(True)
    for c in spec.columns:
        date_known = date_known & F.col(c).isNotNull()
    as_date = local_date(spec)
    if spec.kind == "ymd":
        checks.append(("invalid_date", date_known & as_date.isNull()))
    checks.append(("wrong_partition", date_known & as_date.isNotNull() & (as_date != F.to_date(F.col(DATE)))))

    keys_known = F.lit(True)
    for k in source.keys:
        keys_known = keys_known & F.col(k).isNotNull()
    # DATE is 1:1 with the file; leading with it lets a caller's repartition(DATE) serve this window.
    first_seen = Window.partitionBy(DATE, SOURCE_FILE, *source.keys).orderBy(_ROW)
    checks.append(("duplicate_key", keys_known & (F.row_number().over(first_seen) > 1)))

    reasons = F.filter(F.array(*[F.when(cond, F.lit(name)) for name, cond in checks]), lambda x: x.isNotNull())
    return (
        df.withColumn(REASONS, reasons)
        .withColumn(REASON, F.get(F.col(REASONS), 0))
        .select(*source.column_names, RAW_LINE, SOURCE_FILE, DATE, REASON, REASONS, _ROW)
    )


def _reference_checks(
    df: DataFrame,
    source: TimeSeriesSource,
    frames: Mapping[str, DataFrame],
    references: Sequence[ReferenceSource],
) -> tuple[DataFrame, list[tuple[str, Column]]]:
    """Join each referenced column's reference keys to ``df``; the ``unknown_reference:<col>`` checks.

    Raises:
        IngestError: a needed reference table is not given, or its key column is unknown.
    """
    from pyspark.sql import functions as F

    keys_by_ref = {r.name: r.key for r in references}
    checks: list[tuple[str, Column]] = []
    for col_name, ref_name in source.references.items():
        if ref_name not in frames:
            raise IngestError(
                f"reference table {ref_name!r} is needed to check {source.name}.{col_name}; "
                "land and ingest the reference tables first"
            )
        key = keys_by_ref.get(ref_name) or (frames[ref_name].columns[0] if len(frames[ref_name].columns) == 1 else None)
        if key is None:
            raise ValueError(f"key of reference table {ref_name!r} unknown: pass the config's reference sources")
        flag = f"__ref_{col_name}"
        keys = frames[ref_name].select(F.col(key).cast("string").alias(flag)).where(F.col(flag).isNotNull()).distinct()
        df = df.join(F.broadcast(keys), df[col_name] == keys[flag], "left")
        checks.append((f"unknown_reference:{col_name}", F.col(col_name).isNotNull() & F.col(flag).isNull()))
    return df, checks


def split_rows(classified: DataFrame, source: TimeSeriesSource) -> tuple[DataFrame, DataFrame]:
    """(valid rows: typed configured columns + date, quarantined rows: raw line, reasons, file, date)."""
    from pyspark.sql import functions as F

    valid = classified.where(F.col(REASON).isNull()).select(*source.column_names, DATE)
    quarantine = classified.where(F.col(REASON).isNotNull()).select(*QUARANTINE_COLUMNS, DATE)
    return valid, quarantine


# --- ledger ---------------------------------------------------------------------------------


def build_ledgers(raw: DataFrame, classified: DataFrame, source: TimeSeriesSource) -> dict[str, IngestLedgerEntry]:
    """Per-date ledgers of one source; rows in are counted on the raw read, independently of the checks.

    Raises:
        LedgerMismatch: rows in != valid + quarantined for some date.
    """
    from pyspark.sql import functions as F

    rows_in = {r[DATE]: int(r["n"]) for r in raw.groupBy(DATE).agg(F.count(F.lit(1)).alias("n")).collect()}
    ledgers = {d: IngestLedgerEntry(date=d, source=source.name, rows_in=n) for d, n in rows_in.items()}
    for r in classified.groupBy(DATE, REASON).agg(F.count(F.lit(1)).alias("n")).collect():
        ledger = ledgers.setdefault(
            r[DATE],
            IngestLedgerEntry(date=r[DATE], source=source.name),
        )
        if r[REASON] is None:
            ledger.rows_valid += int(r["n"])
        else:
            ledger.rows_quarantined += int(r["n"])
            ledger.reasons[r[REASON]] = int(r["n"])
    for ledger in ledgers.values():
        ledger.reasons = dict(sorted(ledger.reasons.items()))
        if ledger.rows_in != ledger.rows_valid + ledger.rows_quarantined:
            raise LedgerMismatch(
                f"{source.name} {ledger.date}: rows_in {ledger.rows_in} != valid {ledger.rows_valid} "
                f"+ quarantined {ledger.rows_quarantined}"
            )
    return ledgers


def ledger_frame(spark: SparkSession, ledgers: Sequence[IngestLedgerEntry]) -> DataFrame:
    """Ledger rows (one per source and date) with a ``date`` column to partition by; ``reasons`` is a JSON string."""
    import json

    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("source", StringType(), False),
            StructField("rows_in", LongType(), False),
            StructField("rows_valid", LongType(), False),
            StructField("rows_quarantined", LongType(), False),
            StructField("quarantine_share", DoubleType(), False),
            StructField("reasons", StringType(), False),
            StructField(DATE, StringType(), False),
        ]
    )
    rows = [
        (
            lg.source,
            lg.rows_in,
            lg.rows_valid,
            lg.rows_quarantined,
            lg.quarantine_share,
            json.dumps(lg.reasons, sort_keys=True),
            lg.date,
        )
        for lg in ledgers
    ]
    # One slice: a few hundred small rows, one file per date partition.
    return spark.createDataFrame(rows, schema).coalesce(1)


def check_budget(ledger: IngestLedgerEntry, max_share: float) -> str | None:
    """A message when the partition's quarantined share exceeds the budget, else None."""
    if ledger.quarantine_share > max_share:
        top = ", ".join(f"{k}={v}" for k, v in sorted(ledger.reasons.items(), key=lambda kv: -kv[1])[:5])
        return (
            f"{ledger.source} {ledger.date}: {ledger.rows_quarantined} of {ledger.rows_in} rows quarantined "
            f"({ledger.quarantine_share:.1%}) > budget {max_share:.1%} (ingest.max_quarantine_share); "
            f"top reasons: {top}; bronze not written, see quarantine/{ledger.source}/date={ledger.date}"
        )
    return None


# --- reference tables -------------------------------------------------------------------------


def read_reference(spark: SparkSession, path: str, ref: ReferenceSource) -> DataFrame:
    """Read a landed reference table: strings, null markers removed, declared columns cast.

    Raises:
        IngestContractError: the file is missing or empty, or lacks the key or a declared column.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    text = _read_text(path, expected=f"a header with {ref.key!r}")
    if text is None:
        raise IngestContractError(f"reference file {path} not found; land the reference tables first")
    head = _head(text, lines=1)
    if not head:
        raise IngestContractError(f"reference file {path} is empty; expected a header with {ref.key!r}")
    header = [h.strip() for h in next(csv.reader([head[0]]))]
    missing = [c for c in [ref.key, *ref.column_types] if c not in header]
    if missing:
        raise IngestContractError(
            f"reference file {path} lacks columns {missing} (key and declared column_types of {ref.name!r}); "
            f"found header: {head[0][:300]!r}"
        )
    schema = StructType([StructField(c, StringType(), True) for c in header])
    raw = spark.read.options(**CSV_OPTIONS).schema(schema).csv(path)
    cols = []
    for c in header:
        _, typed = _typed(F.col(c), ref.column_types.get(c, "string"), ref.null_values)
        cols.append(typed.alias(c))
    return raw.select(*cols)


def ingest_reference(spark: SparkSession, cfg: PipelineConfig, lake: Lake) -> dict[str, int]:
    """Read every landed reference table and replace ``bronze/ref_<name>``; returns rows per table."""
    from flightdeck.data.sparkio import write_table

    counts: dict[str, int] = {}
    for ref in cfg.dataset.reference:
        df = read_reference(spark, lake.reference_file(ref.name), ref).cache()
        counts[ref.name] = df.count()
        write_table(df.coalesce(1), lake, "bronze", reference_table(ref.name))
        df.unpersist()
        log.info("ingested reference %s: %d rows", ref.name, counts[ref.name])
    return counts


def read_reference_tables(spark: SparkSession, lake: Lake, names: Sequence[str]) -> dict[str, DataFrame]:
    """The bronze reference tables by name.

    Raises:
        MissingPartition: a table is not in bronze yet.
    """
    from flightdeck.core.lake import COMMIT_MARKER, json_exists

    frames: dict[str, DataFrame] = {}
    for name in names:
        path = lake.table("bronze", reference_table(name))
        if not json_exists(f"{path}/{COMMIT_MARKER}"):
            raise MissingPartition(f"reference table {path} not found; run jobs/ingest.py to ingest references")
        frames[name] = spark.read.parquet(path)
    return frames
