"""Spark session and the one atomic partition writer every job uses.

On a local (or any non-S3) lake a partition is written to a staging directory, then
swapped into place with two renames through Hadoop's FileSystem API. A reader only ever
sees a committed partition (with ``_SUCCESS``) or none.

On an S3 lake (``s3a://``/``s3://``) nothing is renamed: a rename there is a copy and a
delete of every object. The data is written under a never-reused version prefix and made
visible by one conditional pointer write per partition (:mod:`flightdeck.data.objectstore`);
readers follow the pointer. The store must honour ``If-None-Match: *`` (probed before the
first S3 commit of a process; a store that ignores it is refused). Test hook steps on S3:
``leased``, ``staged`` (data written, no pointer yet), ``pointer`` (right before a pointer
write, lease just verified) and ``committed`` (pointers written, before the cleanup).

Every write holds its table's writer lease (:mod:`flightdeck.data.leases`,
``<table>/_lease``) from before it looks at the table's ``_staging`` and ``_trash``
folders until its last rename, so writers of one table (same or different dates:
bootstrap, ingest and backfill runs at once) commit one after another, and whatever
the lease holder finds in those folders was left by a writer that died. Recovery
(:func:`_restore_interrupted`) therefore puts back a previous version a killed writer
left in ``_trash`` between its two renames (or drops it when the new version made it
in), and the sweep deletes every ``_staging`` leftover; no live writer's folder can be
touched. The final rename never lands on an existing folder (Hadoop's local filesystem
would nest ``date=D/date=D`` and report success): the writer checks and refuses.

Test hooks: ``FLIGHTDECK_FAULT_PAUSE_BEFORE_COMMIT`` (``<seconds>`` or
``<seconds>@<path part>``) pauses every write (or those whose staging path contains the
part) after staging and before its commit; ``FLIGHTDECK_TEST_PAUSE_AT=<step>`` with
``FLIGHTDECK_TEST_BARRIER=<file>`` stops a write at one step (``leased``, ``staged``,
``moved_aside``: between the two renames, ``committed``: before the trash is emptied),
writes ``<file>.reached`` and waits until ``<file>`` exists, so reliability tests can
line separate processes up at the worst moment and kill them there.

:func:`write_partition` writes one date; :func:`write_partitions` writes many dates
of a table with one Spark write (``partitionBy``) and then swaps each date in the
same way, so a backfill costs one job per table instead of one per date.
:func:`commit_partition` is the same commit with any file writer (no Spark).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from flightdeck.core.errors import MissingPartition
from flightdeck.core.lake import COMMIT_MARKER, Lake, is_s3, parse_date
from flightdeck.data import objectstore
from flightdeck.data.leases import DEFAULT_TTL_SECONDS, LEASE_TTL_ENV, Lease, _env_seconds, writer_lease

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

LOG_LEVEL_ENV = "FLIGHTDECK_SPARK_LOG_LEVEL"
FAULT_PAUSE_ENV = "FLIGHTDECK_FAULT_PAUSE_BEFORE_COMMIT"
TEST_PAUSE_ENV = "FLIGHTDECK_TEST_PAUSE_AT"
TEST_BARRIER_ENV = "FLIGHTDECK_TEST_BARRIER"
_TOKEN_LEN = 12


REMOTE_ENV = "FLIGHTDECK_SPARK_REMOTE"
# The session settings every job relies on (SQL settings: a Spark Connect session takes them too).
SESSION_SQL_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
}


def build_session(app_name: str, conf: dict[str, str] | None = None) -> SparkSession:
    """The session a job runs in; the master comes from spark-submit (or the caller).

    With ``FLIGHTDECK_SPARK_REMOTE`` set (``sc://host:port``, the token in
    ``SPARK_CONNECT_AUTHENTICATE_TOKEN``) it is a Spark Connect session on that long-lived
    server instead (:func:`connect_session`), unless spark-submit launched the job: a job given
    its own JVM and master (training, evaluation, any job a user submits) runs in it. Spark's
    own log level is WARN (INFO buries the job's lines); set ``FLIGHTDECK_SPARK_LOG_LEVEL``
    (e.g. ``INFO``) to change it.
    """
    from pyspark.sql import SparkSession

    # spark-submit's PythonRunner hands its JVM to the Python process through this variable.
    if (remote := os.environ.get(REMOTE_ENV)) and not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return connect_session(remote, app_name, conf)
    builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "false")
    for key, value in {**SESSION_SQL_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get(LOG_LEVEL_ENV) or "WARN")
    _apply_s3a_settings(session)
    return session


def connect_session(remote: str, app_name: str, conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark Connect session on the server at ``remote`` with the jobs' SQL settings.

    Only ``spark.sql.*`` settings of ``conf`` apply (the server's JVM, memory, log level and
    Hadoop settings are fixed when it starts). The server is probed first with a short retry
    policy, so a job fails within seconds with a message naming the server when it is down
    (the client's default retries would wait about ten minutes).
    """
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client.retries import DefaultPolicy

    from flightdeck.core.errors import FlightdeckError

    settings = {**SESSION_SQL_CONF, **{k: v for k, v in (conf or {}).items() if k.startswith("spark.sql.")}}
    try:
        session = SparkSession.builder.remote(remote).create()  # no round trip yet
        # a few quick retries (a server restarting), not the default's ten minutes
        session.client.set_retry_policies([DefaultPolicy(max_retries=4, initial_backoff=500, max_backoff=4000)])
        for key, value in settings.items():
            session.conf.set(key, value)  # the first one is the probe: a round trip to the server
    except (PySparkException, OSError, ValueError) as err:
        raise FlightdeckError(
            f"cannot use the Spark Connect server at {remote.split(';', maxsplit=1)[0]} ({REMOTE_ENV}): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}. Start it with 'flightdeck up' "
            f"(FLIGHTDECK_SPARK_CONNECT=true) or unset {REMOTE_ENV} to run the job with spark-submit"
        ) from err
    log.info("%s: Spark Connect session on %s", app_name, remote.split(";", maxsplit=1)[0])
    return session


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect session (no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def parallelism(spark: SparkSession) -> int:
    """The default parallelism: the SparkContext's, or under Spark Connect the server's setting
    (``spark.default.parallelism``, else this machine's cores)."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    value = spark.conf.get("spark.default.parallelism", None)
    return int(value) if value else max(1, os.cpu_count() or 1)


def s3a_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Hadoop ``fs.s3a.*`` settings for an S3-compatible store, from the variables boto3 reads.

    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` gives the endpoint (path-style access, TLS
    as the URL says), ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` the region. Credentials are not
    copied: s3a's default provider chain reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    itself (driver and executors), which keeps secrets out of the Spark conf and UI.
    """
    env = os.environ if environ is None else environ
    settings: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings["fs.s3a.endpoint"] = endpoint
        settings["fs.s3a.path.style.access"] = "true"
        settings["fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        settings["fs.s3a.endpoint.region"] = region
    return settings


def _apply_s3a_settings(session: SparkSession) -> None:
    """Put :func:`s3a_settings` into the session's Hadoop configuration, except keys given
    explicitly as ``spark.hadoop.<key>`` (``--conf`` or the config's ``spark.conf`` win)."""
    settings = s3a_settings()
    if not settings:
        return
    spark_conf = session.sparkContext.getConf()
    hadoop_conf = session.sparkContext._jsc.hadoopConfiguration()
    for key, value in settings.items():
        if not spark_conf.contains(f"spark.hadoop.{key}"):
            hadoop_conf.set(key, value)


class FileOps(Protocol):
    """The file operations a commit needs (Hadoop's FileSystem in jobs, plain files in tests)."""

    def exists(self, path: str) -> bool: ...
    def mkdirs(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> bool: ...
    def delete(self, path: str) -> None: ...
    def touch(self, path: str) -> None: ...
    def children(self, path: str) -> list[str]: ...
    def copy(self, src: str, dst: str) -> None: ...


class LocalFs:
    """The commit's file operations on a local folder, in this process: what a Spark Connect
    client uses on a local lake (it has no JVM), and what the reliability tests' writers use.
    A rename onto an existing folder fails (``os.rename``), never nests."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> bool:
        try:
            os.rename(src, dst)
        except OSError:
            return False
        return True

    def delete(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)

    def touch(self, path: str) -> None:
        with open(path, "a", encoding="utf-8"):
            pass

    def children(self, path: str) -> list[str]:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def copy(self, src: str, dst: str) -> None:
        shutil.copytree(src, dst)


def file_ops(spark: SparkSession, path: str) -> FileOps:
    """The file operations of a commit under ``path``: Hadoop's FileSystem through the session's
    JVM, or under Spark Connect (no JVM in this process) plain files on a local lake and boto3
    calls on an S3 one (:class:`flightdeck.data.objectstore.ObjectStoreFs`).

    Raises:
        FlightdeckError: a Spark Connect session and a lake on another Hadoop filesystem.
    """
    if not is_connect(spark):
        return _Fs(spark, path)
    if is_s3(path):
        return objectstore.ObjectStoreFs()
    if "://" in path and not path.startswith("file:"):
        from flightdeck.core.errors import FlightdeckError

        raise FlightdeckError(
            f"{path}: a Spark Connect job commits this write with local file or S3 calls, which cannot "
            f"reach this filesystem; set FLIGHTDECK_SPARK_CONNECT=false (or unset {REMOTE_ENV}) to run "
            "the job with spark-submit"
        )
    return LocalFs()


class _Fs:
    """Hadoop FileSystem calls on paths given as strings."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self._jvm = jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._path = jvm.org.apache.hadoop.fs.Path
        self.fs = self._path(path).getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._path(path)))

    def mkdirs(self, path: str) -> None:
        self.fs.mkdirs(self._path(path))

    def rename(self, src: str, dst: str) -> bool:
        return bool(self.fs.rename(self._path(src), self._path(dst)))

    def delete(self, path: str) -> None:
        self.fs.delete(self._path(path), True)

    def touch(self, path: str) -> None:
        self.fs.create(self._path(path), True).close()

    def children(self, path: str) -> list[str]:
        """Names of the entries directly inside a folder (none when it does not exist)."""
        if not self.exists(path):
            return []
        return sorted(str(st.getPath().getName()) for st in self.fs.listStatus(self._path(path)))

    def copy(self, src: str, dst: str) -> None:
        copied = self._jvm.org.apache.hadoop.fs.FileUtil.copy(
            self.fs, self._path(src), self.fs, self._path(dst), False, self._conf
        )
        if not copied:
            raise RuntimeError(f"could not copy {src} to {dst}")


def _test_pause(step: str, where: str) -> None:
    """Test-only hook: at ``FLIGHTDECK_TEST_PAUSE_AT=<step>``, announce it and wait for the barrier file."""
    if os.environ.get(TEST_PAUSE_ENV) != step or not (barrier := os.environ.get(TEST_BARRIER_ENV)):
        return
    reached = f"{barrier}.reached"
    with open(reached, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {step} {where}\n")
    log.warning("test hook (%s=%s): paused at %s until %s exists", TEST_PAUSE_ENV, step, where, barrier)
    deadline = time.monotonic() + 600
    while not os.path.exists(barrier) and time.monotonic() < deadline:
        time.sleep(0.05)


def _rename_into_free(fs: FileOps, src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` only when nothing is at ``dst``: Hadoop's local filesystem moves a
    folder *into* an existing one (``date=D/date=D``) and reports success, so refuse explicitly."""
    if fs.exists(dst):
        raise RuntimeError(f"refusing to move {src} onto {dst}: {dst} exists (it would nest inside it)")
    return fs.rename(src, dst)


def _swap_in(fs: FileOps, staged: str, final: str, trash: str, lease: Lease | None = None) -> None:
    """Replace ``final`` by ``staged`` with two renames; the old version goes to ``trash``, then away.

    If the second rename fails, the old version is put back, so a failed swap changes nothing.
    The caller holds the table's lease; it is verified before each rename.
    """
    moved_old = False
    if lease is not None:
        lease.check()
    if fs.exists(final):
        fs.mkdirs(trash.rsplit("/", 1)[0])
        if not _rename_into_free(fs, final, trash):
            raise RuntimeError(f"could not move the previous version of {final} aside")
        moved_old = True
    _test_pause("moved_aside", final)
    if lease is not None:
        lease.check()
    if not _rename_into_free(fs, staged, final):
        if moved_old:
            _rename_into_free(fs, trash, final)
        raise RuntimeError(f"could not commit {staged} to {final}")
    _test_pause("committed", final)
    if moved_old:
        fs.delete(trash)


def _require_marker(fs: FileOps, staging: str) -> None:
    if not fs.exists(f"{staging}/{COMMIT_MARKER}"):
        raise RuntimeError(f"staged output {staging} has no {COMMIT_MARKER}; not committing")
    seconds, _, where = os.environ.get(FAULT_PAUSE_ENV, "").partition("@")
    if seconds and where in staging:
        log.warning("fault injection (%s): %s is staged; pausing %s s", FAULT_PAUSE_ENV, staging, seconds)
        time.sleep(float(seconds))
    _test_pause("staged", staging)


def _restore_interrupted(fs: FileOps, parent: str, names: Callable[[str], bool] | None = None) -> None:
    """Finish what writers killed mid-commit left in ``<parent>/_trash``; call it holding the lease.

    A ``_trash`` entry is ``<name>-<token>``, the previous version of ``<parent>/<name>`` moved
    aside by a writer. Under the table's lease no live writer has one, so each entry is a dead
    writer's: when ``<name>`` is missing the entry is the last committed version and goes back
    in place; when ``<name>`` exists the new version made it in and the entry is deleted.
    ``names`` limits this to the entries of some names (the tables of one zone folder).
    """
    trash = f"{parent}/_trash"
    for entry in fs.children(trash):
        name = entry[: -(_TOKEN_LEN + 1)]
        if not name or (names is not None and not names(name)):
            continue
        final = f"{parent}/{name}"
        committed = fs.exists(f"{trash}/{entry}/{COMMIT_MARKER}")
        if committed and not fs.exists(final) and _rename_into_free(fs, f"{trash}/{entry}", final):
            log.warning("restored %s from %s (a writer was killed between its two renames)", final, entry)
        else:
            fs.delete(f"{trash}/{entry}")
            log.warning("deleted %s/%s, the old version a killed writer had already replaced", trash, entry)


def _sweep_staging(fs: FileOps, parent: str, stale: Callable[[str], bool]) -> None:
    """Delete ``_staging`` leftovers (``<label>-<token>``) of dead writers whose label ``stale`` accepts.

    Called holding the lease of every label ``stale`` accepts, so no live writer owns one.
    """
    staging = f"{parent}/_staging"
    for entry in fs.children(staging):
        label = entry[: -(_TOKEN_LEN + 1)]
        if label and stale(label):
            fs.delete(f"{staging}/{entry}")
            log.warning("deleted %s/%s, left by a writer that died", staging, entry)


def lease_path(table_path: str) -> str:
    """Where the writer lease of a partitioned table lives (``<table>/_lease``)."""
    return f"{table_path}/_lease"


def commit_partition(
    fs: FileOps | None, lake: Lake, zone: str, table: str, date: dt.date | str, write: Callable[[str], None]
) -> str:
    """Replace one date partition atomically, under the table's lease; returns its path.

    ``write(staging)`` writes the new version into the (new) folder ``staging`` and must leave
    ``_SUCCESS`` in it (Spark does; other writers touch it). ``fs`` moves folders (local lakes;
    an S3 lake needs none: see :func:`_commit_versioned`).
    """
    final = lake.partition(zone, table, date)
    table_path = lake.table(zone, table)
    if is_s3(table_path):
        key = parse_date(date).isoformat()
        _commit_versioned(lake, zone, table, [key], lambda root: write(f"{root}/date={key}"))
        return final
    assert fs is not None, "a local lake commit needs the FileOps that move its folders"
    name = final.rsplit("/", 1)[-1]
    token = uuid.uuid4().hex[:_TOKEN_LEN]
    staging = f"{table_path}/_staging/{name}-{token}"
    with writer_lease(lease_path(table_path)) as lease:
        _test_pause("leased", table_path)
        _restore_interrupted(fs, table_path)
        _sweep_staging(fs, table_path, lambda label: True)
        write(staging)
        _require_marker(fs, staging)
        _swap_in(fs, staging, final, f"{table_path}/_trash/{name}-{token}", lease)
    log.info("committed %s", final)
    return final


def _commit_versioned(
    lake: Lake,
    zone: str,
    table: str,
    keys: Sequence[str],
    stage: Callable[[str], None],
    *,
    date_col: str = "date",
    write_empty: Callable[[str], None] | None = None,
) -> None:
    """Commit date partitions of an S3 table: data under a new version prefix, then one
    conditional pointer per date, then cleanup; all under the table's lease.

    ``stage(root)`` writes the version under ``root`` (``<table>/_v/<version>``) as
    ``<date_col>=<key>/`` folders and leaves ``_SUCCESS`` in ``root`` (Spark's ``partitionBy``
    write, when ``write_empty`` is given) or in each date's folder. A date without files gets a
    copy of what ``write_empty(folder)`` writes (a schema-carrying empty partition).

    Raises:
        ConditionalWritesUnsupported: the store ignores ``If-None-Match`` (user error).
        CommitConflict: another writer moved a pointer meanwhile; this version stays invisible.
    """
    table_path = lake.table(zone, table)
    objectstore.require_conditional_writes(table_path)
    version = objectstore.new_version_id()
    root = objectstore.version_path(table_path, version)
    with writer_lease(lease_path(table_path)) as lease:
        _test_pause("leased", table_path)
        bases = {key: objectstore.read_pointer(lake.partition_pointer(zone, table, key)) for key in keys}
        stage(root)
        for folder in [""] if write_empty is not None else [f"{date_col}={key}" for key in keys]:
            marker = f"{root}/{folder}/{COMMIT_MARKER}" if folder else f"{root}/{COMMIT_MARKER}"
            if not objectstore.exists(marker):
                raise RuntimeError(f"staged output {marker.rsplit('/', 1)[0]} has no {COMMIT_MARKER}; not committing")
        _test_pause("staged", root)
        empty_dir = f"{root}/_empty"
        legacy = []
        for key in keys:
            folder = f"{root}/{date_col}={key}"
            files = objectstore.staged_files(table_path, folder)
            if not files and write_empty is not None:
                if not objectstore.exists(f"{empty_dir}/{COMMIT_MARKER}"):
                    write_empty(empty_dir)
                objectstore.copy_files(empty_dir, folder)
                files = objectstore.staged_files(table_path, folder)
            base_etag, base_doc = bases[key]
            if base_doc is not None:
                objectstore.retire(table_path, base_doc)
            elif lake.is_committed(zone, table, key):
                legacy.append(f"date={key}")  # written before pointers: its files go after the commit
            pointer = lake.partition_pointer(zone, table, key)
            doc = {
                "format": 1,
                "version": version,
                "partition": f"date={key}",
                "files": files,
                "bytes": sum(int(f["size"]) for f in files),
                "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "committed_by": lease.holder,
                "previous": (base_doc or {}).get("version"),
            }
            lease.check()
            _test_pause("pointer", pointer)
            objectstore.publish(pointer, doc, base_etag)
        _test_pause("committed", table_path)
        grace = 2 * _env_seconds(LEASE_TTL_ENV, DEFAULT_TTL_SECONDS)
        objectstore.cleanup(table_path, retention=objectstore.retention_seconds(), grace=grace, legacy_dates=legacy)
    log.info("committed version %s of %s (%d partitions)", version, table_path, len(keys))


def write_partition(df: DataFrame, lake: Lake, zone: str, table: str, date: dt.date | str, fmt: str = "parquet") -> str:
    """Replace exactly one date partition of a table, atomically; returns its path."""
    fs = None if is_s3(lake.table(zone, table)) else file_ops(df.sparkSession, lake.table(zone, table))
    return commit_partition(
        fs, lake, zone, table, date, lambda staging: df.write.mode("error").format(fmt).save(staging)
    )


def write_partitions(
    df: DataFrame,
    lake: Lake,
    zone: str,
    table: str,
    dates: Sequence[dt.date | str],
    *,
    date_col: str = "date",
    fmt: str = "parquet",
) -> list[str]:
    """Replace the given date partitions of a table with one Spark write; returns their paths.

    The rows are written once with ``partitionBy(date_col)`` into
    ``<table>/_staging/<token>/``, then each date is committed exactly as
    :func:`write_partition` does (one atomic swap per date, ``_SUCCESS`` inside it):
    a rerun replaces exactly those dates and leaves the others alone. A date without
    rows gets an empty partition that still carries the schema, so a rerun replaces it
    too. Rows whose ``date_col`` is not one of ``dates`` are not written. One file per
    date needs the rows of a date in one Spark partition (e.g. ``repartition(date_col)``).
    The table's lease is held throughout, so all of these dates come from this write.
    """
    from pyspark.sql import functions as F

    keys = sorted({parse_date(d).isoformat() for d in dates})
    if not keys:
        return []
    if date_col not in df.columns:
        raise ValueError(f"write_partitions: column {date_col!r} not in {df.columns}; it names each row's partition")
    table_path = lake.table(zone, table)
    if is_s3(table_path):
        rows = df.where(F.col(date_col).cast("string").isin(keys))
        schema = df.drop(date_col).schema

        def write_empty(folder: str) -> None:
            df.sparkSession.createDataFrame([], schema).coalesce(1).write.mode("error").format(fmt).save(folder)

        _commit_versioned(
            lake,
            zone,
            table,
            keys,
            lambda root: rows.write.mode("error").format(fmt).partitionBy(date_col).save(root),
            date_col=date_col,
            write_empty=write_empty,
        )
        committed_s3 = [lake.partition(zone, table, key) for key in keys]
        log.info("committed %d partitions of %s (%s..%s)", len(keys), table_path, keys[0], keys[-1])
        return committed_s3
    token = uuid.uuid4().hex[:_TOKEN_LEN]
    staging = f"{table_path}/_staging/{date_col}={keys[0]}..{keys[-1]}-{token}"
    fs = file_ops(df.sparkSession, table_path)
    committed = []
    with writer_lease(lease_path(table_path)) as lease:
        _test_pause("leased", table_path)
        _restore_interrupted(fs, table_path)
        _sweep_staging(fs, table_path, lambda label: True)
        rows = df.where(F.col(date_col).cast("string").isin(keys))
        rows.write.mode("error").format(fmt).partitionBy(date_col).save(staging)
        _require_marker(fs, staging)
        empty_dir = f"{staging}/_empty"
        empty_written = False
        for key in keys:
            staged = f"{staging}/{date_col}={key}"
            if not fs.exists(staged):
                # No rows that day: commit a schema-carrying empty partition (one small Spark write, then copies).
                if not empty_written:
                    schema = df.drop(date_col).schema
                    df.sparkSession.createDataFrame([], schema).coalesce(1).write.mode("error").format(fmt).save(
                        empty_dir
                    )
                    _require_marker(fs, empty_dir)
                    empty_written = True
                fs.copy(empty_dir, staged)
            fs.touch(f"{staged}/{COMMIT_MARKER}")
            final = lake.partition(zone, table, key)
            _swap_in(fs, staged, final, f"{table_path}/_trash/{date_col}={key}-{token}", lease)
            committed.append(final)
        fs.delete(staging)
    log.info("committed %d partitions of %s (%s..%s)", len(committed), table_path, keys[0], keys[-1])
    return committed


def write_table(df: DataFrame, lake: Lake, zone: str, table: str, fmt: str = "parquet") -> str:
    """Replace an unpartitioned table (e.g. a reference table) atomically with ``df``; see :func:`commit_table`."""
    fs = file_ops(df.sparkSession, lake.table(zone, table).rsplit("/", 1)[0])
    return commit_table(fs, lake, zone, table, lambda staging: df.write.mode("error").format(fmt).save(staging))


def commit_table(fs: FileOps, lake: Lake, zone: str, table: str, write: Callable[[str], None]) -> str:
    """Replace an unpartitioned table under its lease (``<zone>/_lease.<table>``; the zone folder
    holds the staging and trash of all such tables); returns its path.

    ``write(staging)`` writes the new version into the new folder ``staging`` and leaves
    ``_SUCCESS`` in it; two renames swap it in (:func:`_swap_in`), and a writer killed between
    them is repaired by the next one before it writes.
    """
    target = lake.table(zone, table)
    parent, name = target.rsplit("/", 1)
    token = uuid.uuid4().hex[:_TOKEN_LEN]
    staging = f"{parent}/_staging/{name}-{token}"
    with writer_lease(f"{parent}/_lease.{name}") as lease:
        _test_pause("leased", target)
        _restore_interrupted(fs, parent, lambda entry: entry == name)
        _sweep_staging(fs, parent, lambda label: label == name)
        write(staging)
        _require_marker(fs, staging)
        _swap_in(fs, staging, target, f"{parent}/_trash/{name}-{token}", lease)
    return target


def read_partitions(
    spark: SparkSession, lake: Lake, zone: str, table: str, dates: Sequence[dt.date | str], fmt: str = "parquet"
) -> DataFrame:
    """Read committed partitions of a table, with a ``date`` column (string YYYY-MM-DD).

    Raises:
        MissingPartition: a requested partition is not committed (names which).
    """
    wanted = sorted({parse_date(d) for d in dates})
    missing = [d.isoformat() for d in wanted if not lake.is_committed(zone, table, d)]
    if missing:
        raise MissingPartition(
            f"{zone}/{table}: partitions {missing} are not committed in {lake.table(zone, table)}; "
            "run the upstream stage for those dates first"
        )
    if is_s3(lake.table(zone, table)):
        return _read_versioned(spark, lake, zone, table, wanted, fmt)
    paths = [lake.partition(zone, table, d) for d in wanted]
    return spark.read.format(fmt).option("basePath", lake.table(zone, table)).load(paths)


def _read_versioned(
    spark: SparkSession, lake: Lake, zone: str, table: str, dates: Sequence[dt.date], fmt: str
) -> DataFrame:
    """Read exactly the files each partition's pointer names (S3 lakes), with a ``date`` column."""
    from pyspark.sql import functions as F

    files = [path for d in dates for path in lake.partition_files(zone, table, d)]
    if not files:
        raise MissingPartition(f"{zone}/{table}: partitions {[d.isoformat() for d in dates]} name no data files")
    # Each file lives in a "<col>=<YYYY-MM-DD>" folder: the date is that folder's value.
    date = F.regexp_extract(F.col("_metadata.file_path"), r"=([0-9]{4}-[0-9]{2}-[0-9]{2})/[^/]*$", 1)
    return spark.read.format(fmt).load(files).withColumn("date", date)


def read_available_partitions(
    spark: SparkSession, lake: Lake, zone: str, table: str, first: dt.date, last: dt.date
) -> tuple[DataFrame | None, list[dt.date]]:
    """Read every committed partition between first and last (inclusive); None when there is none."""
    dates = [d for d in lake.committed_partitions(zone, table) if first <= d <= last]
    if not dates:
        return None, []
    return read_partitions(spark, lake, zone, table, dates), dates
