"""Landing: cut the packaged source tables into daily raw CSV files, as an upstream export would deliver them.

For each date, the entity and every time series get ``landing/<source>/<source>_<date>.csv``
holding the source's header line and, unchanged, the raw text lines of the rows whose
local date (the configured ``partition_date``) is that date. Reference tables land whole in
``landing/reference/<name>.csv``. Every write is atomic and idempotent (same bytes on rerun).

Pure Python (csv/zipfile streaming); the decompressed sources are cached per process,
so landing a day after the first costs milliseconds and a backfill reads each source once.

The landing zone is also an inbox (local folder or S3, spoken to with boto3): files an
upstream delivers there are found by :func:`new_files`, ingested once by
:func:`ingest_new_files`, then archived (an immutable copy of exactly the bytes ingested
under ``landing/_archive/``) and marked (``landing/_ingested/<source>/<file>.json``). The
inbox copy stays where the ingest job reads it, so rerunning a day's ingest still works; a
file is new again only when its bytes change (a re-delivery).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import importlib.util
import logging
import re
import zipfile
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flightdeck.core.config import PartitionDate, PipelineConfig, TimeSeriesSource
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import (
    FileInfo,
    Lake,
    configured,
    copy_file,
    date_range,
    json_exists,
    list_files,
    parse_date,
    read_json,
    write_bytes,
    write_json,
)

log = logging.getLogger(__name__)


class LandingError(FlightdeckError):
    """The source data cannot be found or does not match the configuration."""


@dataclass(frozen=True)
class _DailyLines:
    """One source table: its header line and raw row lines grouped by local date."""

    header: str
    by_date: dict[dt.date, list[str]]


def source_dir(package: str | None) -> Path:
    """The folder of the package that ships the source files (the package is not imported)."""
    if not package:
        raise LandingError(
            "dataset.source_package is not set: only the demo's simulated upstream cuts days out of a package; "
            "a dataset of your own arrives as files in the landing inbox"
        )
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LandingError(f"source package {package!r} is not installed; install it or fix dataset.source_package")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_text(path: Path) -> str:
    """The text of a source file; a ``.zip`` must hold exactly one CSV."""
    if not path.is_file():
        raise LandingError(f"source file {path} not found; check source_file in the config")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise LandingError(f"source archive {path} must hold exactly one file, holds {members}")
            return archive.read(members[0]).decode("utf-8")
    return path.read_text(encoding="utf-8")


def _split_fields(line: str) -> list[str]:
    # Fast path: the packaged CSVs quote nothing; fall back to the csv module when they do.
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]))


def row_date(values: Sequence[str], spec: PartitionDate) -> dt.date:
    """The local date of one raw row: ``values`` are the raw fields of ``spec.columns``, in order.

    Raises:
        ValueError: the fields do not hold a date under the spec.
    """
    if spec.kind == "ymd":
        return dt.date(int(values[0]), int(values[1]), int(values[2]))
    if spec.kind == "date":
        return dt.date.fromisoformat(values[0].strip()[:10])
    stamp = dt.datetime.fromisoformat(values[0].strip().replace(" ", "T", 1))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(zoneinfo.ZoneInfo(str(spec.timezone))).date()


@functools.lru_cache(maxsize=8)
def _daily_lines(path: str, spec: PartitionDate, headers: tuple[str, ...]) -> _DailyLines:
    """Read a source once per process and group its raw lines by the local date of each row.

    ``headers`` are the file headers of ``spec.columns``, in order.
    """
    lines = _read_text(Path(path)).splitlines()
    if not lines:
        raise LandingError(f"source file {path} is empty")
    header = lines[0]
    names = _split_fields(header)
    try:
        idx = [names.index(h) for h in headers]
    except ValueError as err:
        raise LandingError(
            f"source file {path}: partition_date columns {list(headers)} not all in header {names}"
        ) from err
    by_date: dict[dt.date, list[str]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = _split_fields(line)
        try:
            day = row_date([fields[i] for i in idx], spec)
        except (IndexError, ValueError) as err:
            raise LandingError(f"source file {path} line {number}: no valid local date in {line!r}") from err
        by_date.setdefault(day, []).append(line)
    return _DailyLines(header=header, by_date=by_date)


def _source_lines(cfg: PipelineConfig, source: TimeSeriesSource) -> _DailyLines:
    if not source.source_file:
        raise LandingError(f"source {source.name!r} has no source_file in dataset.source_package to cut days from")
    path = source_dir(cfg.dataset.source_package) / source.source_file
    spec = source.partition_date
    return _daily_lines(str(path), spec, tuple(source.headers[c] for c in spec.columns))


def _render(header: str, lines: list[str]) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode("utf-8")


def _land(cfg: PipelineConfig, lake: Lake, dates: list[dt.date]) -> dict[str, dict[str, int]]:
    sources = [cfg.dataset.entity, *cfg.dataset.timeseries]
    counts: dict[str, dict[str, int]] = {d.isoformat(): {} for d in dates}
    for source in sources:
        daily = _source_lines(cfg, source)
        for date in dates:
            lines = daily.by_date.get(date, [])
            counts[date.isoformat()][source.name] = len(lines)
            if not lines:
                # Nothing arrived upstream for that day: no file (ingest reports it).
                log.warning("no %s rows for %s in the source; no landing file written", source.name, date)
                continue
            write_bytes(lake.landing_file(source.name, date), _render(daily.header, lines))
    return counts


def land_day(cfg: PipelineConfig, lake: Lake, date: dt.date | str) -> dict[str, int]:
    """Land one date of the entity and every time series; returns rows landed per source."""
    day = parse_date(date)
    counts = _land(cfg, lake, [day])[day.isoformat()]
    log.info("landed %s: %s", day, counts)
    return counts


def land_range(cfg: PipelineConfig, lake: Lake, first: dt.date | str, last: dt.date | str) -> dict[str, dict[str, int]]:
    """Land every date from first to last (inclusive), reading each source once; {date: {source: rows}}."""
    dates = date_range(parse_date(first), parse_date(last))
    counts = _land(cfg, lake, dates)
    log.info("landed %d dates %s..%s", len(dates), dates[0], dates[-1])
    return counts


def land_reference(cfg: PipelineConfig, lake: Lake) -> dict[str, int]:
    """Land every reference table whole (byte for byte); returns data rows per table."""
    base = source_dir(cfg.dataset.source_package)
    counts: dict[str, int] = {}
    for ref in cfg.dataset.reference:
        if not ref.source_file:
            raise LandingError(f"reference {ref.name!r} has no source_file in dataset.source_package to deliver")
        text = _read_text(base / ref.source_file)
        lines = text.splitlines()
        counts[ref.name] = sum(1 for line in lines[1:] if line)
        body = text.encode("utf-8")
        if not text.endswith("\n"):
            body += b"\n"
        write_bytes(lake.reference_file(ref.name), body)
    log.info("landed reference tables: %s", counts)
    return counts


# --- the landing inbox: find new files, ingest them once, archive and mark them -----------------


@dataclass(frozen=True)
class LandedFile:
    """A landing file of a configured source for one date."""

    source: str
    date: dt.date
    file: FileInfo


def _marker(lake: Lake, landed: LandedFile) -> str:
    return lake.landing_marker(landed.source, landed.file.name)


def _archive(lake: Lake, landed: LandedFile) -> str:
    return lake.landing_archive(landed.source, landed.file.fingerprint, landed.file.name)


def landed_files(cfg: PipelineConfig, lake: Lake) -> list[LandedFile]:
    """Every ``<source>_<YYYY-MM-DD>.csv`` in the landing folders of the entity and time series.

    Other files in those folders are ignored (reported in the log), as are reference tables.
    """
    found: list[LandedFile] = []
    for source in [cfg.dataset.entity, *cfg.dataset.timeseries]:
        pattern = re.compile(rf"^{re.escape(source.name)}_(\d{{4}}-\d{{2}}-\d{{2}})\.csv$")
        for info in list_files(lake.landing_inbox(source.name)):
            match = pattern.match(info.name)
            if match is None:
                log.warning(
                    "ignoring %s in the %s inbox: not named %s_<YYYY-MM-DD>.csv", info.path, source.name, source.name
                )
                continue
            found.append(LandedFile(source.name, parse_date(match.group(1)), info))
    return sorted(found, key=lambda f: (f.date, f.source))


def is_ingested(lake: Lake, landed: LandedFile) -> bool:
    """True when exactly these bytes (same fingerprint) were ingested before."""
    marker = _marker(lake, landed)
    return json_exists(marker) and read_json(marker).get("fingerprint") == landed.file.fingerprint


def new_files(cfg: PipelineConfig, lake: Lake) -> list[LandedFile]:
    """Landing files never ingested, or re-delivered with other bytes since, oldest date first."""
    return [f for f in landed_files(cfg, lake) if not is_ingested(lake, f)]


def archive_and_mark(lake: Lake, landed: LandedFile, run_key: str | None = None) -> dict[str, Any]:
    """Archive a copy of an ingested file and write its marker (the marker last: a crash in
    between leaves the file new, so it is ingested again, which replaces the same partition)."""
    archive = _archive(lake, landed)
    copy_file(landed.file.path, archive)
    record = {
        "source": landed.source,
        "date": landed.date.isoformat(),
        "path": landed.file.path,
        "size": landed.file.size,
        "fingerprint": landed.file.fingerprint,
        "archive": archive,
        "run_key": run_key,
    }
    write_json(_marker(lake, landed), record)
    return record


def ingest_new_files(
    cfg: PipelineConfig,
    lake: Lake,
    ingest: Callable[[Sequence[dt.date]], Any],
    run_key: str | None = None,
) -> dict[str, Any]:
    """Ingest every date that has new landing files, once, then archive and mark those files.

    ``ingest`` gets the sorted dates (e.g. it spark-submits ``jobs/ingest.py --partition``) and
    must raise on failure: then nothing is marked and the files stay new for the next attempt.
    With no new file it is not called at all, so a rerun does nothing.
    """
    pending = new_files(cfg, lake)
    dates = sorted({f.date for f in pending})
    if not dates:
        log.info("landing inbox of %s: no new files", lake.root)
        return {"dates": [], "files": [], "result": None}
    log.info("landing inbox: %d new file(s) for %d date(s) %s..%s", len(pending), len(dates), dates[0], dates[-1])
    result = ingest(dates)
    records = [archive_and_mark(lake, f, run_key) for f in pending]
    return {"dates": [d.isoformat() for d in dates], "files": records, "result": result}


def land_partition(partition: str) -> dict[str, Any]:
    """Land one day's raw files (and the reference tables when missing) into the landing zone."""
    cfg, lake = configured()
    date = parse_date(partition)
    if not cfg.calendar.contains(date):
        raise LandingError(
            f"partition {date} is outside the configured calendar {cfg.calendar.window} (calendar.start/end)"
        )
    refs = land_reference(cfg, lake)
    rows = land_day(cfg, lake, date)
    log.info("landed %s: %s (references %s)", date, rows, refs)
    return {"partition": date.isoformat(), "rows": rows, "references": refs}


def land_history(first: str, last: str) -> dict[str, Any]:
    """Land every day from first to last (inclusive) in one pass over the source."""
    cfg, lake = configured()
    start, end = parse_date(first), parse_date(last)
    if end < start:
        raise LandingError(f"history range ends ({end}) before it starts ({start})")
    refs = land_reference(cfg, lake)
    rows = land_range(cfg, lake, start, end)
    return {"first": start.isoformat(), "last": end.isoformat(), "rows": rows, "references": refs}
