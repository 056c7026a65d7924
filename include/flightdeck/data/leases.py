"""Writer leases: one writer of a lake table at a time, across processes and hosts.

Every atomic writer (:mod:`flightdeck.data.sparkio`) holds its table's lease from before it
looks at the table's ``_staging``/``_trash`` folders until its last rename is done. Whatever a
lease holder finds there was left by a writer that died, so recovery and sweeping are safe.

- **Local lake:** ``fcntl.flock`` on the lease file (``<table>/_lease``). The kernel drops the
  lock when its holder dies (even by SIGKILL), so a dead writer never blocks the next one. The
  file holds the holder's identity while locked and is unlinked before the lock is dropped; a
  waiter that locked a file unlinked under it notices (inode check) and tries again.
- **S3 lake** (``s3a://``/``s3://``): a small JSON object created with a conditional put
  (``If-None-Match: *``), renewed by a heartbeat thread (conditional on its ETag). A waiter
  takes it over only when it has seen the same ETag unchanged for longer than the holder's
  ``ttl_seconds`` on its *own* monotonic clock (no clock comparison between hosts), again with a
  put conditional on that ETag, so of two waiters only one wins.

A waiter waits up to ``FLIGHTDECK_LEASE_WAIT_SECONDS`` (default 600) and then fails with
:class:`LeaseBusy`, naming the holder (DAG run, task, pid, host). The holder's identity comes
from ``FLIGHTDECK_LEASE_OWNER`` or Airflow's ``AIRFLOW_CTX_*`` variables (exported to every
task and inherited by the jobs it starts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flightdeck.core import lake as lake_mod

log = logging.getLogger(__name__)

LEASE_WAIT_ENV = "FLIGHTDECK_LEASE_WAIT_SECONDS"
LEASE_TTL_ENV = "FLIGHTDECK_LEASE_TTL_SECONDS"
LEASE_OWNER_ENV = "FLIGHTDECK_LEASE_OWNER"
DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_TTL_SECONDS = 60.0
_POLL_SECONDS = 0.2


class LeaseBusy(RuntimeError):
    """Another live writer held the lease for longer than this writer may wait.

    Not a user error: the same run succeeds once the other writer is done, so retries help.
    """


class LeaseLost(RuntimeError):
    """This writer's S3 lease was taken over (it could not renew it in time); it must not commit."""


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as err:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from err


