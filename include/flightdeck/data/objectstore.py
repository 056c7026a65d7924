"""Partition commits on an object store (S3 lakes): never a rename, one conditional pointer write.

On S3 a "rename" is a copy then a delete of every object, so a reader could see a marker before
the data and a writer killed mid-copy would leave half a partition. An S3 lake therefore commits
a partition version like this (:mod:`flightdeck.data.sparkio` drives it under the table's lease):

1. The data goes under a prefix never used before: ``<table>/_v/<version>/date=D/part-*``
   (``<version>`` is ``<UTC time>-<random>``). Nothing reads it yet.
2. The previous version of the partition, if any, gets a ``_RETIRED`` marker (its age, by the
   store's clock, starts its retention period).
3. One small pointer object, ``<table>/date=D/_COMMIT.json``, names the version and exactly its
   files (path relative to the table, size, ETag); it is written conditionally: ``If-Match`` on
   the pointer's ETag seen when the commit started, or ``If-None-Match: *`` for the first. Of two
   committers that both got this far, one wins and the other fails with :class:`CommitConflict`.
4. Cleanup: versions retired longer ago than ``FLIGHTDECK_LAKE_VERSION_RETENTION_HOURS``
   (default 24) and data no pointer ever named (a killed writer's) are deleted, by the next
   committer of the table, under the lease.

Readers (:meth:`flightdeck.core.lake.Lake.partition_files`) follow the pointer and read exactly
the files it names, so they see the old version or the new one, never a mix, never a partial one.
Pointers of a killed writer's commit are never half-written: a PUT is atomic.

Conditional writes are required (leases and pointers rely on them): :func:`require_conditional_writes`
probes the store once per process, endpoint and bucket, and refuses one that ignores them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from flightdeck.core import lake as lake_mod
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import PARTITION_POINTER, VERSIONS_DIR

log = logging.getLogger(__name__)

RETENTION_ENV = "FLIGHTDECK_LAKE_VERSION_RETENTION_HOURS"
DEFAULT_RETENTION_HOURS = 24.0
RETIRED_MARKER = "_RETIRED"
WRITE_MARKER = "_SUCCESS"
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}

_probed: set[tuple[str, str]] = set()
_probe_lock = threading.Lock()


class ConditionalWritesUnsupported(FlightdeckError):
    """The object store ignores ``If-None-Match: *``: leases and commits cannot be made safe on it."""


class CommitConflict(RuntimeError):
    """Another writer changed a partition's pointer while this commit ran; this version stays invisible.

    Not a user error: a retry commits on top of the other writer's version.
    """


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def endpoint_name() -> str:
    """The S3 endpoint boto3 talks to, for messages."""
    return os.environ.get(lake_mod.S3_ENDPOINT_ENV) or "the default AWS S3 endpoint"


def require_conditional_writes(path: str) -> None:
    """Refuse an object store that ignores ``If-None-Match: *`` (probed once per endpoint and bucket).

    The probe puts a fresh key twice with ``If-None-Match: *`` in the folder ``path``; the second
    put must be refused (412 PreconditionFailed). The probe key is deleted afterwards.

    Raises:
        ConditionalWritesUnsupported: the second put succeeded; names the endpoint and what to do.
    """
    bucket, key = lake_mod._s3_split(path)
    cache_key = (endpoint_name(), bucket)
    with _probe_lock:
        if cache_key in _probed:
            return
        client = lake_mod._s3_client()
        probe = f"{key.rstrip('/')}/.if-none-match-probe-{uuid.uuid4().hex}"
        client.put_object(Bucket=bucket, Key=probe, Body=b"1", IfNoneMatch="*")
        try:
            client.put_object(Bucket=bucket, Key=probe, Body=b"2", IfNoneMatch="*")
            honoured = False
        except Exception as err:  # botocore's ClientError is generated at run time
            if _error_code(err) not in _CONFLICT:
                raise
            honoured = True
        finally:
            client.delete_object(Bucket=bucket, Key=probe)
        if not honoured:
            raise ConditionalWritesUnsupported(
                f"the object store at {endpoint_name()} (bucket {bucket!r}) ignores conditional writes: a second "
                f"PUT of s3://{bucket}/{probe} with 'If-None-Match: *' succeeded instead of failing with 412 "
                "PreconditionFailed. flightdeck's writer leases and partition commits need it to keep concurrent "
                "writers apart. Use a store that honours it (AWS S3, or SeaweedFS 4.18 or newer: SeaweedFS before "
                "4.18 ignores If-None-Match; upgrade it) and retry."
            )
        _probed.add(cache_key)
        log.info("%s honours If-None-Match (bucket %s)", endpoint_name(), bucket)


def new_version_id() -> str:
    """A never-reused version id that sorts by creation time: ``20240701T120000Z-<12 hex>``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def version_path(table_path: str, version: str) -> str:
    """Where a version's data goes: ``<table>/_v/<version>``."""
    return f"{table_path}/{VERSIONS_DIR}/{version}"


