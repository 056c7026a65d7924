"""Onboarding a dataset: ``flightdeck init`` drafts a config from a sample file, ``flightdeck check`` tests it.

``init`` reads a sample file it has never seen (CSV with a sniffed dialect, JSON lines or
Parquet; gzip recognised by its magic bytes), infers each column's type from its values,
the null tokens, the required columns, candidate keys, the partition date and the file
format, and drafts a complete config: the dataset from the sample, every other section with
the flights defaults. What it cannot decide (the label, the features, a timestamp's zone,
keys when no column is unique) is written as a ``TODO: ...`` value under a
``# TODO(flightdeck init): ...`` comment. ``check`` refuses every TODO value, naming its key,
so a half-filled draft is never taken for a finished one.

``check`` loads a config (every validation error with its key), then reads a sample file
of one source the way ingest will and reports each problem with the config key to change
and what to write there: header (missing, extra), values that do not parse under their
type, undeclared null tokens, required columns with gaps, rows without a partition date,
repeated keys. Pure functions over plain data, plus :func:`read_sample` and
:func:`write_config`; the CLI prints.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import gzip
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from flightdeck.core.columns import platform_column_clash
from flightdeck.core.config import (
    DEFAULT_CONFIG,
    TODO_MARK,
    ColumnType,
    ConfigError,
    FileFormat,
    PartitionDate,
    PipelineConfig,
    TimeSeriesSource,
    load_config,
)
from flightdeck.core.errors import FlightdeckError
from flightdeck.data.landing import row_date

TODO_TAG = "TODO(flightdeck init)"
TODO_PREFIX = "TODO"
# Tokens exports write for a missing value; the ones a sample holds become null_values.
NULL_TOKENS = ("", "NA", "N/A", "n/a", "NULL", "null", "Null", "None", "none", "#N/A")
DELIMITERS = ",;\t|"
MAX_ROWS = 100_000
# Keys are searched on the first rows only (pairs are quadratic), then verified on all.
KEY_SCAN_ROWS = 20_000
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_INT32 = 2**31
_INT64 = 2**63
_INT = re.compile(r"[+-]?\d+")
_LEADING_ZERO = re.compile(r"[+-]?0\d+")
_DOUBLE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SPECIAL_DOUBLES = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
# Spark's casts to boolean accept these (case-insensitive, trimmed).
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|[a-z]Id$", re.IGNORECASE)
_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
_YAML_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}

Compression = Literal["none", "gzip"]


class OnboardingError(FlightdeckError):
    """A sample file cannot be read, or a draft config cannot be written; the message says what to do."""


class SampleEncodingError(OnboardingError):
    """The sample's bytes are not text in the expected encoding."""


# --- reading a sample ----------------------------------------------------------------------


def describe_format(fmt: FileFormat) -> str:
    """``csv, delimiter ';', quote '"', utf-8, gzip``."""
    parts: list[str] = [fmt.kind]
    if fmt.kind == "csv":
        parts += [f"delimiter {fmt.delimiter!r}", f"quote {fmt.quote!r}", fmt.encoding]
    if fmt.compression != "none":
        parts.append(fmt.compression)
    return ", ".join(parts)


@dataclass(frozen=True)
class Sample:
    """A sample file's header and rows, every field as its raw text (None: absent or a typed null)."""

    path: Path
    format: FileFormat
    header: list[str]
    rows: list[list[str | None]]
    # Where each row is: its first line in the file (CSV, JSON lines) or its row number (Parquet).
    lines: list[int]
    # Types the file itself declares (Parquet); inferred from the values otherwise.
    types: dict[str, ColumnType] = field(default_factory=dict)
    truncated: bool = False
    # Lines with more fields than the header (an unquoted delimiter inside a value).
    overlong: list[int] = field(default_factory=list)

    def column(self, header: str) -> list[str | None]:
        i = self.header.index(header)
        return [row[i] for row in self.rows]

    def where(self, index: int) -> str:
        unit = "row" if self.format.kind == "parquet" else "line"
        return f"{unit} {self.lines[index]}"


def read_sample(
    path: str | Path, *, delimiter: str | None = None, quote: str | None = None, encoding: str = "utf-8"
) -> Sample:
    """Read up to :data:`MAX_ROWS` rows of a sample file, sniffing what is not given.

    The kind comes from the bytes (Parquet's magic, a JSON object on the first line, else
    CSV), gzip from its magic bytes; a CSV's delimiter and quote from :class:`csv.Sniffer`
    unless ``delimiter`` is given.

    Raises:
        OnboardingError: the file is missing, empty, not ``encoding`` text, or not parseable.
    """
    file = Path(path)
    if not file.is_file():
        raise OnboardingError(f"sample file {file} not found; pass --sample with a file as the upstream delivers it")
    data = file.read_bytes()
    compression: Compression = "none"
    if data[:2] == GZIP_MAGIC:
        compression = "gzip"
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise OnboardingError(f"sample file {file} starts like gzip but does not decompress: {err}") from err
    if not data.strip():
        raise OnboardingError(f"sample file {file} is empty; give a file with a header and some rows")
    if data[:4] == PARQUET_MAGIC:
        if compression != "none":
            raise OnboardingError(
                f"sample file {file} is a gzipped Parquet file; deliver Parquet as is (it compresses itself)"
            )
        return _read_parquet(file, data)
    text = _decode(file, data, encoding)
    if text.lstrip().startswith("{"):
        return _read_jsonl(file, text, FileFormat(kind="jsonl", encoding=encoding, compression=compression))
    if delimiter is None:
        delimiter, sniffed_quote = sniff_dialect(text)
        quote = quote or sniffed_quote
    fmt = FileFormat(delimiter=delimiter, quote=quote or '"', encoding=encoding, compression=compression)
    return _read_csv(file, text, fmt)


