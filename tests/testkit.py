"""Support for tests that run real services on this machine: free ports and PostgreSQL databases.

The integration tests (end to end, scale-out) put Airflow's metadata and MLflow's backend
store in the machine's PostgreSQL, as a production deployment would. They must fail,
never skip, when it is not there: :func:`fresh_database` raises :class:`PostgresUnavailable`
with a message saying so.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

# The PostgreSQL the tests use (trust auth on loopback); FLIGHTDECK_TEST_PG_* override it.
PG: dict[str, Any] = {
    "host": os.environ.get("FLIGHTDECK_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("FLIGHTDECK_TEST_PG_PORT", "5432")),
    "user": os.environ.get("FLIGHTDECK_TEST_PG_USER", "postgres"),
}


class PostgresUnavailable(RuntimeError):
    """The tests' PostgreSQL cannot be reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_uri(db: str) -> str:
    """The SQLAlchemy URI of a database of the tests' PostgreSQL (psycopg2 driver)."""
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


def _admin() -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as err:
        raise PostgresUnavailable(
            f"PostgreSQL is required at {PG['host']}:{PG['port']} (user {PG['user']}) for this test: {err}"
        ) from err
    conn.autocommit = True
    return conn


def drop_database(name: str) -> None:
    """Drop a database if it exists (closing its connections)."""
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def fresh_database(name: str) -> str:
    """Drop and create a database; returns its name.

    Raises:
        PostgresUnavailable: PostgreSQL is not reachable.
    """
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


class TcpProxy:
    """A loopback TCP forwarder that a test can cut and restore: a network outage between a
    client and a real server, without restarting the server.

    While cut, nothing listens on the proxy's port (new connections are refused) and open
    connections are closed. ``port`` stays the same across cuts. While held (:meth:`hold`),
    connections are accepted and kept open but no byte moves either way until :meth:`release`:
    a slow server, not a dead one (what was sent meanwhile is delivered late, on release).
    """

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        import threading

        self.host = host
        self.upstream = (host, upstream_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def restore(self) -> None:
        """Listen again (a no-op when not cut)."""
        import threading

        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        for sock in [*([listener] if listener else []), *conns]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def hold(self) -> None:
        """Stall: keep accepting and keep open connections, but forward nothing until :meth:`release`."""
        self._flowing.clear()

    def release(self) -> None:
        """Forward again, delivering what was held (a no-op when not held)."""
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                self._flowing.wait()  # held: the bytes wait here, as in a slow server's queue
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def kill_job_when_staged(
    job: str, args: list[str], lake_root: Path, table: str, log: Path, timeout: float = 300
) -> Path:
    """Run ``jobs/<job>.py`` as its own Spark application and SIGKILL it (its whole process
    group, JVM included) once its write to ``table`` (``<zone>/<table>``) is staged and about
    to be committed, as a lost host would end it; returns the staged folder it left.

    Uses the writer's fault hook (``FLIGHTDECK_FAULT_PAUSE_BEFORE_COMMIT``) to hold the job there.
    """
    import signal
    import subprocess
    import sys
    import time

    from flightdeck.core.config import JOBS_DIR, PROJECT_ROOT
    from flightdeck.data.sparkio import FAULT_PAUSE_ENV

    env = os.environ | {
        FAULT_PAUSE_ENV: f"600@/{table}/",
        "FLIGHTDECK__LAKE__ROOT": str(lake_root),
        "PYSPARK_PYTHON": sys.executable,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(JOBS_DIR / f"{job}.py"), *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not (found := sorted((lake_root / table / "_staging").glob("*/_SUCCESS"))):
                if proc.poll() is not None:
                    raise AssertionError(f"{job} ended (exit {proc.returncode}) before staging {table}; see {log}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{job} did not stage {table} within {timeout:.0f}s; see {log}")
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        raise AssertionError(f"{job} was not killed (exit {proc.returncode}); see {log}")
    return found[0].parent


class HttpReceiver:
    """A local HTTP server on 127.0.0.1 recording each POST (path, headers, body) and answering
    ``status``: a real webhook endpoint for alert tests (``url`` ends in ``path``)."""

    def __init__(self, path: str = "/hook", status: int = 200, answer: bytes = b"ok") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[Any]:
        """The JSON bodies received, in order."""
        import json

        return [json.loads(r["body"]) for r in self.received]

    def events(self) -> list[dict[str, Any]]:
        """Each alert received: its top-level ``event`` and the ``Authorization`` header sent with it."""
        return [
            {"event": body.get("event"), "auth": r["headers"].get("Authorization")}
            for r, body in zip(self.received, self.bodies(), strict=True)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Spark schemas of small synthetic flights-shaped tables (the features tests build them by hand).
FLIGHT_SCHEMA = (
    "year int, month int, day int, hour int, minute int, carrier string, flight int, tailnum string, "
    "origin string, dest string, distance double, arr_delay double, dep_time int, time_hour timestamp"
)
WEATHER_SCHEMA = (
    "origin string, time_hour timestamp, temp double, dewp double, humid double, wind_dir double, "
    "wind_speed double, wind_gust double, precip double, pressure double, visib double"
)
PLANES_SCHEMA = "tailnum string, year int, seats int, engines int"


def fit_small_pipeline(spark: Any, task: str) -> tuple[Any, Any]:
    """A fitted flightdeck-shaped pipeline (keep-StringIndexers -> VectorAssembler -> xgboost.spark,
    ``task`` binary or regression) on 300 synthetic rows, and 4 rows to score: known values, a
    null, a category never seen in training, a null number."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    rows = [(i, float(i % 7), None if i % 5 == 0 else f"c{i % 3}", f"d{i % 4}", i % 2) for i in range(300)]
    train = spark.createDataFrame(rows, "rid int, x double, cat string, cat2 string, y int")
    estimator = (SparkXGBClassifier if task == "binary" else SparkXGBRegressor)(
        features_col="features", label_col="y", n_estimators=8, max_depth=3, num_workers=1
    )
    pipeline = Pipeline(
        stages=[
            StringIndexer(inputCols=["cat", "cat2"], outputCols=["cat__idx", "cat2__idx"], handleInvalid="keep"),
            VectorAssembler(inputCols=["x", "cat__idx", "cat2__idx"], outputCol="features", handleInvalid="keep"),
            estimator,
        ]
    )
    # scored rows: known values, a null, a category never seen in training, a null number
    scored = spark.createDataFrame(
        [(1, 1.0, "c1", "d0"), (2, 3.0, None, "d3"), (3, 2.0, "never-seen", "d1"), (4, None, "c2", "zz")],
        "rid int, x double, cat string, cat2 string",
    )
    return pipeline.fit(train), scored


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package (``bin/spark-submit`` and the jars)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent
