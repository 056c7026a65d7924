"""S3 partition commits: a never-reused version prefix plus one conditional pointer write.

Against moto's real HTTP server. Writers are separate OS processes (this file run as a script)
stopped at each commit step with the FLIGHTDECK_TEST_PAUSE_AT/FLIGHTDECK_TEST_BARRIER hook and
killed with SIGKILL, or frozen with SIGSTOP so a second writer takes the lease over and both race
for the pointer. A store that ignores ``If-None-Match`` is a small HTTP proxy in front of moto
that drops the header.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import pytest

from flightdeck.core.lake import Lake, read_bytes, write_bytes
from flightdeck.data import objectstore
from flightdeck.data.objectstore import ObjectStoreFs
from flightdeck.data.sparkio import _test_pause, commit_partition, commit_table

ZONE, TABLE, DAY = "bronze", "flights", "2013-07-01"
REF = "ref_airports"  # an unpartitioned (reference) table
ROWS_PER_FILE = 10


def _write_version(tag: str, nfiles: int) -> Any:
    """A writer that puts ``nfiles`` small CSV files of rows tagged ``tag`` and then ``_SUCCESS``."""

    def write(folder: str) -> None:
        for i in range(nfiles):
            body = "".join(f"{tag},{i},{j}\n" for j in range(ROWS_PER_FILE)).encode()
            write_bytes(f"{folder}/part-{i:04d}.csv", body)
            if i == 0:
                _test_pause("mid_write", folder)  # test hook: one file written, the rest not yet
        write_bytes(f"{folder}/_SUCCESS", b"")

    return write


def _child(argv: list[str]) -> None:
    """Entry point of a writer process: ``<lake root> <tag> <nfiles> [table]`` (``table``: replace
    the unpartitioned table REF the way a Spark Connect job does, with boto3's folder swap)."""
    root, tag, nfiles, *what = argv
    if what == ["table"]:
        commit_table(ObjectStoreFs(), Lake(root), ZONE, REF, _write_version(tag, int(nfiles)))
    else:
        commit_partition(None, Lake(root), ZONE, TABLE, DAY, _write_version(tag, int(nfiles)))


def _read(lake: Lake) -> list[str]:
    """What a reader sees: the lines of exactly the files the pointer names."""
    lines: list[str] = []
    for path in lake.partition_files(ZONE, TABLE, DAY):
        lines += read_bytes(path).decode().splitlines()
    return lines


def _tags(lines: list[str]) -> set[str]:
    return {line.split(",", 1)[0] for line in lines}


def _keys(bucket: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _pointer(bucket: str) -> dict[str, Any]:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    body = client.get_object(Bucket=bucket, Key=f"lake/{ZONE}/{TABLE}/date={DAY}/_COMMIT.json")["Body"].read()
    doc: dict[str, Any] = json.loads(body)
    return doc


@pytest.fixture()
def s3_lake(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("FLIGHTDECK_LEASE_TTL_SECONDS", "0.5")  # a killed writer's lease expires fast
    monkeypatch.setenv("FLIGHTDECK_LEASE_WAIT_SECONDS", "60")
    return Lake(f"s3a://{s3_bucket}/lake")


def _start_writer(
    lake: Lake,
    tag: str,
    procs: list[subprocess.Popen[bytes]],
    step: str = "",
    barrier: Path | None = None,
    what: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    env = os.environ | {"FLIGHTDECK_LEASE_OWNER": f"writer {tag}"}
    if step and barrier is not None:
        env |= {"FLIGHTDECK_TEST_PAUSE_AT": step, "FLIGHTDECK_TEST_BARRIER": str(barrier)}
    proc = subprocess.Popen(
        [sys.executable, __file__, lake.root, tag, "3", *what],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    procs.append(proc)
    return proc


def _wait_reached(proc: subprocess.Popen[bytes], barrier: Path, timeout: float = 60) -> None:
    reached = Path(f"{barrier}.reached")
    deadline = time.monotonic() + timeout
    while not reached.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the writer exited ({proc.returncode}) before its pause: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"the writer never reached {barrier}"
        time.sleep(0.05)


def test_commit_then_recommit_readers_see_old_then_new_never_a_mix(s3_lake: Lake, s3_bucket: str) -> None:
    lake = s3_lake
    assert not lake.is_committed(ZONE, TABLE, DAY)
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("v0", 3))
    assert lake.is_committed(ZONE, TABLE, DAY)
    assert [d.isoformat() for d in lake.committed_partitions(ZONE, TABLE)] == [DAY]
    first = _pointer(s3_bucket)
    assert lake.partition_version(ZONE, TABLE, DAY) == first["version"]
    assert len(first["files"]) == 3
    assert [f["size"] for f in first["files"]] == [70, 70, 70]  # ten lines of "v0,i,j\n"
    lines = _read(lake)
    assert len(lines) == 30 and _tags(lines) == {"v0"}
    # The data lives under the version's own prefix; the partition folder holds only the pointer.
    assert _keys(s3_bucket, f"lake/{ZONE}/{TABLE}/date={DAY}/") == [f"lake/{ZONE}/{TABLE}/date={DAY}/_COMMIT.json"]

    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            lines = _read(lake)
            tags = _tags(lines)
            if len(tags) != 1 or len(lines) != 30:
                errors.append(f"mixed or partial read: {sorted(tags)} {len(lines)} lines")
            elif not seen or seen[-1] != next(iter(tags)):
                seen.append(next(iter(tags)))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for tag in ("v1", "v2", "v3"):
            commit_partition(None, lake, ZONE, TABLE, DAY, _write_version(tag, 3))
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen[0] == "v0" and seen[-1] == "v3"
    assert seen == sorted(seen), f"a reader went back to an older version: {seen}"
    assert _pointer(s3_bucket)["previous"] != first["version"]  # each pointer names the one it replaced
    # Retention (24 h by default): every replaced version is still there, marked retired.
    retired = [k for k in _keys(s3_bucket, f"lake/{ZONE}/{TABLE}/_v/") if k.endswith("/_RETIRED")]
    assert len(retired) == 3


def test_expired_versions_are_removed_by_the_next_commit(
    s3_lake: Lake, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = s3_lake
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("a", 2))
    old = _pointer(s3_bucket)["version"]
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("b", 2))
    assert any(f"/_v/{old}/" in k for k in _keys(s3_bucket, "lake/")), "kept for the retention period"
    monkeypatch.setenv(objectstore.RETENTION_ENV, "0")
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("c", 2))
    current = _pointer(s3_bucket)["version"]
    versions = {k.split("/_v/")[1].split("/")[0] for k in _keys(s3_bucket, f"lake/{ZONE}/{TABLE}/_v/")}
    assert versions == {current}
    assert _tags(_read(lake)) == {"c"}


def test_a_partition_written_before_pointers_stays_readable_until_its_first_pointer_commit(
    s3_lake: Lake, s3_bucket: str
) -> None:
    lake = s3_lake
    folder = lake.partition(ZONE, TABLE, DAY)
    write_bytes(f"{folder}/part-0000.csv", b"legacy,0,0\n")
    write_bytes(f"{folder}/_SUCCESS", b"")
    assert lake.is_committed(ZONE, TABLE, DAY) and lake.partition_version(ZONE, TABLE, DAY) is None
    assert _read(lake) == ["legacy,0,0"]
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("new", 1))
    assert _tags(_read(lake)) == {"new"}
    assert _keys(s3_bucket, f"lake/{ZONE}/{TABLE}/date={DAY}/") == [f"lake/{ZONE}/{TABLE}/date={DAY}/_COMMIT.json"]


@pytest.mark.parametrize("step", ["leased", "mid_write", "staged", "pointer", "committed"])
def test_writer_killed_between_commit_steps(
    s3_lake: Lake,
    s3_bucket: str,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    lake = s3_lake
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("old", 3))
    old = _pointer(s3_bucket)["version"]
    barrier = tmp_path / "barrier"
    writer = _start_writer(lake, "new", procs, step, barrier)
    _wait_reached(writer, barrier)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    lines = _read(lake)
    if step == "committed":  # the pointer was written: the new version is whole and visible
        assert _tags(lines) == {"new"} and len(lines) == 30
    else:  # the previous version is still the one readers see, whole
        assert _tags(lines) == {"old"} and len(lines) == 30
        assert _pointer(s3_bucket)["version"] == old
    # The next commit (after the dead writer's lease expired and its leftovers passed the grace
    # period) cleans up: with no retention only its own version is left, no lease object either.
    monkeypatch.setenv(objectstore.RETENTION_ENV, "0")
    time.sleep(2.2)
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("next", 3))
    current = _pointer(s3_bucket)["version"]
    table = f"lake/{ZONE}/{TABLE}/"
    assert [k for k in _keys(s3_bucket, table) if f"/_v/{current}/" not in k] == [f"{table}date={DAY}/_COMMIT.json"]
    assert _tags(_read(lake)) == {"next"}


