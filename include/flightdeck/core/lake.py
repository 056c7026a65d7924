"""The lake layout: zones, tables, date partitions, and small JSON documents.

Every zone is partitioned by the logical date of the data::

    <root>/landing/<source>/<source>_<YYYY-MM-DD>.<ext>   raw files as they arrive (ext: format.extension)
    <root>/landing/reference/<name>.<ext>                  reference tables, whole
    <root>/bronze/<source>/date=<YYYY-MM-DD>/               typed rows (parquet)
    <root>/bronze/ref_<name>/                               typed reference tables (see reference_table)
    <root>/quarantine/<source>/date=<YYYY-MM-DD>/           bad rows, raw line + reason
    <root>/features/<entity>/date=<YYYY-MM-DD>/             model-ready rows
    <root>/predictions/<entity>/date=<YYYY-MM-DD>/          scores + model version
    <root>/monitoring/<table>/date=<YYYY-MM-DD>/            ledger (ingest_ledger), drift
    <root>/monitoring/validation/<YYYY-MM-DD>.json          feature validation report per date
    <root>/runs/<run key>/<name>.json                       hand-offs between tasks

A partition directory is visible only once committed (it holds ``_SUCCESS``); see
:mod:`flightdeck.data.sparkio` for the atomic writer. On an S3 lake a partition is instead the
version its pointer ``date=D/_COMMIT.json`` names (data under ``<table>/_v/<version>/``, see
:mod:`flightdeck.data.objectstore`); readers list its files with :meth:`Lake.partition_files`.
Pure Python, no Spark import.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flightdeck.core.config import PipelineConfig, load_config
from flightdeck.core.errors import FlightdeckError

ZONES = ("landing", "bronze", "quarantine", "features", "predictions", "monitoring", "runs")
COMMIT_MARKER = "_SUCCESS"
PARTITION_POINTER = "_COMMIT.json"  # S3 lakes: names the committed version of a partition
VERSIONS_DIR = "_v"  # S3 lakes: <table>/_v/<version>/date=D/ holds each version's data
LANDING_ARCHIVE_DIR = "_archive"  # landing/_archive/<source>/<etag>/<name>: ingested files, copied
LANDING_MARKER_DIR = "_ingested"  # landing/_ingested/<source>/<name>.json: which files were ingested
_SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")


def reference_table(name: str) -> str:
    """The bronze table name of a reference table (``bronze/ref_<name>``)."""
    return f"ref_{name}"


class LakeError(FlightdeckError):
    """A lake path or partition is invalid, or a document is missing."""


def parse_date(value: str | dt.date) -> dt.date:
    """Parse a YYYY-MM-DD partition key."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as err:
        raise LakeError(f"partition {value!r} is not a date in YYYY-MM-DD form") from err


def parse_partitions(spec: str) -> list[dt.date]:
    """Parse a partition spec: ``2024-07-01``, ``2024-07-01,2024-07-03`` or ``2024-01-01..2024-01-31``."""
    dates: list[dt.date] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if ".." in part:
            first, last = (parse_date(x) for x in part.split("..", 1))
            if last < first:
                raise LakeError(f"partition range {part!r} ends before it starts")
            dates.extend(first + dt.timedelta(days=i) for i in range((last - first).days + 1))
        else:
            dates.append(parse_date(part))
    if not dates:
        raise LakeError(f"no partition in {spec!r}")
    return sorted(set(dates))


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every date from first to last, inclusive."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _check_segment(segment: str) -> str:
    if not segment or not _SAFE.match(segment) or segment in {".", ".."}:
        raise LakeError(f"unsafe lake path segment {segment!r}: use letters, digits, '_', '-', '.', '='")
    return segment


