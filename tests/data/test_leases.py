"""Writer leases: one holder at a time, a waiter names the holder, a dead holder never blocks.

Holders are separate OS processes (a lease is about processes and hosts), killed with SIGKILL;
the S3 lease runs against moto's real HTTP server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flightdeck.data.leases import LeaseBusy, LeaseLost, writer_lease

HOLDER = """
import sys, time
from flightdeck.data.leases import writer_lease
with writer_lease(sys.argv[1], wait=30):
    open(sys.argv[2], "w").close()
    time.sleep(float(sys.argv[3]))
"""


def _start_holder(path: str, ready: Path, seconds: float, owner: str, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path, str(ready), str(seconds)],
        env=os.environ | {"FLIGHTDECK_LEASE_OWNER": owner, **env},
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, f"the holder exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "the holder never took the lease"
        time.sleep(0.05)
    return proc


def test_local_lease_names_its_holder_and_is_freed_when_the_holder_is_killed(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    path = str(tmp_path / "t" / "_lease")
    holder = _start_holder(path, tmp_path / "ready", 300, "DAG run flightdeck_ingest/backfill__2013-07-10")
    procs.append(holder)

    start = time.monotonic()
    with pytest.raises(LeaseBusy) as busy, writer_lease(path, wait=1.0):
        pass
    assert time.monotonic() - start >= 1.0
    message = str(busy.value)
    assert "DAG run flightdeck_ingest/backfill__2013-07-10" in message
    assert f"pid {holder.pid}" in message and path in message

    os.kill(holder.pid, signal.SIGKILL)  # the kernel drops its lock; nobody cleans up after it
    holder.wait()
    start = time.monotonic()
    with writer_lease(path, wait=5.0) as lease:
        assert time.monotonic() - start < 1.0
        assert json.loads(Path(path).read_text())["pid"] == os.getpid() == lease.holder["pid"]
    assert not Path(path).exists(), "a released local lease leaves no file behind"


def test_a_waiter_gets_the_lease_once_the_holder_releases_it(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    path = str(tmp_path / "_lease")
    procs.append(_start_holder(path, tmp_path / "ready", 1.5, "program holder"))
    start = time.monotonic()
    with writer_lease(path, wait=30.0):
        waited = time.monotonic() - start
    assert 0.5 < waited < 10, waited


def test_two_holders_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = str(tmp_path / "_lease")
    inside: list[str] = []
    overlap: list[bool] = []

    def write(name: str) -> None:
        with writer_lease(path, wait=30.0):
            overlap.append(bool(inside))
            inside.append(name)
            time.sleep(0.3)
            inside.remove(name)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap == [False] * 4


def _lease_doc(bucket: str, key: str) -> dict[str, object]:
    import boto3

    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    doc: dict[str, object] = json.loads(body)
    return doc


def test_s3_lease_excludes_renews_and_is_released(s3_bucket: str) -> None:
    import boto3

    path = f"s3a://{s3_bucket}/lake/bronze/flights/_lease"
    key = "lake/bronze/flights/_lease"
    with writer_lease(path, ttl=1.0) as lease:
        doc = _lease_doc(s3_bucket, key)
        assert doc["pid"] == os.getpid()
        # The heartbeat renews it every ttl/4: a waiter never sees it stale, and gives up naming us.
        start = time.monotonic()
        with pytest.raises(LeaseBusy, match=f"pid {os.getpid()} on host"), writer_lease(path, wait=3.0, ttl=1.0):
            pass
        assert time.monotonic() - start >= 3.0
        assert _lease_doc(s3_bucket, key)["renewed"] != doc["renewed"]
        lease.check()
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix=key)
    assert not listed.get("KeyCount"), "a released S3 lease is deleted"


def test_s3_lease_of_a_killed_holder_is_taken_over_after_its_ttl(
    s3_bucket: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    path = f"s3a://{s3_bucket}/lake/features/daily/_lease"
    holder = _start_holder(path, tmp_path / "ready", 300, "DAG run bootstrap/r1", FLIGHTDECK_LEASE_TTL_SECONDS="1")
    procs.append(holder)
    # Alive: its heartbeat keeps the lease.
    with pytest.raises(LeaseBusy, match="DAG run bootstrap/r1"), writer_lease(path, wait=2.5, ttl=1.0):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with writer_lease(path, wait=30.0, ttl=1.0):
        took = time.monotonic() - start
        assert _lease_doc(s3_bucket, "lake/features/daily/_lease")["pid"] == os.getpid()
    assert 1.0 < took < 10, took  # only after the dead holder's TTL had passed unrenewed


def test_s3_lease_taken_over_is_lost_and_refuses_to_commit(s3_bucket: str) -> None:
    import boto3

    path = f"s3a://{s3_bucket}/lake/t/_lease"
    with writer_lease(path, ttl=30.0) as lease:
        lease.check()
        # Someone else's conditional takeover replaced the object (as after a long pause of ours).
        boto3.client("s3").put_object(Bucket=s3_bucket, Key="lake/t/_lease", Body=b'{"owner": "other"}')
        with pytest.raises(LeaseLost, match="taken over"):
            lease.check()
    assert _lease_doc(s3_bucket, "lake/t/_lease") == {"owner": "other"}, "a lost lease is not deleted"