def read_pointer(pointer: str) -> tuple[str | None, dict[str, Any] | None]:
    """The pointer's ETag and document, or ``(None, None)`` when the partition has none."""
    bucket, key = lake_mod._s3_split(pointer)
    try:
        obj = lake_mod._s3_client().get_object(Bucket=bucket, Key=key)
    except Exception as err:  # botocore's NoSuchKey is generated at run time
        if _error_code(err) in _MISSING:
            return None, None
        raise
    doc = json.loads(obj["Body"].read())
    return str(obj["ETag"]), doc if isinstance(doc, dict) else None


def _objects(prefix_path: str) -> Iterator[dict[str, Any]]:
    bucket, key = lake_mod._s3_split(prefix_path)
    paginator = lake_mod._s3_client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
        yield from page.get("Contents", [])


def exists(path: str) -> bool:
    """Whether one object exists (exact key)."""
    bucket, key = lake_mod._s3_split(path)
    try:
        lake_mod._s3_client().head_object(Bucket=bucket, Key=key)
    except Exception as err:  # botocore's ClientError (404) is generated at run time
        if _error_code(err) in _MISSING:
            return False
        raise
    return True


def staged_files(table_path: str, folder: str) -> list[dict[str, Any]]:
    """The data files directly in ``folder`` (a path under the table), as a pointer lists them.

    Names starting with ``_`` or ``.`` (markers, Spark's ``_temporary``) are not data.
    """
    _, table_key = lake_mod._s3_split(table_path)
    files = []
    for obj in _objects(folder):
        rel = obj["Key"][len(table_key) + 1 :]
        name = rel.rsplit("/", 1)[-1]
        if rel.rsplit("/", 1)[0] != folder[len(table_path) + 1 :] or name.startswith(("_", ".")):
            continue
        files.append({"path": rel, "size": int(obj["Size"]), "etag": str(obj["ETag"]).strip('"')})
    return sorted(files, key=lambda f: f["path"])


def copy_files(src_folder: str, dst_folder: str) -> None:
    """Server-side copy of the data files directly in ``src_folder`` into ``dst_folder``."""
    bucket, src_key = lake_mod._s3_split(src_folder)
    _, dst_key = lake_mod._s3_split(dst_folder)
    client = lake_mod._s3_client()
    for obj in _objects(src_folder):
        name = obj["Key"][len(src_key) + 1 :]
        if "/" in name or name.startswith(("_", ".")):
            continue
        client.copy_object(Bucket=bucket, Key=f"{dst_key}/{name}", CopySource={"Bucket": bucket, "Key": obj["Key"]})


def _groups(doc: Mapping[str, Any]) -> set[str]:
    """The version folders (``_v/<version>/<sub>``) a pointer's files live in."""
    return {str(f["path"]).rsplit("/", 1)[0] for f in doc.get("files", [])}


def retire(table_path: str, doc: Mapping[str, Any]) -> None:
    """Mark the folders of a pointer's (soon previous) version retired: their retention starts now."""
    bucket, table_key = lake_mod._s3_split(table_path)
    client = lake_mod._s3_client()
    for group in sorted(_groups(doc)):
        client.put_object(Bucket=bucket, Key=f"{table_key}/{group}/{RETIRED_MARKER}", Body=b"")


