"""Ingest: landing files -> typed bronze rows + quarantined rows with reasons + a reconciled ledger.

A source declares its file format (``format``: ``kind`` csv, jsonl or parquet; for CSV the
``delimiter``, ``quote`` and ``encoding``; ``compression`` none or gzip for the text formats),
and its day's file is ``<source>_<date>.<format.extension>``. Every value is read as a string
under the file's own names (a CSV header, JSON keys, Parquet columns; checked against the
configured columns' headers, never inferred):

- CSV: the declared dialect; a quoted field may hold delimiters, quotes (doubled) and line
  breaks (read as multi-line CSV when ``format.multi_line`` declares it or the file's head
  shows one; a record spanning lines is then one row); ``raw_line`` is the record re-quoted
  in that dialect.
- JSON lines: one object per line; each value as a string (nested values as JSON text,
  numbers as Spark renders them: ``1.50`` -> ``1.5``); ``raw_line`` is the line itself.
- Parquet: every column cast to a string (nested ones as JSON); ``raw_line`` is the row as JSON.

Each row is then typed with ``try_cast`` (ANSI mode is on) and checked; a row failing any
check goes to quarantine with its raw line and every reason, in this order::

    malformed_record          a JSON line that is not a JSON object (its only reason)
    extra_fields              the line has more fields than its header (an unquoted delimiter)
    missing_required:<col>    a required value is absent (empty or a null marker)
    unparseable:<col>         a value is present but does not cast to the column's type
    non_finite:<col>          a double column holds NaN, Infinity or -Infinity (``inf``, ``1e400``...)
    <row rule name>           a configured row rule (SQL condition marking a bad row) holds
    unknown_reference:<col>   the value is not a key of the configured reference table
    invalid_date              year, month and day do not form a calendar date (e.g. 2023-02-30)
    wrong_partition           the row's local date (``partition_date``: a date column, a timestamp's
                              day in its zone, or year/month/day) is not the file's partition date
    duplicate_key             the row repeats the keys of an earlier row of the same file

``reason`` is the first of them, ``reasons`` all of them. Whole-file problems raise
:class:`IngestContractError` naming the file, the problem and the expected header: missing
file, not gzip when gzip is declared, bytes that are not valid in the declared encoding (with
line and offset), empty file, header only (no rows), a CSV split by another delimiter than the
declared one, a quoted CSV field never closed, a JSON lines file without any JSON object,
configured columns missing (or renamed; for JSON lines: in every line) or repeated, and extra
columns when ``ingest.extra_columns`` is ``reject`` (by default they are ignored and
reported). These checks read a file's head only (:data:`HEAD_BYTES`; a Parquet file's footer),
never the whole file: Spark reads the rows. The functions here are pure transforms over DataFrames, plus small readers;
:mod:`flightdeck.data.ingest_run` does the writing for ``jobs/ingest.py``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import json
import logging
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from flightdeck.core.columns import PARTITION as DATE
from flightdeck.core.columns import RAW_LINE, REASON, REASONS, SOURCE_FILE
from flightdeck.core.config import (
    ExtraColumns,
    FileFormat,
    PartitionDate,
    PipelineConfig,
    ReferenceSource,
    TimeSeriesSource,
)
from flightdeck.core.errors import FlightdeckError, MissingPartition
from flightdeck.core.lake import Lake, LakeError, open_binary, parse_date, reference_table
from flightdeck.data.documents import IngestLedgerEntry

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

log = logging.getLogger(__name__)

_ROW = "__row"
# A column past the header's: Spark's permissive CSV reader drops the tokens of a line that
# has more fields than the schema; one spare column catches them, so the line is quarantined.
_OVERFLOW = "__overflow"
# True for a JSON line that is not a JSON object (its values are then all null).
_MALFORMED = "__malformed"
_RAW = "__raw"
_FILE = "__file"
_CORRUPT = "__corrupt"
MALFORMED_RECORD = "malformed_record"
QUARANTINE_COLUMNS = (RAW_LINE, REASON, REASONS, SOURCE_FILE)
# monitoring/<LEDGER_TABLE>/date=D: one row per source with its row accounting.
LEDGER_TABLE = "ingest_ledger"
# Delimiters people export with; a header split on another one than declared is reported as such.
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Charsets Spark decodes JSON lines from (ASCII-compatible: a line break is the byte 0x0a).
_JSONL_CHARSETS = ("UTF-8", "ISO-8859-1", "US-ASCII")
_BLANK = r"^\s*$"
# The contract checks read at most this much of a file (decompressed): the header, the first
# rows, the dialect. Spark reads the whole file; the driver never holds it (a landing file
# may be larger than the driver's memory).
HEAD_BYTES = 1 << 20
# Longest field a multi-line CSV read accepts: a quote never closed past the head would
# otherwise swallow the rest of the file into one value in one task's memory.
MAX_FIELD_CHARS = 1 << 24


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
    """A landing file that passed the whole-file checks.

    ``header`` is the file's columns in file order (a CSV header, the JSON keys met in the
    file, the Parquet schema); ``signature`` the Parquet column types (files of one Spark
    read must agree on them); ``multi_line`` whether a quoted CSV field holds a line break.
    """

    path: str
    date: dt.date
    header: list[str]
    extra_columns: list[str] = field(default_factory=list)
    signature: tuple[str, ...] = ()
    multi_line: bool = False
    # The file is larger than the head the checks read (HEAD_BYTES): its rows may not fit in memory.
    large: bool = False


# --- file formats -----------------------------------------------------------------------


def _charset(encoding: str) -> str:
    """The JVM charset name (Spark's) of a Python codec name: ``latin-1`` -> ``ISO-8859-1``.

    Raises:
        IngestError: the encoding is unknown.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError as err:
        raise IngestError(
            f"unknown encoding {encoding!r} in format.encoding; use a name such as utf-8, latin-1 or cp1252"
        ) from err
    iso = re.fullmatch(r"iso8859-(\d+)", name)
    if iso:
        return f"ISO-8859-{iso.group(1)}"
    windows = re.fullmatch(r"cp(125\d)", name)
    if windows:
        return f"windows-{windows.group(1)}"
    named = {"utf-8-sig": "UTF-8", "ascii": "US-ASCII", "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE"}
    named |= {"utf-32-le": "UTF-32LE", "utf-32-be": "UTF-32BE"}
    return named.get(name, name.upper())


def _delimiter_name(sep: str) -> str:
    return _DELIMITER_NAMES.get(sep, repr(sep))


def _expected(columns: Sequence[str], fmt: FileFormat) -> str:
    """What a file of the format should hold, for error messages (``expected header: a,b``)."""
    if fmt.kind == "csv":
        return "expected header: " + fmt.delimiter.join(columns)
    return f"expected {'keys' if fmt.kind == 'jsonl' else 'columns'}: " + ", ".join(columns)


@dataclass(frozen=True)
class _Head:
    """The first bytes of a file (decompressed), and whether they are the whole file."""

    body: bytes
    complete: bool


def _read_head(path: str, fmt: FileFormat, what: str, expected: str) -> _Head | None:
    """At most :data:`HEAD_BYTES` of a file, decompressed when the format says gzip, streamed
    with the lake's reader (local or S3); None when the file does not exist.

    Raises:
        IngestContractError: gzip is declared and the head is not a (complete) gzip stream.
    """
    try:
        stream = open_binary(path)
    except LakeError:
        return None
    with stream:
        if fmt.compression != "gzip":  # never on Parquet (the config refuses it)
            body = stream.read(HEAD_BYTES + 1)
        else:
            try:
                with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                    body = unzipped.read(HEAD_BYTES + 1)
            except (OSError, EOFError, zlib.error) as err:
                raise IngestContractError(
                    f"{what} {path} is not a valid gzip file ({err}); format.compression is gzip: "
                    f"deliver it gzipped, or declare compression: none; {expected}"
                ) from err
    return _Head(body[:HEAD_BYTES], complete=len(body) <= HEAD_BYTES)


def _decode(head: _Head, path: str, fmt: FileFormat, what: str, expected: str) -> str:
    """A head's text in its declared encoding (a leading byte-order mark dropped); a head that
    is not the whole file ends at its last complete line.

    Raises:
        IngestContractError: bytes that are not valid in that encoding (line and offset named).
    """
    charset = _charset(fmt.encoding)
    body = head.body
    try:
        text = codecs.getincrementaldecoder(fmt.encoding)().decode(body, final=head.complete)
        text = text.removeprefix("\ufeff")
        if head.complete:
            return text
        cut = max(text.rfind("\n"), text.rfind("\r"))
        return text[: cut + 1] if cut >= 0 else text
    except UnicodeDecodeError as err:
        line = body[: err.start].decode(fmt.encoding, errors="replace").count("\n") + 1
        where = f"offset {err.start}" + (" of the decompressed text" if fmt.compression == "gzip" else "")
        raise IngestContractError(
            f"{what} {path} is not valid {charset}: byte 0x{body[err.start]:02x} at line {line} ({where}); "
            f"re-export it as {charset}, or declare the encoding it is in (format.encoding); {expected}"
        ) from err


def _blank(record: Sequence[str]) -> bool:
    """A CSV record that is an empty or whitespace-only line (not a row; Spark skips it too)."""
    return not record or (len(record) == 1 and not record[0].strip())


@dataclass(frozen=True)
class _Scan:
    """What the whole-file pass found in a file."""

    columns: list[str]  # the header, the JSON keys in order of appearance, the Parquet schema
    shown: str  # the header as found, for messages
    empty: bool = False  # nothing but blank lines (or no bytes)
    has_rows: bool = True
    objects: int = 0  # JSON lines: lines that are JSON objects
    bad_lines: tuple[int, ...] = ()  # JSON lines: numbers of the first lines that are not objects
    signature: tuple[str, ...] = ()  # Parquet: the column types
    multi_line: bool = False  # CSV: a quoted field holds a line break
    large: bool = False  # the file is larger than HEAD_BYTES (the checks saw its head only)


def _walk_csv(text: str, fmt: FileFormat, *, strict: bool) -> tuple[list[list[str]], bool, str | None, int]:
    """Parse a CSV text whole: (its first two non-blank records, whether a record spans lines,
    the parser's error or None, the line the failing record starts on)."""
    head: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter, quotechar=fmt.quote, strict=strict)
    start = 1
    multi_line = False
    try:
        for record in reader:
            if not _blank(record) and len(head) < 2:
                head.append(record)
            multi_line = multi_line or reader.line_num > start
            start = reader.line_num + 1
    except csv.Error as err:
        return head, multi_line, str(err), start
    return head, multi_line, None, start