def _decode(file: Path, data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise SampleEncodingError(
            f"sample file {file} is not {encoding} text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            f"re-export it as UTF-8, or declare its encoding in the source's format.encoding"
        ) from err
    except LookupError as err:
        raise SampleEncodingError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8") from err
    return text.removeprefix("\ufeff")


def sniff_dialect(text: str) -> tuple[str, str]:
    """(delimiter, quote) of CSV text: :class:`csv.Sniffer` on its first lines, checked against the header."""
    head = "\n".join(text.splitlines()[:50])
    first = head.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    by_header = max(counts, key=lambda d: counts[d])
    try:
        dialect = csv.Sniffer().sniff(head, delimiters=DELIMITERS)
    except csv.Error:
        return (by_header if counts[by_header] else ","), '"'
    delimiter, quote = dialect.delimiter, dialect.quotechar or '"'
    if counts[by_header] and not counts.get(delimiter):
        delimiter = by_header  # the sniffer voted for a character the header does not even hold
    return delimiter, quote


def _read_csv(file: Path, text: str, fmt: FileFormat) -> Sample:
    reader = csv.reader(io.StringIO(text), delimiter=fmt.delimiter, quotechar=fmt.quote)
    header = [h.strip() for h in next(reader, [])]
    _check_header(file, header)
    rows: list[list[str | None]] = []
    lines: list[int] = []
    overlong: list[int] = []
    width = len(header)
    start = reader.line_num + 1
    for fields in reader:
        if fields and any(f.strip() for f in fields):
            if len(rows) == MAX_ROWS:
                return Sample(file, fmt, header, rows, lines, truncated=True, overlong=overlong)
            if len(fields) > width:
                overlong.append(start)
            padded: list[str | None] = [*fields[:width], *[None] * (width - len(fields))]
            rows.append(padded)
            lines.append(start)
        start = reader.line_num + 1
    return Sample(file, fmt, header, rows, lines, overlong=overlong)


def _check_header(file: Path, header: Sequence[str]) -> None:
    if not header:
        raise OnboardingError(f"sample file {file} has no header line; the first line must name the columns")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise OnboardingError(f"sample file {file} repeats columns {twice} in its header; ingest needs unique names")


def _as_text(value: Any) -> str | None:
    """A JSON or Parquet value as the text a CSV export would hold."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _read_jsonl(file: Path, text: str, fmt: FileFormat) -> Sample:
    header: list[str] = []
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    truncated = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(records) == MAX_ROWS:
            truncated = True
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise OnboardingError(
                f"sample file {file} line {number} is not JSON ({err.msg}); one object a line"
            ) from err
        if not isinstance(record, dict):
            raise OnboardingError(f"sample file {file} line {number} is not a JSON object; one object a line")
        header += [k for k in record if k not in header]
        records.append(record)
        lines.append(number)
    rows = [[_as_text(r.get(h)) for h in header] for r in records]
    return Sample(file, fmt, header, rows, lines, truncated=truncated)


def _arrow_type(arrow_type: Any) -> ColumnType:
    import pyarrow.types as pat

    checks: list[tuple[Any, ColumnType]] = [
        (pat.is_boolean, "boolean"),
        (lambda t: pat.is_int8(t) or pat.is_int16(t) or pat.is_int32(t), "int"),
        (lambda t: pat.is_uint8(t) or pat.is_uint16(t), "int"),
        (pat.is_integer, "long"),
        (lambda t: pat.is_floating(t) or pat.is_decimal(t), "double"),
        (pat.is_date, "date"),
        (pat.is_timestamp, "timestamp"),
    ]
    return next((name for check, name in checks if check(arrow_type)), "string")


def _read_parquet(file: Path, data: bytes) -> Sample:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        raise OnboardingError(f"sample file {file} starts like Parquet but cannot be read: {err}") from err
    header = list(table.column_names)
    _check_header(file, header)
    types = {f.name: _arrow_type(f.type) for f in table.schema}
    records = table.slice(0, MAX_ROWS).to_pylist()
    rows = [[_as_text(r.get(h)) for h in header] for r in records]
    fmt = FileFormat(kind="parquet")
    return Sample(file, fmt, header, rows, list(range(1, len(rows) + 1)), types, truncated=table.num_rows > MAX_ROWS)


# --- values and types ------------------------------------------------------------------------


def _is_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_timestamp(value: str) -> bool:
    if _is_date(value):
        return True  # midnight
    if not _TIMESTAMP.fullmatch(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return False
    return True


def parses_as(value: str, type_name: ColumnType) -> bool:
    """Whether ingest's cast of ``value`` to ``type_name`` gives a value (Spark's rules, ANSI on)."""
    v = value.strip()
    if type_name == "string":
        return True
    if type_name in ("int", "long"):
        bound = _INT32 if type_name == "int" else _INT64
        return bool(_INT.fullmatch(v)) and -bound <= int(v) < bound
    if type_name == "double":
        return bool(_DOUBLE.fullmatch(v)) or v.lower() in _SPECIAL_DOUBLES
    if type_name == "boolean":
        return v.lower() in _TRUE | _FALSE
    if type_name == "date":
        return _is_date(v[:10]) and (len(v) == 10 or v[10] in " T")
    return _is_timestamp(v)


def _integer_type(values: Sequence[str]) -> ColumnType:
    if any(_LEADING_ZERO.fullmatch(v) for v in values):
        return "string"
    ints = [int(v) for v in values]
    if all(-_INT32 <= i < _INT32 for i in ints):
        return "int"
    return "long" if all(-_INT64 <= i < _INT64 for i in ints) else "string"


def infer_type(values: Sequence[str]) -> ColumnType:
    """The narrowest type every (non-null) value parses as; string when none fits or there are none.

    Integers with a leading zero (zip codes, account numbers) stay strings: a cast would drop it.
    """
    present = [v.strip() for v in values]
    lowered = {v.lower() for v in present}
    if not present:
        return "string"
    if lowered <= {"true", "false"} or lowered <= {"yes", "no"}:
        return "boolean"
    if all(_INT.fullmatch(v) for v in present):
        return _integer_type(present)
    tests: list[tuple[ColumnType, Any]] = [
        ("double", _DOUBLE.fullmatch),
        ("date", _is_date),
        ("timestamp", _is_timestamp),
    ]
    return next((name for name, test in tests if all(test(v) for v in present)), "string")


def _is_null(value: str | None, null_values: Sequence[str] | set[str]) -> bool:
    return value is None or value in null_values


# --- drafting a config -------------------------------------------------------------------


@dataclass(frozen=True)
class Todo:
    """A choice init could not make: the key holding its ``TODO: ...`` value, and what to decide."""

    key: str
    what: str


@dataclass(frozen=True)
class ColumnDraft:
    header: str
    name: str
    type: ColumnType
    required: bool
    nulls: int
    distinct: int
    # Why the lake name differs from the header (None: it does not).
    renamed: str | None = None

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name}
        if self.renamed:
            spec["source"] = self.header
        spec["type"] = self.type
        if self.required:
            spec["required"] = True
        return spec


@dataclass(frozen=True)
class Draft:
    """Everything init found in a sample, and the choices it made or left open."""

    name: str
    sample: Sample
    columns: list[ColumnDraft]
    null_values: list[str]
    keys: list[str]
    key_candidates: list[list[str]]
    # PartitionDate fields; a TODO value where the choice is open.
    partition: dict[str, str]
    first_day: dt.date | None
    last_day: dt.date | None
    event_time: str
    label_name: str
    outcomes: list[str]
    numeric: list[str]
    categorical: list[str]
    todos: list[Todo]


def dataset_name(sample: str | Path) -> str:
    """A dataset name from a sample's file name: ``Events 2024-03.csv.gz`` -> ``events_2024_03``."""
    stem = Path(sample).name.split(".", 1)[0]
    name = re.sub(r"[^0-9a-z]+", "_", stem.lower()).strip("_") or "dataset"
    return name if name[0].isalpha() else f"d_{name}"


