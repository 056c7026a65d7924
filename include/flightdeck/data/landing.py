"""Landing: cut the packaged source tables into daily raw CSV files, as an upstream export would deliver them.

For each date, the entity and every time series get ``landing/<source>/<source>_<date>.csv`` (the
simulated upstream writes comma-separated CSV only; real upstreams deliver any declared format)
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
import io
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
    parse_partitions,
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


def _project(daily: _DailyLines, headers: Sequence[str]) -> _DailyLines:
    """The lines cut down to ``headers`` (in that order) when the package file has other columns too."""
    names = _split_fields(daily.header)
    if list(headers) == names:
        return daily
    try:
        idx = [names.index(h) for h in headers]
    except ValueError as err:
        raise LandingError(f"package file lacks columns {sorted(set(headers) - set(names))}") from err

    def cut(line: str) -> str:
        fields = next(csv.reader([line]))
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([fields[i] for i in idx])
        return out.getvalue()

    return _DailyLines(
        header=",".join(headers), by_date={d: [cut(line) for line in lines] for d, lines in daily.by_date.items()}
    )


def _simulated_labels(cfg: PipelineConfig, labels: TimeSeriesSource, delay: int) -> _DailyLines:
    """The demo's outcomes: each entity row's label columns, delivered ``delay`` days after its event.

    The one label column the package lacks (the arrival time) is filled with 06:00 of the arrival day.
    """
    entity = _source_lines(cfg, cfg.dataset.entity)
    names = _split_fields(entity.header)
    headers = list(labels.headers.values())
    missing = [h for h in headers if h not in names]
    if len(missing) != 1:
        raise LandingError(
            f"the simulated upstream of {labels.name!r} needs every label column in the entity's package file "
            f"but one (its arrival time); missing {missing}"
        )
    source = _project(entity, [h for h in headers if h in names])
    at = headers.index(missing[0])
    by_date: dict[dt.date, list[str]] = {}
    for event_day, lines in source.by_date.items():
        arrival = event_day + dt.timedelta(days=delay)
        stamp = f"{arrival.isoformat()}T06:00:00"
        by_date[arrival] = [",".join([*line.split(",")[:at], stamp, *line.split(",")[at:]]) for line in lines]
    return _DailyLines(header=",".join(headers), by_date=by_date)


def _daily_source(cfg: PipelineConfig, source: TimeSeriesSource) -> _DailyLines | None:
    """What the simulated upstream delivers for a source (None: it delivers nothing)."""
    if cfg.dataset.labels is not None and source.name == cfg.dataset.labels.name:
        delay = cfg.demo.label_delay_days if cfg.demo else None
        return None if delay is None else _simulated_labels(cfg, source, delay)
    return _project(_source_lines(cfg, source), list(source.headers.values()))


def _land(
    cfg: PipelineConfig, lake: Lake, dates: list[dt.date], *, redeliver: bool = False
) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {d.isoformat(): {} for d in dates}
    for source in cfg.dataset.daily_sources:
        if source.format.extension != "csv" or source.format.delimiter != ",":
            raise LandingError(
                f"the simulated upstream delivers comma-separated CSV only; source {source.name!r} declares "
                f"{source.format.extension} (a real upstream delivers its own format)"
            )
        daily = _daily_source(cfg, source)
        if daily is None:
            continue
        for date in dates:
            lines = daily.by_date.get(date, [])
            counts[date.isoformat()][source.name] = len(lines)
            if not lines:
                # Nothing arrived upstream for that day: no file (ingest reports it).
                log.warning("no %s rows for %s in the source; no landing file written", source.name, date)
                continue
            target = inbox_file(lake, source, date)
            if json_exists(target) and not redeliver:
                # The upstream never overwrites what it delivered (a re-delivery is explicit).
                log.info("%s already delivered; left as it is", target)
                continue
            write_bytes(target, _render(daily.header, lines))
    return counts


def land_day(cfg: PipelineConfig, lake: Lake, date: dt.date | str) -> dict[str, int]:
    """Land one date of the entity and every time series; returns rows landed per source."""
    day = parse_date(date)
    counts = _land(cfg, lake, [day])[day.isoformat()]
    log.info("landed %s: %s", day, counts)
    return counts


def land_range(
    cfg: PipelineConfig, lake: Lake, first: dt.date | str, last: dt.date | str, *, redeliver: bool = False
) -> dict[str, dict[str, int]]:
    """Land every date from first to last (inclusive), reading each source once; {date: {source: rows}}.

    A file already in the inbox is left as it is unless ``redeliver`` (then it is replaced).
    """
    dates = date_range(parse_date(first), parse_date(last))
    counts = _land(cfg, lake, dates, redeliver=redeliver)
    log.info("landed %d dates %s..%s", len(dates), dates[0], dates[-1])
    return counts


def land_reference(cfg: PipelineConfig, lake: Lake) -> dict[str, int]:
    """Land every reference table whole (byte for byte); returns data rows per table."""
    base = source_dir(cfg.dataset.source_package)
    counts: dict[str, int] = {}
    for ref in cfg.dataset.reference:
        if ref.format.extension != "csv":
            raise LandingError(
                f"the simulated upstream delivers CSV only; reference {ref.name!r} declares {ref.format.kind}"
            )
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


def inbox_dir(lake: Lake, source: TimeSeriesSource) -> str:
    """Where the upstream drops a source's daily files: ``source.inbox``, else ``landing/<source>``."""
    return (source.inbox or lake.landing_inbox(source.name)).rstrip("/")