def _scan_csv(text: str, path: str, fmt: FileFormat, what: str, expected: str, complete: bool = True) -> _Scan:
    """The header and first row of a CSV text, parsed in its dialect, and whether a record spans lines.

    The text is the file's head (``complete`` when it is the whole file), parsed whole: in a
    whole file a quoted field left open (which would swallow every later line into one field)
    is caught here; a head may end inside a quoted line break, which only says the file is
    multi-line (Spark's read then bounds a field, see :data:`MAX_FIELD_CHARS`).

    Raises:
        IngestContractError: a quoted field is never closed.
    """
    head, multi_line, error, start = _walk_csv(text, fmt, strict=True)
    if error is not None and "unexpected end of data" in error and not complete:
        head, _, _, _ = _walk_csv(text, fmt, strict=False)
        return _Scan(
            columns=[h.strip() for h in head[0]] if head else [],
            shown=fmt.delimiter.join(head[0]) if head else "",
            multi_line=True,
        )
    if error is not None and "unexpected end of data" in error:
        raise IngestContractError(
            f"{what} {path} has a quoted field opened at line {start} that is never closed "
            f"(a stray {fmt.quote} quote swallows every later line); fix the quoting; {expected}"
        )
    if error is not None:
        # Other strictness (e.g. a character right after a closing quote): Spark reads such
        # records as the lenient parser does.
        head, multi_line, _, _ = _walk_csv(text, fmt, strict=False)
    if not head:
        return _Scan(columns=[], shown="", empty=True, has_rows=False)
    header = [h.strip() for h in head[0]]
    has_rows = len(head) > 1 or not complete
    return _Scan(columns=header, shown=fmt.delimiter.join(head[0]), has_rows=has_rows, multi_line=multi_line)