def _lake_name(header: str, dataset: str, taken: set[str]) -> tuple[str, str | None]:
    base = re.sub(r"[^0-9A-Za-z_]+", "_", header).strip("_") or "column"
    if base[0].isdigit():
        base = f"c_{base}"
    why = None if base == header else f"the header {header!r} is not a plain column name"
    clash = platform_column_clash(header) or platform_column_clash(base)
    if clash:
        base = f"{dataset}_{base.strip('_')}"
        why = f"{header!r} collides with {clash}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    if name != header and why is None:
        why = f"{base!r} is taken"
    return name, why


def _null_tokens(sample: Sample) -> list[str]:
    seen = {v for row in sample.rows for v in row if v is not None and v in NULL_TOKENS}
    if sample.format.kind == "csv":
        seen.add("")  # an empty field is CSV's own null, seen or not
    return [t for t in NULL_TOKENS if t in seen]


def _profile(sample: Sample, header: str, null_values: Sequence[str]) -> tuple[int, int]:
    """(nulls, distinct non-null values) of one sample column."""
    raw = sample.column(header)
    present = [v for v in raw if not _is_null(v, null_values)]
    return len(raw) - len(present), len(set(present))


def _draft_columns(sample: Sample, name: str, null_values: list[str]) -> list[ColumnDraft]:
    drafts: list[ColumnDraft] = []
    taken: set[str] = set()
    for header in sample.header:
        present = [str(v) for v in sample.column(header) if not _is_null(v, null_values)]
        lake, why = _lake_name(header, name, taken)
        taken.add(lake)
        type_name = sample.types.get(header) or infer_type(present)
        nulls, distinct = _profile(sample, header, null_values)
        drafts.append(ColumnDraft(header, lake, type_name, bool(sample.rows) and nulls == 0, nulls, distinct, why))
    return drafts


def _unique(sample: Sample, cols: Sequence[ColumnDraft], rows: int | None = None) -> bool:
    values = list(zip(*[sample.column(c.header)[:rows] for c in cols], strict=True))
    return len(set(values)) == len(values)


def candidate_keys(sample: Sample, columns: Sequence[ColumnDraft], limit: int = 5) -> list[list[str]]:
    """Columns, else pairs of columns, unique and never null in the sample (id-like names first)."""
    if len(sample.rows) < 2:
        return []
    usable = [c for c in columns if c.required and c.type != "double"]
    usable.sort(key=lambda c: (not _ID_NAME.search(c.name), c.type in ("timestamp", "date", "boolean")))
    scan = min(len(sample.rows), KEY_SCAN_ROWS)
    singles = [[c] for c in usable if c.distinct == len(sample.rows)]
    found = [[c.name for c in cols] for cols in singles]
    if found:
        return found[:limit]
    for pair in itertools.combinations(usable, 2):
        if _unique(sample, pair, scan) and _unique(sample, pair):
            found.append([c.name for c in pair])
            if len(found) == limit:
                break
    return found


def _ymd(columns: Sequence[ColumnDraft]) -> dict[str, str] | None:
    ints = [c for c in columns if c.type in ("int", "long")]
    picked: dict[str, str] = {}
    for part in ("year", "month", "day"):
        match = [c for c in ints if re.fullmatch(rf"(.*_)?{part}", c.name, re.IGNORECASE)]
        if not match:
            return None
        picked[part] = match[0].name
    return picked


def _partition(columns: Sequence[ColumnDraft], todos: list[Todo]) -> dict[str, str]:
    """A PartitionDate: a date column, else a timestamp column (zone to confirm), else year/month/day."""
    by_nulls = sorted(columns, key=lambda c: c.nulls)
    dates = [c for c in by_nulls if c.type == "date"]
    if dates:
        return {"column": dates[0].name}
    stamps = [c for c in by_nulls if c.type == "timestamp"]
    if stamps:
        todos.append(
            Todo(
                "dataset.entity.partition_date.timezone",
                f"the IANA time zone whose calendar day of {stamps[0].name!r} is a row's partition "
                "(e.g. UTC, or Europe/Paris for a business that closes its day in Paris)",
            )
        )
        return {
            "timestamp": stamps[0].name,
            "timezone": "TODO: UTC, or the IANA zone whose calendar day is the partition",
        }
    ymd = _ymd(columns)
    if ymd:
        return ymd
    todos.append(
        Todo(
            "dataset.entity.partition_date.column",
            "no date, timestamp or year/month/day column in the sample: name the column(s) a row's date comes from",
        )
    )
    return {"column": "TODO: the date column (or give timestamp+timezone, or year/month/day)"}


