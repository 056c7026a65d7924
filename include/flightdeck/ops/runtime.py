"""The embedded runtime: one machine, everything under a state folder.

Airflow (api-server, scheduler, dag-processor, triggerer) on SQLite with the
LocalExecutor, an MLflow tracking server on SQLite with a local artifact folder,
Spark in ``local[*]`` mode through Airflow's ``spark_default`` connection, and
the lake in ``<state>/lake``. Every process is started in its own process group
with a pid file, so ``stop`` ends exactly what ``start`` began.

The same environment variables point the same code at Postgres, a Spark cluster
and S3 (see docker-compose.yaml); nothing here is special-cased per deployment.

Exposure: every socket listens on 127.0.0.1 (Airflow's ``serve-logs`` listeners, which
bind every interface, are not started: the api-server reads the task logs from the same
disk), Spark jobs on a local master bind their driver to loopback with the UI off unless
``FLIGHTDECK_SPARK_UI=true``, and MLflow runs its basic-auth app unless
``FLIGHTDECK_MLFLOW_AUTH=false``. Airflow's JWT secret, Fernet key and API secret key live
only in ``<state>/airflow/airflow.cfg`` (mode 0600), never in the environment the services,
tasks and Spark jobs inherit; the state folder is 0700 and every secret file and log 0600.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.core.config import HOME_ENV, PROJECT_ROOT

log = logging.getLogger(__name__)

STATE_ENV = "FLIGHTDECK_STATE"
AIRFLOW_USER = "admin"
SERVICES = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer")
# Started after the others unless FLIGHTDECK_SPARK_CONNECT=false (the short Spark jobs use it).
SPARK_CONNECT = "spark-connect"
SPARK_CONNECT_ENV = "FLIGHTDECK_SPARK_CONNECT"
SPARK_CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# Beside the Connect server: a warm Python that forks the Connect jobs (flightdeck.ops.jobrunner);
# FLIGHTDECK_WARM_JOBS=false starts each job in a new interpreter instead.
JOB_RUNNER = "job-runner"
WARM_JOBS_ENV = "FLIGHTDECK_WARM_JOBS"
# Every service a runtime may have started, in start order (stop goes the other way).
ALL_SERVICES = (*SERVICES, SPARK_CONNECT, JOB_RUNNER)
MLFLOW_USER = "admin"
MLFLOW_AUTH_ENV = "FLIGHTDECK_MLFLOW_AUTH"
SPARK_UI_ENV = "FLIGHTDECK_SPARK_UI"
LOOPBACK = "127.0.0.1"
# Set in the environment they would override airflow.cfg; the runtime keeps them in the file only.
AIRFLOW_SECRET_ENV = tuple(
    f"AIRFLOW__{section}__{key}{suffix}"
    for section, key in (("CORE", "FERNET_KEY"), ("API_AUTH", "JWT_SECRET"), ("API", "SECRET_KEY"))
    for suffix in ("", "_CMD", "_SECRET")
)
# An inherited one would override the password the runtime generated in the auth config.
MLFLOW_SERVER_ONLY_ENV = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH")


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # concurrent writers
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _open_log(path: Path) -> int:
    """A log file descriptor for appending, owner-only (logs may hold generated passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.chmod(path, 0o600)
    return fd


class RuntimeError_(RuntimeError):
    """A service of the embedded runtime failed to start or answer."""


@dataclass(frozen=True)
class Runtime:
    """Where the embedded runtime keeps its state, and on which ports it listens."""

    state: Path = field(default_factory=lambda: Path(os.environ.get(STATE_ENV) or PROJECT_ROOT / ".flightdeck"))
    airflow_port: int = field(default_factory=lambda: int(os.environ.get("FLIGHTDECK_AIRFLOW_PORT", "8080")))
    mlflow_port: int = field(default_factory=lambda: int(os.environ.get("FLIGHTDECK_MLFLOW_PORT", "5000")))
    host: str = "127.0.0.1"
    airflow_db: str | None = None
    mlflow_db: str | None = None
    # MLflow's basic-auth app (every request needs a login); FLIGHTDECK_MLFLOW_AUTH=false turns it off.
    mlflow_auth: bool = field(default_factory=lambda: _flag(os.environ.get(MLFLOW_AUTH_ENV), True))
    # Spark's web UI for the jobs (port 4040 and up, on loopback); off unless asked for.
    spark_ui: bool = field(default_factory=lambda: _flag(os.environ.get(SPARK_UI_ENV), False))
    # A long-lived Spark Connect server for the short jobs (ingest, features, validation, scoring,
    # drift): a task pays a client session instead of a JVM. FLIGHTDECK_SPARK_CONNECT=false turns it
    # off (every Spark job is then a spark-submit of its own, as training always is).
    spark_connect: bool = field(default_factory=lambda: _flag(os.environ.get(SPARK_CONNECT_ENV), True))
    spark_connect_port: int = field(
        default_factory=lambda: int(os.environ.get("FLIGHTDECK_SPARK_CONNECT_PORT", "15002"))
    )
    # With Spark Connect: the jobs are forked from a warm Python (the job runner) unless this is off.
    warm_jobs: bool = field(default_factory=lambda: _flag(os.environ.get(WARM_JOBS_ENV), True))

    @property
    def services(self) -> tuple[str, ...]:
        """The services this runtime runs, in start order."""
        if not self.spark_connect:
            return SERVICES
        return ALL_SERVICES if self.warm_jobs else (*SERVICES, SPARK_CONNECT)

    @property
    def job_runner_socket(self) -> Path:
        """The job runner's Unix socket: in the run folder, or under /tmp when that path is too long."""
        from flightdeck.ops.jobrunner import MAX_SOCKET_PATH

        path = self.run_dir / "job-runner.sock"
        if len(str(path).encode()) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.state.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"flightdeck-{os.getuid()}-{digest}.sock"

    @property
    def spark_remote(self) -> str:
        """The Spark Connect URL the jobs use (``localhost``: with an IP and a token the client wants TLS)."""
        return f"sc://localhost:{self.spark_connect_port}"

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def lineage_file(self) -> Path:
        """The OpenLineage events of the embedded runtime (file transport, JSON lines)."""
        return self.state / "lineage" / "events.jsonl"

    @property
    def lake_root(self) -> Path:
        return self.state / "lake"

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def log_dir(self) -> Path:
        return self.state / "logs"

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.json"

    @property
    def airflow_cfg(self) -> Path:
        """Airflow's config file (0600): the only place the JWT secret, Fernet key and API secret key live."""
        return self.airflow_home / "airflow.cfg"

    @property
    def mlflow_auth_config(self) -> Path:
        """MLflow's basic-auth config (0600): its user store and the admin created on first start."""
        return self.state / "mlflow" / "basic_auth.ini"

    @property
    def spark_conf_dir(self) -> Path:
        return self.state / "spark"

    def secrets(self) -> dict[str, str]:
        """The deployment's secrets, generated once per state folder (0600), never committed.

        JWT secret, Fernet key and API secret key for Airflow; the MLflow admin password and
        the auth app's session key. A state folder from an older version gains the missing ones.
        """
        path = self.secrets_file
        values: dict[str, str] = dict(json.loads(path.read_text())) if path.is_file() else {}
        wanted = {
            "jwt_secret": lambda: secrets.token_urlsafe(32),
            "fernet_key": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "api_secret_key": lambda: secrets.token_urlsafe(32),
            "mlflow_admin_password": lambda: secrets.token_urlsafe(24),
            "mlflow_flask_secret_key": lambda: secrets.token_urlsafe(32),
            "spark_connect_token": lambda: secrets.token_urlsafe(32),
        }
        missing = {key: make() for key, make in wanted.items() if not values.get(key)}
        if missing:
            self._private_state()
            values.update(missing)
            _write_private(path, json.dumps(values))
        return values

    def mlflow_credentials(self) -> tuple[str, str] | None:
        """(user, password) flightdeck uses on the embedded MLflow server; None when auth is off."""
        if not self.mlflow_auth:
            return None
        return MLFLOW_USER, self.secrets()["mlflow_admin_password"]

    def _private_state(self) -> None:
        """The state folder and the folders holding secrets or logs: owner only (0700)."""
        for folder in (self.state, self.airflow_home, self.state / "mlflow", self.log_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)

    def write_configs(self) -> None:
        """airflow.cfg, MLflow's auth config and Spark's defaults, from the secrets (idempotent)."""
        keys = self.secrets()
        self._private_state()
        _write_private(
            self.airflow_cfg,
            "# Written by flightdeck (ops/runtime.py) on every start; settings go in the environment.\n"
            "[core]\n"
            f"fernet_key = {keys['fernet_key']}\n"
            "[api]\n"
            f"secret_key = {keys['api_secret_key']}\n"
            "[api_auth]\n"
            f"jwt_secret = {keys['jwt_secret']}\n",
        )
        auth_db = f"sqlite:///{self.state / 'mlflow' / 'basic_auth.db'}"
        _write_private(
            self.mlflow_auth_config,
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {auth_db.replace('%', '%%')}\n"
            f"admin_username = {MLFLOW_USER}\n"
            f"admin_password = {keys['mlflow_admin_password'].replace('%', '%%')}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # A password check is a scrypt hash (~0.2 s of CPU on a busy 2-core machine) per request:
            # cache successful checks (one worker, so a password change is seen at once there).
            "auth_cache_ttl_seconds = 300\n",
        )
        spark = {"spark.ui.enabled": str(self.spark_ui).lower()}
        if self._spark_master().startswith("local"):
            spark |= {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
        _write_private(self.spark_conf_dir / "spark-defaults.conf", "".join(f"{k} {v}\n" for k, v in spark.items()))

    def _spark_master(self, env: Mapping[str, str] | None = None) -> str:
        return (os.environ if env is None else env).get("FLIGHTDECK_SPARK_MASTER", "local[*]")

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The full environment for Airflow, MLflow, Spark and the jobs."""
        env = dict(os.environ if base is None else base)
        for key in AIRFLOW_SECRET_ENV + MLFLOW_SERVER_ONLY_ENV:
            env.pop(key, None)
        venv_bin = Path(sys.executable).parent
        self.write_configs()
        airflow_db = self.airflow_db or f"sqlite:///{self.airflow_home / 'airflow.db'}"
        spark_conn = {
            "conn_type": "spark",
            "host": self._spark_master(env),
            "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
        }
        env.update(
            {
                HOME_ENV: str(PROJECT_ROOT),
                STATE_ENV: str(self.state),
                "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
                "SPARK_HOME": env.get("SPARK_HOME") or _spark_home(),
                "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable),
                "PYSPARK_DRIVER_PYTHON": env.get("PYSPARK_DRIVER_PYTHON", sys.executable),
                "FLIGHTDECK__LAKE__ROOT": env.get("FLIGHTDECK__LAKE__ROOT", str(self.lake_root)),
                "MLFLOW_TRACKING_URI": env.get("MLFLOW_TRACKING_URI", self.mlflow_url),
                # The GenAI job runner is an extra process that batch ML does not use.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW_CONFIG": str(self.airflow_cfg),
                # Unit-test mode (set by tests/dags) makes Airflow ignore airflow.cfg, secrets included.
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                # Spark's defaults for the jobs: UI off, driver on loopback for a local master.
                "SPARK_CONF_DIR": str(self.spark_conf_dir),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "3"),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.airflow_port),
                "AIRFLOW__API__BASE_URL": self.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # Task logs can hold what a job printed: owner only, like the state folder.
                "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
                "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(spark_conn),
                # OpenLineage events of every DAG run, task and Spark job, one JSON line each
                # (the provider's file transport); a user's own transport (Marquez) wins.
                "AIRFLOW__OPENLINEAGE__TRANSPORT": env.get(
                    "AIRFLOW__OPENLINEAGE__TRANSPORT",
                    json.dumps({"type": "file", "log_file_path": str(self.lineage_file), "append": True}),
                ),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": env.get("AIRFLOW__OPENLINEAGE__NAMESPACE", "flightdeck"),
                "NO_PROXY": "*",
                "no_proxy": "*",
            }
        )
        if self._spark_master(env).startswith("local"):
            env["SPARK_LOCAL_IP"] = LOOPBACK
        if self.spark_connect:
            from flightdeck.data.sparkio import REMOTE_ENV

            env[REMOTE_ENV] = self.spark_remote
            env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = self.secrets()["spark_connect_token"]
            if self.warm_jobs:
                from flightdeck.ops.jobrunner import RUNNER_ENV

                env[RUNNER_ENV] = str(self.job_runner_socket)
        credentials = self.mlflow_credentials()
        if credentials and env["MLFLOW_TRACKING_URI"].rstrip("/") == self.mlflow_url:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = credentials
        return env

    def service_environ(self, service: str, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus what only this service may see (the MLflow server's auth settings)."""
        out = dict(env)
        if service == SPARK_CONNECT:
            out.pop("FLIGHTDECK_SPARK_REMOTE", None)
        if service == "mlflow" and self.mlflow_auth:
            out["MLFLOW_AUTH_CONFIG_PATH"] = str(self.mlflow_auth_config)
            out["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.secrets()["mlflow_flask_secret_key"]
        return out

    # --- processes -------------------------------------------------------------------------

    def _commands(self) -> dict[str, list[str]]:
        venv_bin = Path(sys.executable).parent
        mlflow_db = self.mlflow_db or f"sqlite:///{self.state / 'mlflow' / 'mlflow.db'}"
        airflow = str(venv_bin / "airflow")
        auth = ["--app-name", "basic-auth"] if self.mlflow_auth else []
        return {
            "mlflow": [
                str(venv_bin / "mlflow"),
                "server",
                *auth,
                "--host",
                self.host,
                "--port",
                str(self.mlflow_port),
                "--backend-store-uri",
                mlflow_db,
                "--artifacts-destination",
                str(self.state / "mlflow" / "artifacts"),
                "--workers",
                "1",
            ],
            "api-server": [airflow, "api-server"],
            # serve-logs binds every interface (no host setting); the api-server reads local files.
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
            SPARK_CONNECT: self._spark_connect_command(),
            JOB_RUNNER: [sys.executable, "-m", "flightdeck.ops.jobrunner", "--socket", str(self.job_runner_socket)],
        }

    def _spark_connect_command(self) -> list[str]:
        """spark-submit of Spark's Connect server on loopback, with the config's Spark settings.

        Its Python workers are not forked from a daemon (``spark.python.use.daemon=false``:
        PySpark 4.3 keeps one daemon per session otherwise); the token comes from the
        environment (``SPARK_CONNECT_AUTHENTICATE_TOKEN``), never the command line.
        """
        from flightdeck.core.config import load_config
        from flightdeck.data.sparkio import s3a_settings

        conf = {
            # an S3 lake's endpoint and region (s3a reads the credentials from the environment)
            **{f"spark.hadoop.{key}": value for key, value in s3a_settings().items()},
            **load_config().spark.conf,
            "spark.connect.grpc.binding.address": self.host,
            "spark.connect.grpc.binding.port": str(self.spark_connect_port),
            "spark.python.use.daemon": "false",
        }
        submit = str(Path(_spark_home()) / "bin" / "spark-submit")
        settings = [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]
        master = self._spark_master()
        return [
            submit,
            "--class",
            SPARK_CONNECT_CLASS,
            "--name",
            "flightdeck-spark-connect",
            "--master",
            master,
            *settings,
        ]

    def pid_of(self, service: str) -> int | None:
        pid_file = self.run_dir / f"{service}.pid"
        if not pid_file.is_file():
            return None
        pid = int(pid_file.read_text().strip())
        try:  # a service this process started and that has exited is a zombie until reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                pid_file.unlink(missing_ok=True)
                return None
        except ChildProcessError:
            pass  # started by another process (e.g. `make up`): os.kill tells
        try:
            os.kill(pid, 0)
        except OSError:
            pid_file.unlink(missing_ok=True)
            return None
        return pid

    def init_airflow(self, env: Mapping[str, str]) -> None:
        """Create or migrate the Airflow metadata database (idempotent)."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        venv_bin = Path(sys.executable).parent
        log_file = self.log_dir / "airflow-db-migrate.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with os.fdopen(_open_log(log_file), "ab") as out:
            done = subprocess.run(
                [str(venv_bin / "airflow"), "db", "migrate"], env=dict(env), stdout=out, stderr=out, check=False
            )
        if done.returncode != 0:
            raise RuntimeError_(f"'airflow db migrate' failed; see {log_file}")

    def start(self, services: tuple[str, ...] | None = None, timeout: float = 180.0) -> None:
        """Start the services that are not running yet (default: :attr:`services`) and wait until they answer."""
        services = self.services if services is None else services
        env = self.environ()
        for path in (
            self.run_dir,
            self.log_dir,
            self.state / "mlflow" / "artifacts",
            self.lake_root,
            self.lineage_file.parent,
        ):
            path.mkdir(parents=True, exist_ok=True)
        for old_log in self.log_dir.glob("*.log"):  # logs of an older version may be world-readable
            old_log.chmod(0o600)
        if any(s not in {"mlflow", SPARK_CONNECT, JOB_RUNNER} for s in services):
            self.init_airflow(env)
        for service in services:
            if self.pid_of(service):
                log.info("%s already running (pid %s)", service, self.pid_of(service))
                continue
            ports = {
                "mlflow": self.mlflow_port,
                "api-server": self.airflow_port,
                SPARK_CONNECT: self.spark_connect_port,
            }
            if service in ports and _port_open(self.host, ports[service]):
                raise RuntimeError_(
                    f"port {ports[service]} on {self.host} is taken by another program; stop it or set "
                    f"FLIGHTDECK_{service.replace('-', '_').upper().replace('API_SERVER', 'AIRFLOW')}_PORT"
                )
            out = _open_log(self.log_dir / f"{service}.log")
            proc = subprocess.Popen(
                self._commands()[service],
                env=self.service_environ(service, env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.state),
            )
            os.close(out)
            (self.run_dir / f"{service}.pid").write_text(str(proc.pid))
            log.info("started %s (pid %s), log %s", service, proc.pid, self.log_dir / f"{service}.log")
        if "mlflow" in services:
            self._wait_http(f"{self.mlflow_url}/health", "mlflow", timeout)
        if "api-server" in services:
            self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", timeout)
        if SPARK_CONNECT in services:
            port = self.spark_connect_port
            self._wait_listening(SPARK_CONNECT, f"{self.host}:{port}", lambda: _port_open(self.host, port), timeout)
        if JOB_RUNNER in services:
            path = self.job_runner_socket
            self._wait_listening(JOB_RUNNER, str(path), lambda: _unix_socket_open(path), timeout)
        if self.passwords_file.is_file():
            self.passwords_file.chmod(0o600)

    def _wait_http(self, url: str, service: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pid_of(service):
                raise RuntimeError_(f"{service} exited during start-up; see {self.log_dir / (service + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status < 500:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise RuntimeError_(f"{service} did not answer at {url} within {timeout:.0f}s; see {self.log_dir}")

    def _wait_listening(self, service: str, where: str, listening: Callable[[], bool], timeout: float) -> None:
        """Wait until ``listening()`` (a TCP port or a Unix socket at ``where`` accepts), while ``service`` lives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pid_of(service):
                raise RuntimeError_(f"{service} exited during start-up; see {self.log_dir / (service + '.log')}")
            if listening():
                return
            time.sleep(0.5)
        raise RuntimeError_(f"{service} did not listen on {where} within {timeout:.0f}s; see {self.log_dir}")

    def stop(self) -> list[str]:
        """Stop the services this runtime started (by their pid files); returns what was stopped."""
        stopped = []
        for service in reversed(ALL_SERVICES):
            pid = self.pid_of(service)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.pid_of(service):
                time.sleep(0.5)
            if self.pid_of(service):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            (self.run_dir / f"{service}.pid").unlink(missing_ok=True)
            if service == JOB_RUNNER:
                self.job_runner_socket.unlink(missing_ok=True)
            stopped.append(service)
        return stopped

    def admin_password(self) -> str | None:
        """The generated password of the admin user (written by the api-server on first start)."""
        if not self.passwords_file.is_file():
            return None
        return str(json.loads(self.passwords_file.read_text()).get(AIRFLOW_USER))

    def reset(self) -> None:
        """Remove all state (lake, databases, logs). Services must be stopped."""
        if any(self.pid_of(s) for s in ALL_SERVICES):
            raise RuntimeError_("services are running; run 'make down' first")
        shutil.rmtree(self.state, ignore_errors=True)


def _spark_home() -> str:
    """The Spark distribution inside the installed pyspark package (spark-submit needs it)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError_("pyspark is not installed in this environment; run 'make install'")
    return str(next(iter(spec.submodule_search_locations)))


def _unix_socket_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(str(path)) == 0


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