@dataclass(frozen=True)
class Lake:
    """Paths inside one lake root (a local folder or an ``s3a://`` URI)."""

    root: str

    @property
    def is_remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def path(self, *segments: str) -> str:
        """Join checked segments under the root; nothing can escape it."""
        base = self.root.rstrip("/")
        return "/".join([base, *(_check_segment(s) for s in segments)])

    def table(self, zone: str, table: str) -> str:
        if zone not in ZONES:
            raise LakeError(f"unknown zone {zone!r}; zones are {ZONES}")
        return self.path(zone, table)

    def partition(self, zone: str, table: str, date: dt.date | str) -> str:
        return self.path(zone, table, f"date={parse_date(date).isoformat()}")

    def landing_file(self, source: str, date: dt.date | str, ext: str = "csv") -> str:
        """A source's landing file of a date; ``ext`` is its format's extension (``format.extension``:
        ``csv``, ``csv.gz``, ``jsonl``, ``jsonl.gz``, ``parquet``)."""
        return self.path("landing", source, f"{source}_{parse_date(date).isoformat()}.{ext}")

    def reference_file(self, name: str, ext: str = "csv") -> str:
        """A reference table's landing file; ``ext`` is its format's extension (``format.extension``)."""
        return self.path("landing", "reference", f"{name}.{ext}")

    def run_doc(self, run_key: str, name: str) -> str:
        safe_key = re.sub(r"[^A-Za-z0-9_.=-]", "_", run_key)
        return self.path("runs", safe_key, f"{name}.json")

    def runs(self) -> str:
        """Folder of the run hand-off documents (``runs/<run key>/<NAME>.json``)."""
        return self.path("runs")

    # --- documents of the monitoring zone: every path has one method here -------------------

    def retrain_requests(self) -> str:
        """Folder of the retrain requests (``monitoring/retrain_requests/D.json``)."""
        return self.path("monitoring", "retrain_requests")

    def retrain_request(self, date: dt.date | str) -> str:
        return self.path("monitoring", "retrain_requests", f"{parse_date(date).isoformat()}.json")

    def retrain_decisions(self) -> str:
        """Folder of the drift policy's decision per day (``monitoring/retrain_decisions/D.json``)."""
        return self.path("monitoring", "retrain_decisions")

    def retrain_decision(self, date: dt.date | str) -> str:
        return self.path("monitoring", "retrain_decisions", f"{parse_date(date).isoformat()}.json")

    def feature_statuses(self) -> str:
        """Folder of the feature partitions' upstream status (``monitoring/feature_status/D.json``)."""
        return self.path("monitoring", "feature_status")

    def feature_status(self, date: dt.date | str) -> str:
        """Whether ``features`` of D read every upstream day its windows need, or is degraded."""
        return self.path("monitoring", "feature_status", f"{parse_date(date).isoformat()}.json")

    def drift_reports(self) -> str:
        """Folder of the daily drift reports (``D.json`` and its ``D.html`` page)."""
        return self.path("monitoring", "drift_reports")

    def drift_report(self, date: dt.date | str, ext: str = "json") -> str:
        return self.path("monitoring", "drift_reports", f"{parse_date(date).isoformat()}.{ext}")

    def promotions(self) -> str:
        """Folder of the alias ledger (``monitoring/promotions/<model>-<alias>-<seq>.json``)."""
        return self.path("monitoring", "promotions")

    def promotion(self, name: str) -> str:
        return self.path("monitoring", "promotions", name)

    def alerts_file(self, name: str) -> str:
        return self.path("monitoring", "alerts", name)

    def validation_report(self, suite: str, date: dt.date | str) -> str:
        return self.path("monitoring", "validation", suite, f"{parse_date(date).isoformat()}.json")

    def data_docs(self, suite: str, date: dt.date | str) -> str:
        return self.path("monitoring", "data_docs", suite, f"{parse_date(date).isoformat()}.html")

    def landing_inbox(self, source: str) -> str:
        return self.path("landing", source)

    def landing_marker(self, source: str, file_name: str) -> str:
        """The marker of an ingested landing file (``landing/_ingested/<source>/<name>.json``)."""
        return self.path("landing", LANDING_MARKER_DIR, source, f"{file_name}.json")

    def landing_archive(self, source: str, fingerprint: str, file_name: str) -> str:
        """The archived copy of an ingested landing file (``landing/_archive/<source>/<etag>/<name>``)."""
        return self.path("landing", LANDING_ARCHIVE_DIR, source, fingerprint, file_name)

    def committed_partitions(self, zone: str, table: str) -> list[dt.date]:
        """Dates whose partition is committed (has the marker, or on S3 a pointer), oldest first."""
        return sorted(
            parse_date(name.split("=", 1)[1])
            for name in _list_dirs(self.table(zone, table))
            if name.startswith("date=") and _committed(f"{self.table(zone, table)}/{name}")
        )

    def is_committed(self, zone: str, table: str, date: dt.date | str) -> bool:
        return _committed(self.partition(zone, table, date))

    def partition_pointer(self, zone: str, table: str, date: dt.date | str) -> str:
        """S3 lakes: the object naming a partition's committed version and its files."""
        return f"{self.partition(zone, table, date)}/{PARTITION_POINTER}"

    def partition_version(self, zone: str, table: str, date: dt.date | str) -> str | None:
        """The committed version id of a partition (S3 lakes; ``None`` locally or when not committed)."""
        if not is_s3(self.root) or not _exists_key(self.partition_pointer(zone, table, date)):
            return None
        return str(read_json(self.partition_pointer(zone, table, date))["version"])

    def partition_files(self, zone: str, table: str, date: dt.date | str) -> list[str]:
        """The data files of a committed partition: on S3 exactly those its pointer names (a
        partition written before pointers: the files in its folder); locally the folder's files.

        Raises:
            LakeError: the partition is not committed.
        """
        folder = self.partition(zone, table, date)
        if not self.is_committed(zone, table, date):
            raise LakeError(f"partition {folder} is not committed")
        return committed_files(folder)