def _days(sample: Sample, columns: Sequence[ColumnDraft], partition: dict[str, str], nulls: list[str]) -> list[dt.date]:
    """The partition day of every sample row it can be derived for (a TODO zone read as UTC)."""
    spec_fields = dict(partition)
    if spec_fields.get("timezone", "").startswith(TODO_PREFIX):
        spec_fields["timezone"] = "UTC"
    try:
        spec = PartitionDate.model_validate(spec_fields)
    except ValidationError:
        return []
    headers = {c.name: c.header for c in columns}
    if any(c not in headers for c in spec.columns):
        return []
    idx = [sample.header.index(headers[c]) for c in spec.columns]
    days: list[dt.date] = []
    for row in sample.rows:
        values = [row[i] for i in idx]
        if any(_is_null(v, nulls) for v in values):
            continue
        try:
            days.append(row_date([str(v) for v in values], spec))
        except ValueError:
            continue
    return days


def _event_time(columns: Sequence[ColumnDraft], partition: dict[str, str]) -> str:
    stamps = sorted((c for c in columns if c.type == "timestamp"), key=lambda c: c.nulls)
    if "timestamp" in partition:
        return partition["timestamp"]
    if stamps:
        return stamps[0].name
    if "year" in partition:
        return f"CAST(make_date({partition['year']}, {partition['month']}, {partition['day']}) AS TIMESTAMP)"
    return f"CAST({partition['column']} AS TIMESTAMP)"


def _repeats(col: ColumnDraft, rows: int) -> bool:
    """A categorical column's values repeat (free text and ids do not)."""
    return 1 < col.distinct <= (rows - col.nulls) / 2


def draft_config(sample: Sample, name: str) -> Draft:
    """What a config for ``sample`` holds: found facts, and a :class:`Todo` for each open choice."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise OnboardingError(f"dataset name {name!r} must be lower case letters, digits and _ (e.g. events)")
    if not sample.rows:
        raise OnboardingError(f"sample file {sample.path} holds a header only; give a file with some rows")
    null_values = _null_tokens(sample)
    columns = _draft_columns(sample, name, null_values)
    todos: list[Todo] = []
    partition = _partition(columns, todos)
    days = _days(sample, columns, partition, null_values)
    keys = candidate_keys(sample, columns)
    if not keys:
        todos.append(
            Todo(
                "dataset.entity.keys[0]",
                "no column or pair is unique in the sample: list the columns a row is unique on",
            )
        )
    if not days:
        todos.append(Todo("calendar.start", "the first day to ingest (YYYY-MM-DD)"))
        todos += [
            Todo(f"model.{k}", "the first champion's training window (YYYY-MM-DD)")
            for k in ("train_start", "train_end")
        ]
    names = {c.name for c in columns}
    # Not plain `label`: downstream steps use that name for their own working columns.
    label_name = next((n for n in (f"{name}_label", f"{name}_target") if n not in names), f"{name}_label_")
    # A one-column key is an id (never a feature); the parts of a composite key may well be.
    key_cols = set(keys[0]) if keys and len(keys[0]) == 1 else set()
    skip = key_cols | set(partition.values())
    numeric = [
        c.name
        for c in columns
        if c.type in ("int", "long", "double") and c.name not in skip and not _ID_NAME.search(c.name)
    ]
    categorical = [
        c.name
        for c in columns
        if c.type == "string" and c.name not in skip and not _ID_NAME.search(c.name) and _repeats(c, len(sample.rows))
    ]
    todos += [
        Todo("features.numeric[0]", "keep the numeric columns known before the outcome (never the outcome itself)"),
        Todo("features.categorical[0]", "keep the categorical columns known before the outcome"),
        Todo("label.expression", "a Spark SQL expression over the columns: 1 for the positive class, 0 otherwise"),
    ]
    return Draft(
        name=name,
        sample=sample,
        columns=columns,
        null_values=null_values,
        keys=keys[0] if keys else [],
        key_candidates=keys,
        partition=partition,
        first_day=min(days) if days else None,
        last_day=max(days) if days else None,
        event_time=_event_time(columns, partition),
        label_name=label_name,
        outcomes=[c.name for c in columns if c.type == "boolean"],
        numeric=numeric,
        categorical=categorical,
        todos=todos,
    )


# --- writing the draft -------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if _YAML_PLAIN.fullmatch(text) and text.lower() not in _YAML_RESERVED and not isinstance(value, dt.date):
        return text
    return json.dumps(text)


def _flow(value: Any) -> str:
    """A value as YAML flow text (plain where unambiguous, JSON-quoted otherwise)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_scalar(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _block(key: str, value: Any) -> list[str]:
    return yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=None, width=110).splitlines()


def _todo(what: str, indent: int) -> str:
    return f"{' ' * indent}# {TODO_TAG}: {what}"


def _todo_for(draft: Draft, key: str) -> Todo | None:
    return next((t for t in draft.todos if t.key == key), None)


def _todo_lines(draft: Draft, key: str, indent: int) -> list[str]:
    todo = _todo_for(draft, key)
    return [_todo(todo.what, indent)] if todo else []


def flights_defaults() -> PipelineConfig:
    """The worked example's settings (ingest, validation, model, gate, drift, ...) a draft starts from."""
    try:
        return load_config(DEFAULT_CONFIG, environ={})
    except ConfigError as err:
        raise OnboardingError(f"the flights config a draft takes its defaults from does not load: {err}") from err


def _format_fields(fmt: FileFormat) -> dict[str, str]:
    if fmt.kind != "csv":
        return {"kind": fmt.kind} | ({"compression": fmt.compression} if fmt.compression != "none" else {})
    return {
        "kind": fmt.kind,
        "delimiter": fmt.delimiter,
        "quote": fmt.quote,
        "encoding": fmt.encoding,
        "compression": fmt.compression,
    }


def _calendar_lines(draft: Draft) -> list[str]:
    start = draft.first_day.isoformat() if draft.first_day else "TODO: the first day to ingest (YYYY-MM-DD)"
    return [
        "# When the platform runs: ingest refuses days before start (and after end, when set).",
        "calendar:",
        *(["  # The sample's first day."] if draft.first_day else _todo_lines(draft, "calendar.start", 2)),
        f"  start: {_flow(start)}",
        '  schedule: "@daily"',
        "  catchup: false",
        "  # The zone of the schedule (when a day's run starts); partition days come from the source.",
        "  timezone: UTC",
        "",
    ]