def _read_table(lake: Lake) -> list[str]:
    """What a reader of the table REF sees: the lines of the data files in its folder."""
    lines: list[str] = []
    for name in ObjectStoreFs().children(lake.table(ZONE, REF)):
        if not name.startswith(("_", ".")):
            lines += read_bytes(f"{lake.table(ZONE, REF)}/{name}").decode().splitlines()
    return lines


@pytest.mark.parametrize("step", ["staged", "moved_aside", "committed"])
def test_a_table_swapped_without_a_jvm_survives_a_writer_killed_mid_swap(
    s3_lake: Lake, s3_bucket: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]], step: str
) -> None:
    """A Spark Connect job replaces a reference table on S3 with boto3 calls (s3a's copy-and-delete
    rename, no JVM); the next writer repairs whatever a SIGKILL between the steps left."""
    lake = s3_lake
    commit_table(ObjectStoreFs(), lake, ZONE, REF, _write_version("old", 3))
    assert sorted(_read_table(lake)) == sorted(f"old,{i},{j}" for i in range(3) for j in range(ROWS_PER_FILE))
    barrier = tmp_path / "barrier"
    writer = _start_writer(lake, "new", procs, step, barrier, what=("table",))
    _wait_reached(writer, barrier)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    seen_by_next: list[set[str]] = []

    def write_next(folder: str) -> None:  # runs after the repair, before anything of "next" exists
        seen_by_next.append(_tags(_read_table(lake)))
        _write_version("next", 2)(folder)

    time.sleep(1.0)  # the dead writer's lease (TTL 0.5 s) expires
    commit_table(ObjectStoreFs(), lake, ZONE, REF, write_next)
    # Killed before its swap, or between the two renames: the old version is back, whole.
    # Killed after the second rename: the new one was committed and stays.
    assert seen_by_next == [{"new"} if step == "committed" else {"old"}]
    assert len(_read_table(lake)) == 2 * ROWS_PER_FILE and _tags(_read_table(lake)) == {"next"}
    zone = f"lake/{ZONE}/"
    leftovers = [k for k in _keys(s3_bucket, zone) if not k.startswith(f"{zone}{REF}/")]
    assert leftovers == [], leftovers  # no staging, trash or lease object left behind