# --- small documents (JSON) on a local folder or S3 ---------------------------------------


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def _s3_split(path: str) -> tuple[str, str]:
    without = re.sub(r"^s3a?://", "", path)
    bucket, _, key = without.partition("/")
    return bucket, key


S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
_S3_URI = re.compile(r"^s3a?://")


def is_s3(path: str) -> bool:
    """True for ``s3://`` and ``s3a://`` paths (boto3 speaks both; Spark needs ``s3a://``)."""
    return bool(_S3_URI.match(path))


def _s3_client() -> Any:
    """A boto3 S3 client; the endpoint comes from ``AWS_ENDPOINT_URL`` (an S3-compatible store)
    and the credentials from the usual AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``)."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None)


def _exists(path: str) -> bool:
    if re.match(r"^s3a?://", path):
        bucket, key = _s3_split(path)
        resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return bool(resp.get("KeyCount"))
    return _local(path).exists()


def _exists_key(path: str) -> bool:
    """Whether exactly this object (S3) or file exists."""
    if is_s3(path):
        bucket, key = _s3_split(path)
        resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in resp.get("Contents", []))
    return _local(path).exists()


def _committed(folder: str) -> bool:
    """A partition folder is committed: it has a pointer (S3) or the commit marker."""
    if is_s3(folder):
        bucket, key = _s3_split(folder)
        resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{key}/_", MaxKeys=100)
        names = {obj["Key"][len(key) + 1 :] for obj in resp.get("Contents", [])}
        return bool(names & {PARTITION_POINTER, COMMIT_MARKER})
    return _exists(f"{folder}/{COMMIT_MARKER}")


def committed_files(folder: str) -> list[str]:
    """The data files of a committed partition folder (``<table>/date=D``): on S3 exactly those its
    pointer names, else (local, or an S3 partition written before pointers) the folder's files."""
    pointer = f"{folder}/{PARTITION_POINTER}"
    if is_s3(folder) and _exists_key(pointer):
        table_path = folder.rsplit("/", 1)[0]
        return [f"{table_path}/{f['path']}" for f in read_json(pointer)["files"]]
    return [f.path for f in list_files(folder)]


def commit_object(folder: str) -> str:
    """The object whose write committed a partition folder (its pointer on S3, else ``_SUCCESS``):
    its :func:`stored_at` is the commit time."""
    pointer = f"{folder}/{PARTITION_POINTER}"
    return pointer if is_s3(folder) and _exists_key(pointer) else f"{folder}/{COMMIT_MARKER}"