def _column_lines(draft: Draft) -> list[str]:
    lines = []
    for col in draft.columns:
        note = []
        if col.renamed:
            note.append(f"renamed: {col.renamed}")
        if col.nulls == len(draft.sample.rows):
            note.append("always empty in the sample: check its type")
        comment = f"  # {'; '.join(note)}" if note else ""
        lines.append(f"      - {_flow(col.spec())}{comment}")
    return lines


def _keys_lines(draft: Draft) -> list[str]:
    if not draft.keys:
        return [
            *_todo_lines(draft, "dataset.entity.keys[0]", 4),
            f"    keys: {_flow(['TODO: the columns a row is unique on'])}",
        ]
    others = draft.key_candidates[1:]
    hint = f"; other candidates: {', '.join(_flow(k) for k in others)}" if others else ""
    return [f"    # Unique and never null in the sample{hint}.", f"    keys: {_flow(draft.keys)}"]


def _source_lines(draft: Draft) -> list[str]:
    sample = draft.sample
    lines = [
        "dataset:",
        f"  name: {_flow(draft.name)}",
        "  # The entity table: one file per day in its landing inbox.",
        "  entity:",
        f"    name: {_flow(draft.name)}",
    ]
    lines += [
        f"    # How the files are written (as the sample {sample.path.name} is); daily files are named",
        f"    # {draft.name}_<YYYY-MM-DD>.{sample.format.extension} and land in inbox (a folder or an s3:// prefix;",
        f"    # by default the lake's landing/{draft.name}/).",
        f"    format: {_flow(_format_fields(sample.format))}",
        "    # Columns of the file with their types (inferred from the sample); ingest never infers.",
        "    columns:",
        *_column_lines(draft),
    ]
    lines += _keys_lines(draft)
    lines += [
        "    # Where a row's partition (its local calendar date) comes from: {column: <date column>},",
        "    # {timestamp: <column>, timezone: <IANA zone>} or {year: <column>, month: <column>, day: <column>}.",
        *_todo_lines(draft, "dataset.entity.partition_date.timezone", 4),
        *_todo_lines(draft, "dataset.entity.partition_date.column", 4),
        f"    partition_date: {_flow(draft.partition)}",
        "    # When the event is known to happen (UTC), a Spark SQL expression: used for point-in-time joins.",
        f"    event_time: {_flow(draft.event_time)}",
        "    # Tokens that mean a missing value (those found in the sample).",
        f"    null_values: {_flow(draft.null_values)}",
        "    # Row rules (name: SQL condition marking a bad row, quarantined with the name as reason).",
        "    row_rules: {}",
        "",
    ]
    return lines


def _feature_lines(draft: Draft) -> list[str]:
    numeric = ["TODO: keep the numeric features known before the outcome, then delete this entry", *draft.numeric]
    categorical = ["TODO: keep the categorical features known before the outcome, then delete this entry"]
    categorical += draft.categorical
    passthrough = list(dict.fromkeys([*draft.keys, *draft.outcomes]))
    return [
        "# How the feature table is built from bronze: derived expressions, rolling aggregates,",
        "# schedule counts, as-of joins and lookups as in include/config/flights.yaml.",
        "features:",
        "  derived: {}",
        *_todo_lines(draft, "features.numeric[0]", 2),
        f"  numeric: {_flow(numeric)}",
        *_todo_lines(draft, "features.categorical[0]", 2),
        f"  categorical: {_flow(categorical)}",
        "  # Kept beside the features for slicing, joining and audits (never used as features).",
        f"  passthrough: {_flow(passthrough)}",
        "",
    ]


def _label_lines(draft: Draft) -> list[str]:
    hint = ""
    if draft.outcomes:
        first = draft.outcomes[0]
        hint = (
            f"; boolean column(s) {', '.join(draft.outcomes)} look like outcomes: CASE WHEN {first} THEN 1 ELSE 0 END"
        )
    todo = _todo_for(draft, "label.expression")
    what = todo.what if todo else "the label"
    return [
        "label:",
        f"  name: {_flow(draft.label_name)}",
        _todo(what + hint, 2),
        f"  expression: {_flow('TODO: a SQL expression giving 1 for the positive class and 0 otherwise')}",
        "",
    ]


def _default_lines(draft: Draft, defaults: PipelineConfig) -> list[str]:
    flights = defaults.model_dump(mode="json")
    validation = {
        "not_null": [draft.label_name],
        "ranges": {draft.label_name: [0, 1]},
        "min_join_coverage": {},
        "min_rows": 1,
        "row_count": flights["validation"]["row_count"],
        "bronze": {draft.name: {"null_budgets": {}, "min_rows": 1}},
    }
    start = draft.first_day.isoformat() if draft.first_day else "TODO: the first champion's first day (YYYY-MM-DD)"
    end = draft.last_day.isoformat() if draft.last_day else "TODO: the first champion's last day (YYYY-MM-DD)"
    model = {"name": f"flightdeck-{draft.name.replace('_', '-')}", "train_start": start, "train_end": end}
    model |= {k: v for k, v in flights["model"].items() if k not in model}
    gate = flights["gate"] | {"slices": []}
    drift = flights["drift"] | {"exclude": []}
    lines = [
        "lake:",
        f"  root: {_flow(f'.flightdeck/lake-{draft.name}')}",
        "",
        "# The sections below hold the flights defaults; include/config/flights.yaml explains every key.",
        *_block("ingest", flights["ingest"]),
        "",
        "# Raise min_rows to the fewest rows a normal day has; add ranges and null budgets as you learn the data.",
        *_block("validation", validation),
        "",
        "# train_start..train_end: the first champion's window (the sample's days; set it to the history you load).",
        *_todo_lines(draft, "model.train_start", 0),
        *_block("model", model),
        "",
        "# slices: holdout columns (e.g. categorical features) whose values the gate also judges one by one.",
        *_block("gate", gate),
        "",
        "# exclude: features whose drift is reported but never counts (e.g. calendar features).",
        *_block("drift", drift),
        "",
    ]
    for section in ("scoring", "alerts", "spark"):
        lines += [*_block(section, flights[section]), ""]
    return lines