def test_concurrent_committers_one_wins_the_other_fails_clearly(
    s3_lake: Lake,
    s3_bucket: str,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A is frozen (SIGSTOP) at its pointer write; B takes the lease over and gets to the same
    point, both having read the same pointer. B commits; then A resumes (a stalled writer whose
    lease was taken over) and must not overwrite B: exactly one version wins, A fails naming B.

    B goes first rather than both at once because moto checks If-Match and then writes without a
    lock (two truly simultaneous PUTs can both pass there; S3 itself decides atomically).
    """
    lake = s3_lake
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("old", 3))
    bar_a, bar_b = tmp_path / "a", tmp_path / "b"
    a = _start_writer(lake, "A", procs, "pointer", bar_a)
    _wait_reached(a, bar_a)
    os.kill(a.pid, signal.SIGSTOP)
    b = _start_writer(lake, "B", procs, "pointer", bar_b)
    _wait_reached(b, bar_b)  # only after A's lease went unrenewed for its TTL
    os.kill(a.pid, signal.SIGCONT)
    results = {}
    for tag, proc, barrier in (("B", b, bar_b), ("A", a, bar_a)):
        barrier.touch()
        _, err = proc.communicate(timeout=60)
        results[tag] = (proc.returncode, err.decode())
    winners = [tag for tag, (rc, _) in results.items() if rc == 0]
    assert winners == ["B"], results
    assert "changed while this writer committed version" in results["A"][1]
    assert "writer B" in results["A"][1], "the loser names the winner"
    lines = _read(lake)
    assert _tags(lines) == {"B"} and len(lines) == 30
    # The loser's data is garbage the next commit removes.
    monkeypatch.setenv(objectstore.RETENTION_ENV, "0")
    time.sleep(1.2)
    commit_partition(None, lake, ZONE, TABLE, DAY, _write_version("next", 3))
    versions = {k.split("/_v/")[1].split("/")[0] for k in _keys(s3_bucket, f"lake/{ZONE}/{TABLE}/_v/")}
    assert versions == {_pointer(s3_bucket)["version"]}


class _DropIfNoneMatch(http.server.BaseHTTPRequestHandler):
    """Forwards every request to the real S3 server, without the If-None-Match header."""

    upstream = ""

    def _forward(self) -> None:
        target = urllib.parse.urlsplit(self.upstream)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "if-none-match"}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_store_that_ignores_if_none_match_is_refused(
    s3_lake: Lake, s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type("Handler", (_DropIfNoneMatch,), {"upstream": moto_endpoint})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
        with pytest.raises(objectstore.ConditionalWritesUnsupported) as caught:
            commit_partition(None, s3_lake, ZONE, TABLE, DAY, _write_version("x", 1))
        message = str(caught.value)
        assert proxy in message and "If-None-Match" in message and "4.18" in message
        assert _keys(s3_bucket, "lake/") == [], "nothing written, no probe key left behind"
        # The same store behind no proxy honours it: the commit goes through.
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        commit_partition(None, s3_lake, ZONE, TABLE, DAY, _write_version("y", 1))
        assert _tags(_read(s3_lake)) == {"y"}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.spark
def test_spark_reads_exactly_the_files_a_pointer_names(spark: Any, tmp_path: Path) -> None:
    """Spark's side of a versioned read (s3a has no jars on this machine, so on local files laid out
    like an S3 table): two versions of one day side by side, only the named one is read."""
    from flightdeck.data.sparkio import _read_versioned

    table = tmp_path / "features" / "t"
    for version, rows in (("v1", [(1,), (2,)]), ("v2", [(3,), (4,), (5,)])):
        spark.createDataFrame(rows, "x int").coalesce(1).write.parquet(str(table / "_v" / version / f"date={DAY}"))
    spark.createDataFrame([(9,)], "x int").coalesce(1).write.parquet(str(table / "_v" / "v1" / "date=2013-07-02"))
    named = {
        DAY: sorted(str(p) for p in (table / "_v" / "v2" / f"date={DAY}").glob("*.parquet")),
        "2013-07-02": sorted(str(p) for p in (table / "_v" / "v1" / "date=2013-07-02").glob("*.parquet")),
    }

    class PointerLake(Lake):
        def partition_files(self, zone: str, table: str, date: Any) -> list[str]:
            return named[str(date)]

    df = _read_versioned(spark, PointerLake(str(tmp_path)), "features", "t", [DAY, "2013-07-02"], "parquet")
    got = sorted((r["x"], r["date"]) for r in df.collect())
    assert got == [(3, DAY), (4, DAY), (5, DAY), (9, "2013-07-02")]


if __name__ == "__main__":
    _child(sys.argv[1:])