def commit_stamp(folder: str) -> str | None:
    """What identifies the commit of a partition (or table) folder; ``None`` when it is not committed.

    It changes whenever the folder is committed again: on S3 the ETag of its commit object (the
    pointer names a new version each time), locally the commit marker's modification time in
    nanoseconds (each write makes a new marker).
    """
    marker = commit_object(folder)
    if is_s3(marker):
        from botocore.exceptions import ClientError

        bucket, key = _s3_split(marker)
        try:
            return str(_s3_client().head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
    try:
        return str(_local(marker).stat().st_mtime_ns)
    except FileNotFoundError:
        return None


def _list_dirs(path: str) -> Iterator[str]:
    if re.match(r"^s3a?://", path):
        bucket, key = _s3_split(path)
        paginator = _s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/", Delimiter="/"):
            for prefix in page.get("CommonPrefixes", []):
                yield prefix["Prefix"].rstrip("/").rsplit("/", 1)[-1]
        return
    local = _local(path)
    if local.is_dir():
        yield from sorted(p.name for p in local.iterdir() if p.is_dir())


def write_json(path: str, doc: Any) -> None:
    """Write a JSON document atomically (temp file + rename locally; one PUT on S3)."""
    write_bytes(path, json.dumps(doc, indent=2, sort_keys=True, default=str).encode())


def write_bytes(path: str, body: bytes) -> None:
    """Write a file atomically (temp file + rename locally; one PUT on S3); used for landing files."""
    if re.match(r"^s3a?://", path):
        bucket, key = _s3_split(path)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=body)
        return
    target = _local(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(body)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a landed file is as readable as any other
    os.replace(tmp, target)


def read_bytes(path: str) -> bytes:
    """Read a whole file (local or S3).

    Raises:
        LakeError: the file does not exist.
    """
    if re.match(r"^s3a?://", path):
        bucket, key = _s3_split(path)
        try:
            obj = _s3_client().get_object(Bucket=bucket, Key=key)
        except Exception as err:  # botocore's NoSuchKey is generated at run time
            raise LakeError(f"document {path} not found: {err}") from err
        body: bytes = obj["Body"].read()
        return body
    target = _local(path)
    if not target.is_file():
        raise LakeError(f"document {path} not found")
    return target.read_bytes()


class _S3Reader(io.RawIOBase):
    """A seekable, read-only view of one S3 object: each read is a ranged GET (nothing held whole)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._client = _s3_client()
        self._bucket, self._key = _s3_split(path)
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=self._key)
        except Exception as err:  # botocore's ClientError is generated at run time
            raise LakeError(f"file {path} not found: {err}") from err
        self._size = int(head["ContentLength"])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._size, self._pos + len(view)) - 1
        if end < self._pos:
            return 0
        obj = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end}")
        data: bytes = obj["Body"].read()
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_binary(path: str) -> BinaryIO:
    """Open a file (local or S3) for streaming, seekable reads; the caller closes it.

    Landing files can be larger than memory: read what you need (a head, a Parquet footer)
    and let Spark read the rest. On S3 every read is a ranged GET, buffered by 1 MiB.

    Raises:
        LakeError: the file does not exist.
    """
    if is_s3(path):
        return io.BufferedReader(_S3Reader(path), buffer_size=1 << 20)
    target = _local(path)
    if not target.is_file():
        raise LakeError(f"file {path} not found")
    return target.open("rb")


def read_json(path: str) -> Any:
    """Read a JSON document written by :func:`write_json`."""
    return json.loads(read_bytes(path))


def json_exists(path: str) -> bool:
    return _exists(path)


def stored_at(path: str) -> dt.datetime:
    """When the store wrote ``path``, by the store's own clock (S3 ``LastModified``; a file's mtime).

    Raises:
        LakeError: the object does not exist.
    """
    if is_s3(path):
        bucket, key = _s3_split(path)
        try:
            modified: dt.datetime = _s3_client().head_object(Bucket=bucket, Key=key)["LastModified"]
        except Exception as err:  # botocore's ClientError (404) is generated at run time
            raise LakeError(f"document {path} not found: {err}") from err
        return modified.astimezone(dt.UTC)
    try:
        mtime = _local(path).stat().st_mtime
    except FileNotFoundError as err:
        raise LakeError(f"document {path} not found") from err
    return dt.datetime.fromtimestamp(mtime, dt.UTC)


def store_now(folder: str) -> dt.datetime:
    """The store's clock now: the stored time of a probe object written (then removed) in ``folder``.

    Compared with :func:`stored_at` of another object of the same store, it gives that object's
    age without reading any host's clock (hosts may disagree; the store is one clock).
    """
    import uuid

    probe = f"{folder.rstrip('/')}/.clock-probe-{uuid.uuid4().hex}"
    if is_s3(probe):
        bucket, key = _s3_split(probe)
        client = _s3_client()
        client.put_object(Bucket=bucket, Key=key, Body=b"")
        try:
            return stored_at(probe)
        finally:
            client.delete_object(Bucket=bucket, Key=key)
    target = _local(probe)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    try:
        return stored_at(probe)
    finally:
        target.unlink(missing_ok=True)


def list_docs(folder: str) -> list[str]:
    """Paths of the JSON documents directly inside a folder, sorted by name."""
    if re.match(r"^s3a?://", folder):
        bucket, key = _s3_split(folder)
        scheme = folder.split("://", 1)[0]
        paginator = _s3_client().get_paginator("list_objects_v2")
        names = [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/", Delimiter="/")
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".json")
        ]
        return sorted(f"{scheme}://{bucket}/{name}" for name in names)
    local = _local(folder)
    if not local.is_dir():
        return []
    return sorted(str(p) for p in local.iterdir() if p.suffix == ".json" and not p.name.startswith("."))


def list_folders(folder: str) -> list[str]:
    """Names of the folders directly inside a lake folder (local or S3), sorted; none when it is missing."""
    return sorted(_list_dirs(folder))


# --- whole files: listing, copying, deleting (landing inbox and archive) ------------------


@dataclass(frozen=True)
class FileInfo:
    """A file directly inside a lake folder; ``fingerprint`` changes whenever its bytes change."""

    path: str
    name: str
    size: int
    fingerprint: str


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # the same digest S3 reports as ETag for one-part uploads
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: str) -> list[FileInfo]:
    """The files directly inside a folder (not in subfolders), sorted by name; none when it is missing.

    Names starting with ``.`` or ``_`` (temp files, markers, archives) are left out. On S3 the
    fingerprint is the object's ETag, locally the MD5 of the bytes.
    """
    if is_s3(folder):
        bucket, key = _s3_split(folder)
        scheme = folder.split("://", 1)[0]
        prefix = key.rstrip("/") + "/"
        paginator = _s3_client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name and not name.startswith((".", "_")):
                    found.append(
                        FileInfo(f"{scheme}://{bucket}/{obj['Key']}", name, int(obj["Size"]), obj["ETag"].strip('"'))
                    )
        return sorted(found, key=lambda f: f.name)
    local = _local(folder)
    if not local.is_dir():
        return []
    return [
        FileInfo(str(p), p.name, p.stat().st_size, _md5(p))
        for p in sorted(local.iterdir())
        if p.is_file() and not p.name.startswith((".", "_"))
    ]


def copy_file(src: str, dst: str) -> None:
    """Copy one file within the lake (server-side ``CopyObject`` on S3; atomic rename locally)."""
    if is_s3(src) != is_s3(dst):
        raise LakeError(f"cannot copy {src} to {dst}: both must be in the same kind of store")
    if is_s3(src):
        src_bucket, src_key = _s3_split(src)
        dst_bucket, dst_key = _s3_split(dst)
        _s3_client().copy_object(Bucket=dst_bucket, Key=dst_key, CopySource={"Bucket": src_bucket, "Key": src_key})
        return
    # Streamed (a landing file may be larger than memory), then renamed into place.
    target = _local(dst)
    with open_binary(src) as source:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def configured() -> tuple[PipelineConfig, Lake]:
    """The pipeline config (``$FLIGHTDECK_CONFIG`` plus environment overrides) and its lake.

    What a task entry point starts from; library functions below it take both as arguments.
    """
    cfg = load_config()
    return cfg, Lake(cfg.lake.root)