def holder_identity() -> dict[str, Any]:
    """Who is writing: owner (DAG run and task, or the program), pid, host and since when."""
    owner = os.environ.get(LEASE_OWNER_ENV, "").strip()
    if not owner:
        parts = [os.environ.get(f"AIRFLOW_CTX_{k}", "").strip() for k in ("DAG_ID", "DAG_RUN_ID", "TASK_ID")]
        if parts[0]:
            owner = "DAG run " + "/".join(p for p in parts if p)
        else:
            owner = "program " + " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:3]))
    return {
        "owner": owner,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe_holder(holder: dict[str, Any] | None) -> str:
    """One line naming a lease holder, for logs and error messages."""
    if not holder:
        return "an unknown writer (its lease holds no identity yet)"
    return (
        f"{holder.get('owner', '?')} (pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
        f"since {holder.get('since', '?')})"
    )


def _busy(path: str, holder: dict[str, Any] | None, waited: float) -> LeaseBusy:
    return LeaseBusy(
        f"{path} is held by {describe_holder(holder)}: another writer of this table is running; "
        f"waited {waited:.0f} s ({LEASE_WAIT_ENV}). Let that run finish (or fail) and retry this one."
    )


class Lease:
    """A held lease; :meth:`check` raises :class:`LeaseLost` when it is no longer ours."""

    def __init__(self, path: str, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder

    def check(self) -> None:
        """Verify the lease is still held (before every commit step)."""

    def release(self) -> None:
        """Give the lease up."""


class _LocalLease(Lease):
    def __init__(self, path: str, holder: dict[str, Any], fd: int) -> None:
        super().__init__(path, holder)
        self._fd = fd

    def release(self) -> None:
        if self._fd < 0:
            return
        # Unlink while still locked, then unlock: no lock file is left behind, and a waiter
        # holding the old inode sees it is gone and retries on a fresh file.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


def _read_local_holder(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _acquire_local(path: str, wait: float, me: dict[str, Any]) -> _LocalLease:
    target = Path(path.removeprefix("file://"))
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    announced = False
    while True:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_local_holder(target)
            waited = time.monotonic() - start
            if waited >= wait:
                raise _busy(str(target), holder, waited) from None
            if not announced:
                log.warning("waiting for %s, held by %s (up to %.0f s)", target, describe_holder(holder), wait)
                announced = True
            time.sleep(_POLL_SECONDS)
            continue
        try:
            current = os.stat(target)
            mine = os.fstat(fd)
            same = (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked it between our open and our lock
            os.close(fd)
            continue
        body = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, body, 0)
        return _LocalLease(str(target), me, fd)


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class _S3Lease(Lease):
    """A lease object on S3, renewed by a heartbeat thread while held."""

    def __init__(self, path: str, holder: dict[str, Any], ttl: float) -> None:
        super().__init__(path, holder)
        self._client = lake_mod._s3_client()
        self._bucket, self._key = lake_mod._s3_split(path)
        self._ttl = ttl
        self._token = uuid.uuid4().hex
        self._etag = ""
        self._lost = ""
        self._renewed = time.monotonic()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = dt.datetime.now(dt.UTC)
        doc = self.holder | {
            "token": self._token,
            "ttl_seconds": self._ttl,
            "renewed": now.isoformat(timespec="milliseconds"),
            "expires": (now + dt.timedelta(seconds=self._ttl)).isoformat(timespec="seconds"),
        }
        return json.dumps(doc).encode()  # 'renewed' changes every put, so does the ETag

    def _put(self, **condition: str) -> None:
        resp = self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._body(), **condition)
        self._etag = str(resp["ETag"])
        self._renewed = time.monotonic()

    def _read(self) -> tuple[str, dict[str, Any] | None] | None:
        try:
            obj = self._client.get_object(Bucket=self._bucket, Key=self._key)
        except Exception as err:  # botocore's errors are generated at run time
            if _error_code(err) in _MISSING:
                return None
            raise
        try:
            doc = json.loads(obj["Body"].read())
        except ValueError:
            doc = None
        return str(obj["ETag"]), doc if isinstance(doc, dict) else None

    def acquire(self, wait: float) -> None:
        start = time.monotonic()
        seen: tuple[str, float] | None = None  # (ETag, when this process first saw it)
        announced = False
        while True:
            try:
                self._put(IfNoneMatch="*")
                break
            except Exception as err:
                if _error_code(err) not in _CONFLICT:
                    raise
            current = self._read()
            if current is None:  # released between our put and our read
                continue
            etag, holder = current
            now = time.monotonic()
            if seen is None or seen[0] != etag:
                seen = (etag, now)
            elif now - seen[1] > float((holder or {}).get("ttl_seconds", self._ttl)):
                try:  # not renewed for its whole TTL, as measured here: its writer is dead
                    self._put(IfMatch=etag)
                except Exception as err:
                    if _error_code(err) not in _CONFLICT | _MISSING:
                        raise
                    seen = None
                    continue
                log.warning("took over %s from %s, which stopped renewing it", self.path, describe_holder(holder))
                break
            waited = now - start
            if waited >= wait:
                raise _busy(self.path, holder, waited)
            if not announced:
                log.warning("waiting for %s, held by %s (up to %.0f s)", self.path, describe_holder(holder), wait)
                announced = True
            time.sleep(min(1.0, max(_POLL_SECONDS, self._ttl / 10)))
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {self._key}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        with self._mutex:
            if self._lost:
                raise LeaseLost(self._lost)
            try:
                self._put(IfMatch=self._etag)
            except Exception as err:
                if _error_code(err) in _CONFLICT | _MISSING:
                    self._lost = f"the lease {self.path} was taken over by another writer; not committing"
                    raise LeaseLost(self._lost) from err
                if time.monotonic() - self._renewed > self._ttl:
                    self._lost = f"could not renew the lease {self.path} for {self._ttl:.0f} s ({err}); not committing"
                    raise LeaseLost(self._lost) from err
                log.warning("could not renew %s (%s); retrying", self.path, err)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._ttl / 4):
            try:
                self._renew()
            except LeaseLost as err:
                log.error("%s", err)
                return

    def check(self) -> None:
        """Renew now (conditional on our ETag): proves the lease is still ours right before a step."""
        self._renew()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            if self._lost or not self._etag:
                return
            try:
                self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
            except Exception as err:
                log.warning("could not release %s: %s", self.path, err)
            self._etag = ""


@contextlib.contextmanager
def writer_lease(path: str, *, wait: float | None = None, ttl: float | None = None) -> Iterator[Lease]:
    """Hold the writer lease at ``path`` (a local file or an S3 object) for the ``with`` block.

    Args:
        path: the lease's location, e.g. ``<table>/_lease``.
        wait: seconds to wait for a live holder (default ``FLIGHTDECK_LEASE_WAIT_SECONDS`` or 600).
        ttl: S3 only: seconds without renewal after which the lease counts as abandoned
            (default ``FLIGHTDECK_LEASE_TTL_SECONDS`` or 60); renewed every ``ttl / 4``.

    Raises:
        LeaseBusy: another live writer held it for longer than ``wait``; names the holder.
    """
    wait_s = _env_seconds(LEASE_WAIT_ENV, DEFAULT_WAIT_SECONDS) if wait is None else wait
    me = holder_identity()
    lease: Lease
    if lake_mod.is_s3(path):
        ttl_s = _env_seconds(LEASE_TTL_ENV, DEFAULT_TTL_SECONDS) if ttl is None else ttl
        s3_lease = _S3Lease(path, me, ttl_s)
        s3_lease.acquire(wait_s)
        lease = s3_lease
    else:
        lease = _acquire_local(path, wait_s, me)
    log.info("holding %s", path)
    try:
        yield lease
    finally:
        lease.release()