def render_config(draft: Draft, defaults: PipelineConfig) -> str:
    """The draft as commented YAML: every open choice under a TODO comment with a TODO value."""
    sample = draft.sample
    lines = [
        f"# flightdeck pipeline configuration: {draft.name}, drafted by `flightdeck init` from {sample.path.name}",
        f"# ({describe_format(sample.format)}; {len(sample.rows)} rows read). Fill in every {TODO_TAG} below, then run",
        f"#   flightdeck check --config <this file> --sample {sample.path.name}",
        "# until it reports no problem. include/config/flights.yaml is the worked example of every section.",
        "",
        *_calendar_lines(draft),
        *_source_lines(draft),
        *_feature_lines(draft),
        *_label_lines(draft),
        *_default_lines(draft, defaults),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_config(text: str, out: Path, *, force: bool = False) -> Path:
    """Write a drafted config; an existing file is replaced only with ``force``."""
    if out.exists() and not force:
        raise OnboardingError(f"{out} already exists; pass --force to overwrite it, or --out another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def summarize_draft(draft: Draft, out: Path) -> str:
    """What init found and wrote, and the TODOs left, for the terminal."""
    sample = draft.sample
    more = " (the first rows only)" if sample.truncated else ""
    lines = [
        f"flightdeck init: read {sample.path} ({describe_format(sample.format)}): {len(sample.rows)} rows{more}, "
        f"{len(sample.header)} columns",
        "  columns:",
    ]
    for col in draft.columns:
        flags = " required" if col.required else f" {col.nulls} null"
        renamed = f" (file header {col.header!r}: {col.renamed})" if col.renamed else ""
        lines.append(f"    {col.name:<24} {col.type:<9}{flags}, {col.distinct} distinct{renamed}")
    days = f"{draft.first_day}..{draft.last_day}" if draft.first_day else "none derivable"
    lines += [
        f"  null tokens    : {', '.join(repr(t) for t in draft.null_values) or 'none'}",
        f"  keys           : {draft.keys or 'none unique in the sample'}"
        + (f" (candidates: {draft.key_candidates})" if len(draft.key_candidates) > 1 else ""),
        f"  partition date : {draft.partition}",
        f"  days in sample : {days}",
        f"  features       : numeric {draft.numeric}, categorical {draft.categorical}",
        f"wrote {out}",
        f"{len(draft.todos)} choice(s) left to you, marked {TODO_TAG} in the file:",
        *[f"  {t.key}: {t.what}" for t in draft.todos],
        f"then: flightdeck check --config {out} --sample {sample.path}",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class InitResult:
    path: Path
    draft: Draft
    summary: str


def init_config(
    sample: str | Path, *, name: str | None = None, out: str | Path | None = None, force: bool = False
) -> InitResult:
    """``flightdeck init``: read the sample, draft the config, write it (never over a file without ``force``)."""
    chosen = name or dataset_name(sample)
    target = Path(out) if out else Path.cwd() / f"{chosen}.yaml"
    if target.exists() and not force:
        raise OnboardingError(f"{target} already exists; pass --force to overwrite it, or --out another path")
    draft = draft_config(read_sample(sample), chosen)
    written = write_config(render_config(draft, flights_defaults()), target, force=force)
    return InitResult(written, draft, summarize_draft(draft, written))


# --- checking a config against a sample ----------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A problem (or, not blocking, a note) with the config key to change and what to write there."""

    key: str
    problem: str
    fix: str = ""
    blocking: bool = True


@dataclass(frozen=True)
class CheckReport:
    config: Path
    sample: Path
    source: str | None
    rows: int
    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")
    else:
        yield key, node


def todo_findings(raw: Mapping[str, Any]) -> list[Finding]:
    """Every value still reading ``TODO...``, with its key."""
    return [
        Finding(
            key,
            f"left as a TODO ({value.strip().removeprefix(TODO_PREFIX).lstrip(':').strip()})",
            f"write your choice instead (the {TODO_TAG} comment above it says what to decide)",
        )
        for key, value in _walk(raw)
        if _is_todo(value)
    ]


def _read_raw(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ConfigError(f"config file {file} not found; pass --config with the file `flightdeck init` wrote")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {file} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level")
    return raw


def _loc(loc: Sequence[int | str]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _validate(file: Path, raw: Mapping[str, Any], todo_keys: set[str]) -> tuple[PipelineConfig | None, list[Finding]]:
    """The loaded config, or the validation errors (those a TODO value causes are reported once, as TODOs)."""
    try:
        return load_config(file), []
    except ConfigError as err:
        failure = err
    try:
        validated = PipelineConfig.model_validate(raw)
    except ValidationError as verr:
        found = []
        for e in verr.errors(include_url=False):
            key, msg = _loc(e["loc"]), str(e["msg"]).removeprefix("Value error, ")
            if key in todo_keys or TODO_PREFIX in msg:
                continue
            found.append(Finding(key, msg, "see include/config/flights.yaml for this key's form"))
        return None, found
    if todo_keys and TODO_MARK in str(failure):
        return validated, []  # load_config refuses TODO values; they are reported once, as TODOs
    return None, [Finding("config", str(failure), "fix the environment override it names")]


def _raw_sources(raw: Mapping[str, Any]) -> list[tuple[str, Any]]:
    dataset = raw.get("dataset")
    if not isinstance(dataset, Mapping):
        return []
    series = dataset.get("timeseries")
    found: list[tuple[str, Any]] = [("dataset.entity", dataset.get("entity"))]
    return found + [(f"dataset.timeseries[{i}]", s) for i, s in enumerate(series if isinstance(series, list) else [])]


def _without_todos(node: Any) -> Any:
    """A raw config node with its TODO values left out (a TODO time zone read as UTC)."""
    if isinstance(node, Mapping):
        kept = {k: _without_todos(v) for k, v in node.items() if not _is_todo(v) or k == "timezone"}
        return {k: "UTC" if k == "timezone" and _is_todo(v) else v for k, v in kept.items()}
    if isinstance(node, list):
        return [_without_todos(v) for v in node if not _is_todo(v)]
    return node


def _is_todo(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith(TODO_PREFIX)


def _source_names(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(s.get("name"))) for k, s in _raw_sources(raw) if isinstance(s, Mapping)]


def _pick_source(
    cfg: PipelineConfig | None, raw: Mapping[str, Any], name: str | None
) -> tuple[TimeSeriesSource | None, str, list[Finding]]:
    """(the source, its config key, findings): from the loaded config, else validated alone from the raw YAML.

    A source with TODO values left is checked without them (a TODO zone as UTC), so the sample's
    problems show while the TODOs are still open.
    """
    specs: list[tuple[str, Any]]
    if cfg is not None:
        specs = [("dataset.entity", cfg.dataset.entity)]
        specs += [(f"dataset.timeseries[{i}]", s) for i, s in enumerate(cfg.dataset.timeseries)]
    else:
        specs = _raw_sources(raw)
    names = [s.name if isinstance(s, TimeSeriesSource) else (s or {}).get("name") for _, s in specs]
    wanted = name or (names[0] if names else None)
    if wanted not in names:
        raise OnboardingError(f"--source {wanted!r} is not a source of the config; its sources: {names}")
    key, spec = specs[names.index(wanted)]
    if isinstance(spec, TimeSeriesSource):
        return spec, key, []
    try:
        source = TimeSeriesSource.model_validate(_without_todos(spec))
    except ValidationError:
        note = Finding(key, "the sample was not checked: fix this source's config first", blocking=False)
        return None, key, [note]
    if _without_todos(spec) != spec:
        note = Finding(key, "the sample was checked with this source's TODO values left out", blocking=False)
        return source, key, [note]
    return source, key, []


def _read_for_source(path: Path, source: TimeSeriesSource, base: str) -> tuple[Sample | None, list[Finding]]:
    """The sample as ingest would read it under the source's format, and any format mismatch."""
    fmt = source.format
    try:
        actual = read_sample(path, encoding=fmt.encoding)
    except SampleEncodingError as err:
        return None, [Finding(f"{base}.format.encoding", str(err), "write the file's encoding, e.g. encoding: latin-1")]
    found: list[Finding] = []
    for attr in ("kind", "compression"):
        have, want = getattr(actual.format, attr), getattr(fmt, attr)
        if have != want:
            found.append(
                Finding(
                    f"{base}.format.{attr}", f"the config says {want}, the sample is {have}", f"write {attr}: {have}"
                )
            )
    if actual.format.kind != "csv" or fmt.kind != "csv":
        return actual, found
    declared = read_sample(path, delimiter=fmt.delimiter, quote=fmt.quote, encoding=fmt.encoding)
    wanted = set(source.headers.values())
    if wanted <= set(declared.header) or not wanted <= set(actual.header):
        return declared, found
    for attr in ("delimiter", "quote"):
        have, want = getattr(actual.format, attr), getattr(fmt, attr)
        if have != want:
            found.append(
                Finding(
                    f"{base}.format.{attr}",
                    f"the config says {want!r}, the sample's header splits on {have!r}",
                    f"write {attr}: {json.dumps(have)}",
                )
            )
    return actual, found


def _header_findings(sample: Sample, source: TimeSeriesSource, base: str, extra_policy: str) -> list[Finding]:
    found = []
    have = set(sample.header)
    extra = [h for h in sample.header if h not in set(source.headers.values())]
    for i, col in enumerate(source.columns):
        if col.header in have:
            continue
        # The file's own name for it is most likely a header no configured column claims.
        close = difflib.get_close_matches(col.name, extra, n=1) or difflib.get_close_matches(col.header, extra, n=1)
        fix = f"if the file calls it {close[0]!r}, write source: {close[0]}" if close else "remove the column"
        found.append(
            Finding(
                f"{base}.columns[{i}]",
                f"column {col.name!r} (file header {col.header!r}) is not in the sample's header {sample.header}",
                fix + ", or fix the upstream export",
            )
        )
    if extra:
        found.append(
            Finding(
                f"{base}.columns",
                f"the sample has columns {extra} the config does not declare "
                f"(ingest.extra_columns is {extra_policy!r}: "
                + ("the file would be rejected)" if extra_policy == "reject" else "they are read and ignored)"),
                "declare them if you need them: " + ", ".join(f"{{name: {h}, type: ...}}" for h in extra),
                blocking=extra_policy == "reject",
            )
        )
    return found


def _type_fix(name: str, declared: ColumnType, fits: ColumnType, bad: int, present: int) -> str:
    """A type that fits the values, unless a few bad values would turn a typed column into a string."""
    if fits != declared and (fits != "string" or 2 * bad > present):
        return f"write type: {fits}"
    rest = f", or write type: {fits} to keep them" if fits != declared else ""
    return f"fix those values upstream (ingest quarantines their rows as unparseable:{name}){rest}"


def _column_findings(sample: Sample, source: TimeSeriesSource, base: str) -> tuple[list[Finding], set[str]]:
    """Type, required and null-token findings per configured column; also the undeclared null tokens seen."""
    found: list[Finding] = []
    declared = set(source.null_values)
    undeclared: set[str] = set()
    for i, col in enumerate(source.columns):
        if col.header not in sample.header:
            continue
        key = f"{base}.columns[{i}]"
        values = sample.column(col.header)
        tokens = {v for v in values if v is not None and v not in declared and v.strip() in NULL_TOKENS}
        if col.type != "string":
            undeclared |= tokens
        nulls = [j for j, v in enumerate(values) if _is_null(v, declared) or (col.type != "string" and v in tokens)]
        bad = [
            j for j, v in enumerate(values) if not _is_null(v, declared | tokens) and not parses_as(str(v), col.type)
        ]
        if bad:
            good = [str(v) for v in values if not _is_null(v, declared | tokens)]
            fits = infer_type(good)
            first = bad[0]
            fix = _type_fix(col.name, col.type, fits, len(bad), len(good))
            found.append(
                Finding(
                    f"{key}.type",
                    f"{len(bad)} of {len(values)} values of {col.name!r} do not parse as {col.type} "
                    f"(first: {values[first]!r} at {sample.where(first)})",
                    fix,
                )
            )
        if col.required and nulls:
            found.append(
                Finding(
                    f"{key}.required",
                    f"{col.name!r} is required but missing in {len(nulls)} rows (first at {sample.where(nulls[0])})",
                    "write required: false, or fix the upstream export",
                )
            )
    return found, undeclared


def _partition_findings(
    sample: Sample, source: TimeSeriesSource, base: str, cfg: PipelineConfig | None
) -> list[Finding]:
    spec = source.partition_date
    headers = [source.headers[c] for c in spec.columns]
    if any(h not in sample.header for h in headers):
        return []  # reported as missing columns
    idx = [sample.header.index(h) for h in headers]
    declared = set(source.null_values)
    bad: list[int] = []
    days: list[dt.date] = []
    for j, row in enumerate(sample.rows):
        values = [row[i] for i in idx]
        try:
            if any(_is_null(v, declared) for v in values):
                raise ValueError("null")
            days.append(row_date([str(v) for v in values], spec))
        except ValueError:
            bad.append(j)
    found = []
    if bad:
        first = [sample.rows[bad[0]][i] for i in idx]
        found.append(
            Finding(
                f"{base}.partition_date",
                f"{len(bad)} rows have no partition date from {headers} (first: {first} at {sample.where(bad[0])}); "
                "ingest would quarantine them",
                "point partition_date at the column(s) that always hold the row's date, or fix the upstream",
            )
        )
    if cfg is not None and days and not (cfg.calendar.contains(min(days)) and cfg.calendar.contains(max(days))):
        found.append(
            Finding(
                "calendar.start",
                f"the sample's days {min(days)}..{max(days)} reach outside calendar {cfg.calendar.window}: "
                "ingest refuses those days",
                f'write start: "{min(days)}" to ingest them',
                blocking=False,
            )
        )
    return found


def _key_findings(sample: Sample, source: TimeSeriesSource, base: str) -> list[Finding]:
    headers = [source.headers[k] for k in source.keys]
    if not headers or any(h not in sample.header for h in headers):
        return []
    idx = [sample.header.index(h) for h in headers]
    seen: dict[tuple[str | None, ...], int] = {}
    repeats: list[tuple[int, int]] = []
    for j, row in enumerate(sample.rows):
        key = tuple(row[i] for i in idx)
        if key in seen:
            repeats.append((j, seen[key]))
        else:
            seen[key] = j
    if not repeats:
        return []
    j, earlier = repeats[0]
    profiled = []
    for c in source.columns:
        if c.header in sample.header:
            nulls, distinct = _profile(sample, c.header, source.null_values)
            profiled.append(ColumnDraft(c.header, c.name, c.type, nulls == 0, nulls, distinct))
    candidates = candidate_keys(sample, profiled, limit=3)
    hint = f"; unique in the sample: {candidates}" if candidates else ""
    return [
        Finding(
            f"{base}.keys",
            f"{len(repeats)} rows repeat the keys {source.keys} of an earlier row (first: {sample.where(j)} repeats "
            f"{sample.where(earlier)}); ingest would quarantine them as duplicate_key",
            f"add the column(s) that tell them apart to keys{hint}",
        )
    ]


def check_sample(sample: Sample, source: TimeSeriesSource, base: str, cfg: PipelineConfig | None) -> list[Finding]:
    """Every problem of ``sample`` as a file of ``source`` (``base``: the source's config key)."""
    policy = cfg.ingest.extra_columns if cfg is not None else "ignore"
    found = _header_findings(sample, source, base, policy)
    column_found, undeclared = _column_findings(sample, source, base)
    found += column_found
    if undeclared:
        tokens = [*source.null_values, *sorted(undeclared)]
        found.append(
            Finding(
                f"{base}.null_values",
                f"the sample writes {sorted(undeclared)} for missing values, which null_values "
                f"{source.null_values} does not declare (ingest would quarantine them as unparseable)",
                f"write null_values: {_flow(tokens)}",
            )
        )
    found += _partition_findings(sample, source, base, cfg)
    found += _key_findings(sample, source, base)
    if sample.overlong:
        found.append(
            Finding(
                f"{base}.format",
                f"{len(sample.overlong)} lines have more fields than the header (first: line {sample.overlong[0]}): "
                "a delimiter inside an unquoted value; ingest quarantines them as extra_fields",
                "quote such values upstream, or check the delimiter and quote",
                blocking=False,
            )
        )
    return found


def check_config(config: str | Path, sample: str | Path, source: str | None = None) -> CheckReport:
    """``flightdeck check``: the config's TODOs and validation errors, then the sample against its source.

    Raises:
        ConfigError: the config file is missing or is not YAML (nothing else can be checked).
        OnboardingError: the sample cannot be read, or ``source`` is not a source of the config.
    """
    file, sample_path = Path(config), Path(sample)
    raw = _read_raw(file)
    findings = todo_findings(raw)
    cfg, errors = _validate(file, raw, {f.key for f in findings})
    findings += errors
    chosen, base, picked = _pick_source(cfg, raw, source)
    findings += picked
    rows = 0
    if chosen is not None:
        read, format_found = _read_for_source(sample_path, chosen, base)
        findings += format_found
        if read is not None:
            rows = len(read.rows)
            findings += check_sample(read, chosen, base, cfg)
    named = chosen.name if chosen else source or next((n for k, n in _source_names(raw) if k == base), base)
    return CheckReport(file, sample_path, named, rows, findings)


def render_check(report: CheckReport) -> str:
    """The check's findings for the terminal: each with its key and what to write."""
    lines = [
        f"flightdeck check: {report.config} against {report.sample} (source {report.source!r}, {report.rows} rows read)"
    ]
    for finding in report.findings:
        label = "problem" if finding.blocking else "note   "
        lines.append(f"  {label} {finding.key}: {finding.problem}")
        if finding.fix:
            lines.append(f"          -> {finding.fix}")
    count = len(report.problems)
    lines.append("OK: no problems." if report.ok else f"{count} problem(s): fix them and run the check again.")
    return "\n".join(lines)