def inbox_file(lake: Lake, source: TimeSeriesSource, date: dt.date | str) -> str:
    """A source's file for one day in its inbox: ``<inbox>/<source>_<YYYY-MM-DD>.<extension>``."""
    return f"{inbox_dir(lake, source)}/{source.name}_{parse_date(date).isoformat()}.{source.format.extension}"


def ready_file(cfg: PipelineConfig, lake: Lake, date: dt.date | str) -> str:
    """The upstream's ready marker of a day (``arrival.ready_marker``), beside the entity file."""
    entity = cfg.dataset.entity
    return f"{inbox_dir(lake, entity)}/{entity.name}_{parse_date(date).isoformat()}.ready"


@dataclass(frozen=True)
class RefusedFile:
    """A file in an inbox that is not ingested, with the reason; it is left in place."""

    path: str
    reason: str


def scan_inbox(cfg: PipelineConfig, lake: Lake) -> tuple[list[LandedFile], list[RefusedFile]]:
    """The inbox files of the entity and time series, and the files refused (left in place).

    A file is refused when its name is not ``<source>_<YYYY-MM-DD>.<extension>`` or its day lies
    outside the configured calendar; ready markers are not data files and are skipped.
    """
    found: list[LandedFile] = []
    refused: list[RefusedFile] = []
    for source in cfg.dataset.daily_sources:
        ext = source.format.extension
        pattern = re.compile(rf"^{re.escape(source.name)}_(\d{{4}}-\d{{2}}-\d{{2}})\.{re.escape(ext)}$")
        for info in list_files(inbox_dir(lake, source)):
            if info.name.endswith(".ready"):
                continue
            match = pattern.match(info.name)
            day = _valid_day(match.group(1)) if match else None
            if match is None or day is None:
                refused.append(
                    RefusedFile(
                        info.path,
                        f"matches no source: the {source.name} inbox takes files named "
                        f"{source.name}_<YYYY-MM-DD>.{ext}",
                    )
                )
            elif not cfg.calendar.contains(day):
                refused.append(
                    RefusedFile(info.path, f"day {day} is outside the configured calendar {cfg.calendar.window}")
                )
            else:
                found.append(LandedFile(source.name, day, info))
    for r in refused:
        log.warning("refused %s: %s; left in place", r.path, r.reason)
    return sorted(found, key=lambda f: (f.date, f.source)), refused


def _valid_day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def landed_files(cfg: PipelineConfig, lake: Lake) -> list[LandedFile]:
    """Every well-named inbox file of the entity and time series for a day of the calendar.

    Other files are refused (reported in the log, left in place), see :func:`scan_inbox`.
    """
    return scan_inbox(cfg, lake)[0]


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


# --- arrival: when is a day complete, what came late, what depends on it -------------------------


def _in_calendar(cfg: PipelineConfig, day: dt.date) -> dt.date:
    if not cfg.calendar.contains(day):
        raise LandingError(f"day {day} is outside the configured calendar {cfg.calendar.window} (calendar.start/end)")
    return day


@dataclass(frozen=True)
class DayStatus:
    """Which of a day's files have arrived and whether the day can be ingested."""

    day: dt.date
    present: list[str]
    missing: list[str]
    ready: bool | None
    complete: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "present": self.present,
            "missing": self.missing,
            "ready": self.ready,
            "complete": self.complete,
            "why": self.why,
        }


def day_status(cfg: PipelineConfig, lake: Lake, date: dt.date | str, now: dt.datetime | None = None) -> DayStatus:
    """The completeness rule of ``arrival`` applied to one day's inbox files at ``now`` (UTC).

    Raises:
        LandingError: the day lies outside the configured calendar.
    """
    day = _in_calendar(cfg, parse_date(date))
    sources = [cfg.dataset.entity, *cfg.dataset.timeseries]
    present = [s.name for s in sources if json_exists(inbox_file(lake, s, day))]
    missing = [name for name in cfg.required_sources() if name not in present]
    ready = json_exists(ready_file(cfg, lake, day)) if cfg.arrival.ready_marker else None
    if not missing and ready is not False:
        return DayStatus(day, present, missing, ready, True, "every required source has arrived")
    cutoff = cfg.arrival.cutoff_hours
    now = now or dt.datetime.now(dt.UTC)
    day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    entity_there = cfg.dataset.entity.name in present
    if cutoff is not None and entity_there and now >= day_end + dt.timedelta(hours=cutoff):
        return DayStatus(day, present, missing, ready, True, f"cutoff of {cutoff:g} h after the day passed")
    waiting = [f"sources {missing}"] if missing else []
    waiting += ["the ready marker " + ready_file(cfg, lake, day)] if ready is False else []
    return DayStatus(day, present, missing, ready, False, "waiting for " + " and ".join(waiting))