def _lines(text: str) -> list[str]:
    """A text's lines, split where Spark's text reader splits them (``\\n``, ``\\r``, ``\\r\\n``)."""
    return [line.rstrip("\r\n") for line in io.StringIO(text, newline="")]


def _scan_jsonl(text: str) -> _Scan:
    """The keys of a JSON lines text (in order of first appearance) and its lines that are not objects."""
    keys: dict[str, None] = {}
    rows = objects = 0
    bad: list[int] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        rows += 1
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            objects += 1
            keys.update(dict.fromkeys(obj))
        elif len(bad) < 5:
            bad.append(number)
    return _Scan(
        columns=list(keys),
        shown=", ".join(keys),
        empty=rows == 0,
        has_rows=rows > 0,
        objects=objects,
        bad_lines=tuple(bad),
    )


def _scan_parquet(path: str, what: str, expected: str) -> _Scan | None:
    """The schema and row count of a Parquet file, from its footer (the rest is not read); None
    when the file does not exist.

    Raises:
        IngestContractError: the bytes are not a Parquet file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        stream = open_binary(path)
    except LakeError:
        return None
    try:
        with stream:
            large = stream.seek(0, io.SEEK_END) > HEAD_BYTES
            meta = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as err:
        raise IngestContractError(f"{what} {path} is not a Parquet file ({err}); {expected}") from err
    schema = meta.schema_arrow
    return _Scan(
        large=large,
        columns=list(schema.names),
        shown=", ".join(schema.names),
        empty=False,
        has_rows=meta.metadata.num_rows > 0,
        signature=tuple(str(t) for t in schema.types),
    )


def _scan(path: str, fmt: FileFormat, what: str, expected: str) -> _Scan | None:
    """The whole-file checks' pass over a file's head (a Parquet file's footer); None when it
    does not exist. Never more than :data:`HEAD_BYTES` of the file is read here."""
    if fmt.kind == "parquet":
        return _scan_parquet(path, what, expected)
    head = _read_head(path, fmt, what, expected)
    if head is None:
        return None
    text = _decode(head, path, fmt, what, expected)
    scan = _scan_jsonl(text) if fmt.kind == "jsonl" else _scan_csv(text, path, fmt, what, expected, head.complete)
    return replace(scan, large=not head.complete)


def _check_readable(fmt: FileFormat, owner: str) -> None:
    """Refuse a format Spark cannot read as declared (before any file is opened).

    Raises:
        IngestError: the encoding is unknown, or JSON lines are in one Spark cannot split into lines.
    """
    charset = _charset(fmt.encoding)
    if fmt.kind == "jsonl" and charset not in _JSONL_CHARSETS:
        raise IngestError(
            f"{owner}: JSON lines are read as UTF-8 (the JSON lines standard), ISO-8859-1 or US-ASCII, "
            f"not {fmt.encoding!r}; set its format.encoding to one of them"
        )


def inspect_landing_file(
    path: str, source: TimeSeriesSource, date: dt.date | str, extra_columns: ExtraColumns = "ignore"
) -> LandingFile:
    """Check a landing file as a whole, in the source's format, before reading its rows.

    Args:
        path: the landing file (local path or ``s3://``/``s3a://`` URI).
        source: the configured source the file belongs to (its columns' headers and ``format``).
        date: the partition the file lands for.
        extra_columns: ``ignore`` reads the configured columns by name and reports the
            others; ``reject`` fails the file (``ingest.extra_columns``).

    Raises:
        IngestContractError: the file is missing, not gzip when gzip is declared, not valid in
            its declared encoding, empty, holds only a header (no rows), is split by another
            delimiter, has a quoted field never closed, holds no JSON object, lacks configured
            columns (in every line, for JSON lines) or repeats one, or has extra columns that
            the policy rejects; the message names the file, the problem and the expected header.
        IngestError: the declared encoding is unknown, or JSON lines are declared in one Spark
            cannot split into lines (e.g. UTF-16).
    """
    fmt = source.format
    _check_readable(fmt, f"source {source.name!r}")
    wanted = list(source.headers.values())
    expected = _expected(wanted, fmt)
    scan = _scan(path, fmt, "landing file", expected)
    if scan is None:
        raise IngestContractError(
            f"landing file {path} not found: land {source.name} for {parse_date(date)} first ({expected})"
        )
    if scan.empty:
        raise IngestContractError(f"landing file {path} is empty; {expected} and at least one row")
    header = scan.columns
    if fmt.kind == "csv" and len(header) == 1 and len(wanted) > 1:
        used = [name for sep, name in _DELIMITER_NAMES.items() if sep != fmt.delimiter and sep in scan.shown]
        raise IngestContractError(
            f"landing file {path} is not {_delimiter_name(fmt.delimiter)}-separated"
            + (f" (its header is split by {used[0]}s)" if used else " (its header is one column)")
            + f": {scan.shown[:200]!r}; {expected}"
            + ("" if fmt.delimiter == "," and not used else "; or declare its delimiter (format.delimiter)")
        )
    if fmt.kind == "jsonl" and scan.objects == 0:
        raise IngestContractError(
            f"landing file {path} holds no JSON object (lines {list(scan.bad_lines)} are not objects): "
            f"is it JSON lines, one object per line? {expected}"
        )
    missing = [c for c in wanted if c not in header]
    if missing:
        found = {"csv": "header", "jsonl": "keys", "parquet": "columns"}[fmt.kind]
        where = " in every line" if fmt.kind == "jsonl" else ""
        raise IngestContractError(
            f"landing file {path} has {found} {scan.shown[:300]!r}, which lacks columns {missing}{where} of source "
            f"{source.name!r} (renamed or missing?); {expected}"
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise IngestContractError(f"landing file {path} repeats columns {repeated}; {expected}")
    extra = [h for h in header if h not in wanted]
    if extra and extra_columns == "reject":
        raise IngestContractError(
            f"landing file {path} has extra columns {extra} and ingest.extra_columns is 'reject' "
            f"(set it to 'ignore' to read the configured columns only); {expected}"
        )
    if not scan.has_rows:
        raise IngestContractError(
            f"landing file {path} holds only a header and no rows; {expected}, then at least one row"
            if fmt.kind == "csv"
            else f"landing file {path} holds no rows; {expected}"
        )
    if extra:
        log.warning("landing file %s has extra columns %s; ignoring them (ingest.extra_columns)", path, extra)
    return LandingFile(
        path=path,
        date=parse_date(date),
        header=header,
        extra_columns=extra,
        signature=scan.signature,
        multi_line=fmt.multi_line or scan.multi_line,
        large=scan.large,
    )


# --- reading ----------------------------------------------------------------------------


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _col(name: str) -> Column:
    """A column by its exact name (dots and spaces taken literally)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _quoted(col: Column, delimiter: str = ",", quote: str = '"') -> Column:
    """A raw field as it appears in a CSV record (quoted when it holds the delimiter, the quote or a line break)."""
    from pyspark.sql import functions as F

    special = "[" + "".join(re.escape(c) for c in {delimiter, quote, "\r", "\n"}) + "]"
    return (
        F.when(col.isNull(), F.lit(""))
        .when(col.rlike(special), F.concat(F.lit(quote), F.replace(col, F.lit(quote), F.lit(quote * 2)), F.lit(quote)))
        .otherwise(col)
    )


def csv_options(fmt: FileFormat, multi_line: bool = False) -> dict[str, str]:
    """Spark's CSV options for a declared dialect: every field a string, quotes escaped by doubling.

    ``multi_line`` for files whose quoted fields hold line breaks: each is then parsed whole by
    one task (and a whitespace-only line there is read as a row, which the line reader skips),
    and a field longer than :data:`MAX_FIELD_CHARS` fails the read (a quote never closed).
    """
    bound = {"maxCharsPerColumn": str(MAX_FIELD_CHARS)} if multi_line else {}
    return bound | {
        "header": "true",
        "sep": fmt.delimiter,
        "quote": fmt.quote,
        "escape": fmt.quote,
        "mode": "PERMISSIVE",
        "encoding": _charset(fmt.encoding),
        "multiLine": str(multi_line).lower(),
        "inferSchema": "false",
    }


def _as_string(col: Column, data_type: DataType) -> Column:
    """A Parquet value as a string: nested values as JSON, the rest cast."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(data_type, (ArrayType, MapType, StructType)):
        return F.to_json(col)
    return col.cast("string")


def _read_strings(
    spark: SparkSession, paths: Sequence[str], header: Sequence[str], fmt: FileFormat, multi_line: bool = False
) -> DataFrame:
    """Files of one format and header: every ``header`` column a string, plus their raw record
    (``__raw``), the overflow field (``__overflow``), the malformed flag (``__malformed``) and the
    file (``__file``). Blank lines are not rows (except whitespace-only lines of a multi-line
    CSV, see :func:`csv_options`). Spark decompresses ``.gz`` files by their name.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    file = F.col("_metadata.file_path").alias(_FILE)
    if fmt.kind == "csv":
        schema = StructType([StructField(c, StringType(), True) for c in [*header, _OVERFLOW]])
        raw = spark.read.options(**csv_options(fmt, multi_line)).schema(schema).csv(list(paths))
        # No filter over the fields here: one referencing every column makes the optimizer's
        # constraint propagation explode (each renamed column doubles the constraints).
        return raw.select(
            *[_col(c) for c in header],
            F.concat_ws(
                fmt.delimiter,
                *[_quoted(_col(c), fmt.delimiter, fmt.quote) for c in header],
                # concat_ws skips a null: the overflow shows only when the line had one.
                F.when(F.col(_OVERFLOW).isNotNull(), _quoted(F.col(_OVERFLOW), fmt.delimiter, fmt.quote)),
            ).alias(_RAW),
            F.col(_OVERFLOW),
            F.lit(False).alias(_MALFORMED),
            file,
        )
    if fmt.kind == "jsonl":
        text = spark.read.text(list(paths))
        value = F.col("value")
        charset = _charset(fmt.encoding)
        if charset != "UTF-8":
            # The text reader keeps a line's bytes; decode them in the declared charset.
            value = F.decode(value.cast("binary"), charset)
        lines = text.select(F.regexp_replace(value, "^\ufeff", "").alias(_RAW), file).where(~F.col(_RAW).rlike(_BLANK))
        schema = StructType([StructField(c, StringType(), True) for c in [*header, _CORRUPT]])
        options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
        # Parsed once (a select of its own: Spark does not inline a costly expression into its users).
        parsed = lines.select(F.from_json(F.col(_RAW), schema, options).alias(_CORRUPT), F.col(_RAW), F.col(_FILE))
        record = F.col(_CORRUPT)
        trimmed = F.trim(F.col(_RAW))
        malformed = (
            record.isNull() | record.getField(_CORRUPT).isNotNull() | ~trimmed.startswith("{") | ~trimmed.endswith("}")
        )
        return parsed.select(
            *[record.getField(c).alias(c) for c in header],
            F.col(_RAW),
            F.lit(None).cast("string").alias(_OVERFLOW),
            malformed.alias(_MALFORMED),
            F.col(_FILE),
        )
    raw = spark.read.parquet(*paths)
    types = {f.name: f.dataType for f in raw.schema.fields}
    return raw.select(
        *[_as_string(_col(c), types[c]).alias(c) for c in header],
        F.to_json(F.struct(*[_col(c) for c in header]), {"ignoreNullFields": "false"}).alias(_RAW),
        F.lit(None).cast("string").alias(_OVERFLOW),
        F.lit(False).alias(_MALFORMED),
        file,
    )


def read_landing(spark: SparkSession, files: Sequence[LandingFile], source: TimeSeriesSource) -> DataFrame:
    """Read checked landing files in as few Spark reads as possible, every column a string.

    Returns the configured columns (strings) plus ``raw_line``, ``source_file``, ``date``
    (the file's partition, YYYY-MM-DD) and internal columns (the row order, the overflow
    field of a CSV line, whether a JSON line is malformed).
    """
    from pyspark.sql import functions as F

    if not files:
        raise IngestError(f"no landing files of {source.name} to read")
    names = [_basename(f.path) for f in files]
    if len(set(names)) != len(names):
        raise IngestError(f"landing files of {source.name} must have distinct file names; got {names}")
    fmt = source.format
    _check_readable(fmt, f"source {source.name!r}")
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], bool], list[LandingFile]] = {}
    for f in files:
        # JSON lines are read by key, whatever keys a file has; CSV by position, Parquet by type.
        if fmt.kind == "jsonl":
            key: tuple[tuple[str, ...], tuple[str, ...], bool] = (tuple(source.headers.values()), (), False)
        else:
            key = (tuple(f.header), f.signature, f.multi_line)
        groups.setdefault(key, []).append(f)
    frames = []
    for (header, _, multi_line), group in groups.items():
        raw = _read_strings(spark, [f.path for f in group], header, fmt, multi_line)
        base = F.element_at(F.split(F.col(_FILE), "/"), -1)
        to_path = F.create_map(*[x for f in group for x in (F.lit(_basename(f.path)), F.lit(f.path))])
        to_date = F.create_map(*[x for f in group for x in (F.lit(_basename(f.path)), F.lit(f.date.isoformat()))])
        frames.append(
            raw.select(
                *[_col(h).alias(c) for c, h in source.headers.items()],
                F.col(_RAW).alias(RAW_LINE),
                F.col(_OVERFLOW),
                F.col(_MALFORMED),
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
    year, month, day = spec.columns
    return F.try_to_date(F.format_string("%04d-%02d-%02d", year, month, day), "yyyy-MM-dd")


def classify_rows(
    df: DataFrame,
    source: TimeSeriesSource,
    reference_frames: Mapping[str, DataFrame] | None = None,
    references: Sequence[ReferenceSource] = (),
) -> DataFrame:
    """Type every configured column and attach ``reasons`` (empty when the row is valid) and ``reason``.

    ``df`` holds the configured columns as strings plus ``date`` and ``source_file`` (as from
    :func:`read_landing`); ``raw_line``, the row order and the malformed flag are added when absent.
    ``reference_frames`` maps reference names to bronze reference tables (needed only when the
    source declares ``references``); ``references`` (the config's reference sources) gives
    their key columns, else a one-column frame's column is the key.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing_cols = [c for c in [*source.column_names, DATE, SOURCE_FILE] if c not in df.columns]
    if missing_cols:
        raise ValueError(f"rows of {source.name} lack columns {missing_cols}; read them with read_landing")
    defaults = {
        _ROW: F.monotonically_increasing_id(),
        RAW_LINE: F.concat_ws(",", *[_quoted(F.col(c)) for c in source.column_names]),
        _OVERFLOW: F.lit(None).cast("string"),
        _MALFORMED: F.lit(False),
    }
    added = {name: value for name, value in defaults.items() if name not in df.columns}
    if added:  # an empty withColumns fails under Spark Connect
        df = df.withColumns(added)

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
        _MALFORMED,
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
    for col_cfg in source.columns:
        if col_cfg.type == "double":
            # NaN, Infinity, -inf, 1e400 cast to doubles that pass null and range checks (NaN
            # compares false) or fail a whole day's suite: each such row is quarantined instead.
            value = F.col(col_cfg.name)
            infinite = F.isnan(value) | (F.abs(value) == F.lit(float("inf")))
            checks.append((f"non_finite:{col_cfg.name}", F.coalesce(infinite, F.lit(False))))
    for name, condition in source.row_rules.items():
        checks.append((name, F.coalesce(F.expr(condition), F.lit(False))))

    df, reference_checks = _reference_checks(df, source, reference_frames or {}, references)
    checks += reference_checks

    spec = source.partition_date
    date_known = F.lit(True)
    for date_col in spec.columns:
        date_known = date_known & F.col(date_col).isNotNull()
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

    found = F.filter(F.array(*[F.when(cond, F.lit(name)) for name, cond in checks]), lambda x: x.isNotNull())
    # A malformed record has no values to check: that is its only reason.
    reasons = F.when(F.col(_MALFORMED), F.array(F.lit(MALFORMED_RECORD))).otherwise(found)
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
        IngestContractError: a multi-line CSV file holds a field longer than :data:`MAX_FIELD_CHARS`.
    """
    from pyspark.sql import functions as F

    try:
        rows_in = {r[DATE]: int(r["n"]) for r in raw.groupBy(DATE).agg(F.count(F.lit(1)).alias("n")).collect()}
    except Exception as err:  # py4j's error class depends on the gateway; the parser's message does not
        if "exceeds the maximum number of characters" not in str(err):
            raise
        where = re.search(r"reading file (\S+?)\.?\s", str(err))
        raise IngestContractError(
            f"landing file {where.group(1) if where else 'of ' + source.name} holds a field longer than "
            f"{MAX_FIELD_CHARS} characters: a quoted field never closed swallows every later line; "
            f"fix the quoting (the source declares multi-line CSV)"
        ) from None
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
    """Read a landed reference table in its format: strings, null markers removed, declared columns cast.

    Raises:
        IngestContractError: the file is missing, empty or (gzip, encoding) unreadable, lacks the
            key or a declared column, or (JSON lines) holds a line that is not a JSON object.
    """
    fmt = ref.format
    _check_readable(fmt, f"reference {ref.name!r}")
    expected = f"{_expected([ref.key, *ref.column_types], fmt)}, at least"
    scan = _scan(path, fmt, "reference file", expected)
    if scan is None:
        raise IngestContractError(f"reference file {path} not found; land the reference tables first")
    if scan.empty:
        raise IngestContractError(f"reference file {path} is empty; {expected}")
    if fmt.kind == "jsonl" and scan.bad_lines:
        # No quarantine for a table that lands whole: a line that is not an object fails it.
        raise IngestContractError(
            f"reference file {path} has lines {list(scan.bad_lines)} that are not JSON objects; "
            "fix them (one JSON object per line) and land it again"
        )
    header = scan.columns
    missing = [c for c in [ref.key, *ref.column_types] if c not in header]
    if missing:
        raise IngestContractError(
            f"reference file {path} lacks columns {missing} (key and declared column_types of {ref.name!r}); "
            f"found: {scan.shown[:300]!r}"
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise IngestContractError(f"reference file {path} repeats columns {repeated}; {expected}")
    raw = _read_strings(spark, [path], header, fmt, fmt.multi_line or scan.multi_line)
    cols = []
    for c in header:
        _, typed = _typed(_col(c), ref.column_types.get(c, "string"), ref.null_values)
        cols.append(typed.alias(c))
    return raw.select(*cols)


def ingest_reference(spark: SparkSession, cfg: PipelineConfig, lake: Lake) -> dict[str, int]:
    """Read every landed reference table and replace ``bronze/ref_<name>``; returns rows per table."""
    from flightdeck.data.sparkio import write_table

    counts: dict[str, int] = {}
    for ref in cfg.dataset.reference:
        df = read_reference(spark, lake.reference_file(ref.name, ref.format.extension), ref).cache()
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