def publish(pointer: str, doc: Mapping[str, Any], base_etag: str | None) -> None:
    """Write the pointer, conditional on the ETag seen when the commit started (or on its absence).

    Raises:
        CommitConflict: another writer changed the pointer meanwhile; names its version and writer.
    """
    bucket, key = lake_mod._s3_split(pointer)
    condition = {"IfMatch": base_etag} if base_etag else {"IfNoneMatch": "*"}
    body = json.dumps(doc, indent=2, sort_keys=True).encode()
    try:
        lake_mod._s3_client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition)
    except Exception as err:  # botocore's ClientError is generated at run time
        if _error_code(err) not in _CONFLICT | _MISSING:
            raise
        _, theirs = read_pointer(pointer)
        other = (
            f"version {theirs.get('version')} committed by {(theirs.get('committed_by') or {}).get('owner', '?')}"
            if theirs
            else "no version (the pointer was deleted)"
        )
        raise CommitConflict(
            f"{pointer} changed while this writer committed version {doc.get('version')}: it now names {other}. "
            "This writer's version was not made visible (the next commit of the table deletes it). Another writer "
            "of this partition ran at the same time; rerun this task if its output is still wanted."
        ) from err


def retention_seconds() -> float:
    """How long a replaced version is kept (``FLIGHTDECK_LAKE_VERSION_RETENTION_HOURS``, default 24)."""
    raw = os.environ.get(RETENTION_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_RETENTION_HOURS
    except ValueError as err:
        raise FlightdeckError(f"{RETENTION_ENV}={raw!r} is not a number of hours; set e.g. 24") from err
    return hours * 3600.0


def _current(table_path: str) -> tuple[set[str], dt.datetime | None]:
    """The version folders the table's pointers name, and the newest pointer's store time."""
    bucket, table_key = lake_mod._s3_split(table_path)
    client = lake_mod._s3_client()
    current: set[str] = set()
    now: dt.datetime | None = None
    for name in lake_mod.list_folders(table_path):
        if not name.startswith("date="):
            continue
        try:
            obj = client.get_object(Bucket=bucket, Key=f"{table_key}/{name}/{PARTITION_POINTER}")
        except Exception as err:  # botocore's NoSuchKey is generated at run time
            if _error_code(err) in _MISSING:
                continue
            raise
        current |= _groups(json.loads(obj["Body"].read()))
        stamp: dt.datetime = obj["LastModified"]
        now = stamp if now is None or stamp > now else now
    return current, now


def _version_groups(table_path: str) -> dict[str, list[dict[str, Any]]]:
    """Objects under ``_v/`` by folder: ``_v/<version>/<sub>`` (a date's data) or ``_v/<version>``."""
    _, table_key = lake_mod._s3_split(table_path)
    groups: dict[str, list[dict[str, Any]]] = {}
    for obj in _objects(f"{table_path}/{VERSIONS_DIR}"):
        parts = obj["Key"][len(table_key) + 1 :].split("/")
        groups.setdefault("/".join(parts[:3]) if len(parts) > 3 else "/".join(parts[:2]), []).append(obj)
    return groups


def _keep(objs: list[dict[str, Any]], now: dt.datetime, retention: float, grace: float) -> bool:
    retired = [o["LastModified"] for o in objs if o["Key"].endswith(f"/{RETIRED_MARKER}")]
    if retired:
        return (now - max(retired)).total_seconds() < retention
    return (now - max(o["LastModified"] for o in objs)).total_seconds() < grace


def cleanup(table_path: str, *, retention: float, grace: float, legacy_dates: list[str]) -> int:
    """Delete expired and never-committed versions of a table; call it holding the table's lease.

    Kept: every folder a current pointer names; a retired folder for ``retention`` seconds after
    it was retired; any other (never committed) folder for ``grace`` seconds after its newest
    object was written (a writer that lost its lease may still be writing it; it cannot make it
    visible over a newer pointer, see :func:`publish`). Ages are measured by the store's clock
    (``LastModified`` against the newest pointer's). Also deletes the pre-pointer files
    (``_SUCCESS`` layout) of the partitions in ``legacy_dates`` (``date=D`` names), which now have
    a pointer. Returns how many objects were deleted.
    """
    current, now = _current(table_path)
    if now is None:
        return 0
    groups = _version_groups(table_path)
    kept_versions = {g.split("/")[1] for g in current}
    doomed: list[str] = []
    for group, objs in groups.items():
        if group.count("/") == 1 or group in current:
            continue
        if _keep(objs, now, retention, grace):
            kept_versions.add(group.split("/")[1])
        else:
            doomed.extend(o["Key"] for o in objs)
    # A version's root objects (Spark's _SUCCESS, the empty-partition template) go with its last folder.
    for group, objs in groups.items():
        if group.count("/") == 1 and group.split("/")[1] not in kept_versions:
            doomed.extend(o["Key"] for o in objs)
    for name in legacy_dates:
        doomed.extend(
            o["Key"] for o in _objects(f"{table_path}/{name}") if not o["Key"].endswith(f"/{PARTITION_POINTER}")
        )
    bucket, _ = lake_mod._s3_split(table_path)
    client = lake_mod._s3_client()
    for start in range(0, len(doomed), 1000):
        batch = [{"Key": k} for k in doomed[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    if doomed:
        log.info("deleted %d objects of expired or uncommitted versions in %s", len(doomed), table_path)
    return len(doomed)


class ObjectStoreFs:
    """The file operations of a folder swap (:func:`flightdeck.data.sparkio.write_table`) on an
    object store, through boto3 in this process: what a Spark Connect client uses on an S3 lake,
    where it has no JVM for Hadoop's s3a FileSystem.

    The meaning is s3a's: a folder is the objects under ``<path>/``, ``mkdirs`` creates nothing,
    and a rename is a server-side copy of every object followed by their deletion (not atomic:
    the table's lease and the swap's trash folder make a killed writer's half-done rename
    recoverable, as on s3a). Partitions never use it: they commit by pointer.
    """

    def __init__(self) -> None:
        self._client = lake_mod._s3_client()

    def _keys(self, path: str) -> tuple[str, list[str]]:
        """The bucket and every key of ``path``: the object itself and the objects under it."""
        bucket, key = lake_mod._s3_split(path)
        keys = [str(obj["Key"]) for obj in _objects(path)]
        if exists(path):
            keys.insert(0, key)
        return bucket, keys

    def exists(self, path: str) -> bool:
        bucket, key = lake_mod._s3_split(path)
        found = self._client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return bool(found.get("KeyCount")) or exists(path)

    def mkdirs(self, path: str) -> None:
        """Nothing to create: a folder exists once an object is under it."""

    def rename(self, src: str, dst: str) -> bool:
        bucket, keys = self._keys(src)
        if not keys:
            return False
        self._copy(bucket, keys, src, dst)
        self._delete(bucket, keys)
        return True

    def delete(self, path: str) -> None:
        self._delete(*self._keys(path))

    def _delete(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

    def touch(self, path: str) -> None:
        bucket, key = lake_mod._s3_split(path)
        self._client.put_object(Bucket=bucket, Key=key, Body=b"")

    def children(self, path: str) -> list[str]:
        """Names of the entries directly inside a folder (none when it does not exist)."""
        bucket, key = lake_mod._s3_split(path)
        prefix = key.rstrip("/") + "/"
        names: set[str] = set()
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names.update(str(p["Prefix"])[len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(str(obj["Key"])[len(prefix) :] for obj in page.get("Contents", []))
        return sorted(name for name in names if name)

    def copy(self, src: str, dst: str) -> None:
        bucket, keys = self._keys(src)
        if not keys:
            raise RuntimeError(f"could not copy {src} to {dst}: nothing is there")
        self._copy(bucket, keys, src, dst)

    def _copy(self, bucket: str, keys: list[str], src: str, dst: str) -> None:
        """Server-side copies of ``keys`` (under ``src``) to the same places under ``dst``."""
        src_key = lake_mod._s3_split(src)[1]
        dst_key = lake_mod._s3_split(dst)[1]
        for key in keys:
            target = dst_key + key[len(src_key) :]
            self._client.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