def mark_day(cfg: PipelineConfig, lake: Lake, date: dt.date | str, run_key: str | None = None) -> list[dict[str, Any]]:
    """Archive and mark every inbox file of one day (after its ingest committed)."""
    day = parse_date(date)
    return [archive_and_mark(lake, f, run_key) for f in landed_files(cfg, lake) if f.date == day]


def ingested_days(cfg: PipelineConfig, lake: Lake) -> set[dt.date]:
    """Days whose entity bronze partition is committed (the day has had its ingest)."""
    return set(lake.committed_partitions("bronze", cfg.dataset.entity.name))


def redelivered_days(cfg: PipelineConfig, lake: Lake) -> list[dt.date]:
    """Days already ingested that have a new file since: late sources and re-deliveries.

    A day counts as ingested once some file of it is marked (its run marks them after the
    commit), so a day between its commit and its marks is not mistaken for a re-delivery.
    """
    files = landed_files(cfg, lake)
    marked = {f.date for f in files if json_exists(_marker(lake, f))}
    return sorted({f.date for f in files if not is_ingested(lake, f)} & marked)


def dependent_days(cfg: PipelineConfig, lake: Lake, days: Sequence[dt.date | str]) -> list[dt.date]:
    """The days themselves and every later ingested day whose rolling windows read one of them."""
    reach = cfg.features.lookback_days
    done = ingested_days(cfg, lake)
    out: set[dt.date] = set()
    for date in days:
        day = parse_date(date)
        out.add(day)
        out.update(day + dt.timedelta(days=k) for k in range(1, reach + 1) if day + dt.timedelta(days=k) in done)
    return sorted(out)


def feed(first: str, last: str, *, redeliver: bool = False) -> dict[str, Any]:
    """The demo's simulated upstream: deliver the reference tables and every day from first to last.

    It cuts the days out of ``dataset.source_package`` into each source's inbox, the way an
    upstream export would arrive; a file already delivered is left as it is unless
    ``redeliver``. Never part of the ingest path.

    Raises:
        LandingError: the range is reversed, leaves the calendar, or the config has no package.
    """
    cfg, lake = configured()
    start, end = parse_date(first), parse_date(last)
    if end < start:
        raise LandingError(f"range ends ({end}) before it starts ({start})")
    for day in (start, end):
        _in_calendar(cfg, day)
    refs = land_reference(cfg, lake)
    rows = land_range(cfg, lake, start, end, redeliver=redeliver)
    return {"first": start.isoformat(), "last": end.isoformat(), "rows": rows, "references": refs}


def check_history(first: str, last: str) -> list[str]:
    """Every day from first to last is complete in the inbox; returns the days.

    Raises:
        LandingError: some days are incomplete (named, with what they wait for).
    """
    cfg, lake = configured()
    start, end = parse_date(first), parse_date(last)
    if end < start:
        raise LandingError(f"history range ends ({end}) before it starts ({start})")
    statuses = [day_status(cfg, lake, d) for d in date_range(start, end)]
    waiting = [f"{st.day}: {st.why}" for st in statuses if not st.complete]
    if waiting:
        shown = "; ".join(waiting[:5]) + (f"; and {len(waiting) - 5} more" if len(waiting) > 5 else "")
        raise LandingError(
            f"{len(waiting)} of {len(statuses)} history days are incomplete in the inbox ({shown}); deliver them "
            "first (the demo's upstream: flightdeck feed --days FIRST..LAST)"
        )
    return [st.day.isoformat() for st in statuses]


def poke_day(partition: str, now: dt.datetime | None = None) -> DayStatus:
    """The ingest DAG's sensor: the day's completeness under ``arrival`` (logged)."""
    cfg, lake = configured()
    status = day_status(cfg, lake, partition, now)
    log.info("%s: %s (present %s)", status.day, status.why, status.present)
    return status


def mark_partitions(spec: str, run_key: str | None = None) -> dict[str, Any]:
    """Archive and mark the inbox files of every day in ``spec`` (after their ingest committed)."""
    cfg, lake = configured()
    records = [r for day in parse_partitions(spec) for r in mark_day(cfg, lake, day, run_key)]
    log.info("marked %d inbox file(s) of %s as ingested", len(records), spec)
    return {"partitions": spec, "files": [r["path"] for r in records]}


def pending_redeliveries() -> list[str]:
    """Days already ingested that have late or re-delivered files waiting (oldest first)."""
    cfg, lake = configured()
    _, refused = scan_inbox(cfg, lake)
    days = [d.isoformat() for d in redelivered_days(cfg, lake)]
    log.info("late or re-delivered days: %s; refused files: %d", days or "none", len(refused))
    return days


def affected_partitions(days: Sequence[str]) -> list[str]:
    """The days and the later ingested days whose features read them (to rebuild downstream)."""
    cfg, lake = configured()
    return [d.isoformat() for d in dependent_days(cfg, lake, days)]
