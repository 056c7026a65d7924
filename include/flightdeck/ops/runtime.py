"""The embedded runtime: one machine, everything under a state folder.

Airflow (api-server, scheduler, dag-processor, triggerer) on SQLite with the
LocalExecutor, an MLflow tracking server on SQLite with a local artifact folder,
Spark in ``local[*]`` mode through Airflow's ``spark_default`` connection, and
the lake in ``<state>/lake``. Every process is started in its own process group
with a pid file, so ``stop`` ends exactly what ``start`` began.

The same environment variables point the same code at Postgres, a Spark cluster
and S3 (see docker-compose.yaml); nothing here is special-cased per deployment.
"""

from __future__ import annotations

import base64
import contextlib
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
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck.core.config import HOME_ENV, PROJECT_ROOT

log = logging.getLogger(__name__)

STATE_ENV = "FLIGHTDECK_STATE"
AIRFLOW_USER = "admin"
SERVICES = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer")


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

    def secrets(self) -> dict[str, str]:
        """JWT secret and Fernet key: generated once per state folder, never committed."""
        path = self.state / "secrets.json"
        if path.is_file():
            return dict(json.loads(path.read_text()))
        self.state.mkdir(parents=True, exist_ok=True)
        values = {
            "jwt_secret": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        return values

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The full environment for Airflow, MLflow, Spark and the jobs."""
        env = dict(os.environ if base is None else base)
        venv_bin = Path(sys.executable).parent
        keys = self.secrets()
        airflow_db = self.airflow_db or f"sqlite:///{self.airflow_home / 'airflow.db'}"
        spark_conn = {
            "conn_type": "spark",
            "host": env.get("FLIGHTDECK_SPARK_MASTER", "local[*]"),
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
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "3"),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.airflow_port),
                "AIRFLOW__API__BASE_URL": self.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(spark_conn),
                "NO_PROXY": "*",
                "no_proxy": "*",
            }
        )
        return env

    # --- processes -------------------------------------------------------------------------

    def _commands(self) -> dict[str, list[str]]:
        venv_bin = Path(sys.executable).parent
        mlflow_db = self.mlflow_db or f"sqlite:///{self.state / 'mlflow' / 'mlflow.db'}"
        airflow = str(venv_bin / "airflow")
        return {
            "mlflow": [
                str(venv_bin / "mlflow"),
                "server",
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
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer"],
        }

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
        with log_file.open("ab") as out:
            done = subprocess.run(
                [str(venv_bin / "airflow"), "db", "migrate"], env=dict(env), stdout=out, stderr=out, check=False
            )
        if done.returncode != 0:
            raise RuntimeError_(f"'airflow db migrate' failed; see {log_file}")

    def start(self, services: tuple[str, ...] = SERVICES, timeout: float = 180.0) -> None:
        """Start the services that are not running yet and wait until they answer."""
        env = self.environ()
        for path in (self.run_dir, self.log_dir, self.state / "mlflow" / "artifacts", self.lake_root):
            path.mkdir(parents=True, exist_ok=True)
        if any(s != "mlflow" for s in services):
            self.init_airflow(env)
        for service in services:
            if self.pid_of(service):
                log.info("%s already running (pid %s)", service, self.pid_of(service))
                continue
            if service in {"mlflow", "api-server"}:
                port = self.mlflow_port if service == "mlflow" else self.airflow_port
                if _port_open(self.host, port):
                    raise RuntimeError_(
                        f"port {port} on {self.host} is taken by another program; stop it or set "
                        f"FLIGHTDECK_{'MLFLOW' if service == 'mlflow' else 'AIRFLOW'}_PORT"
                    )
            out = (self.log_dir / f"{service}.log").open("ab")
            proc = subprocess.Popen(
                self._commands()[service],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.state),
            )
            (self.run_dir / f"{service}.pid").write_text(str(proc.pid))
            log.info("started %s (pid %s), log %s", service, proc.pid, self.log_dir / f"{service}.log")
        if "mlflow" in services:
            self._wait_http(f"{self.mlflow_url}/health", "mlflow", timeout)
        if "api-server" in services:
            self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", timeout)

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

    def stop(self) -> list[str]:
        """Stop the services this runtime started (by their pid files); returns what was stopped."""
        stopped = []
        for service in reversed(SERVICES):
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
            stopped.append(service)
        return stopped

    def admin_password(self) -> str | None:
        """The generated password of the admin user (written by the api-server on first start)."""
        if not self.passwords_file.is_file():
            return None
        return str(json.loads(self.passwords_file.read_text()).get(AIRFLOW_USER))

    def reset(self) -> None:
        """Remove all state (lake, databases, logs). Services must be stopped."""
        if any(self.pid_of(s) for s in SERVICES):
            raise RuntimeError_("services are running; run 'make down' first")
        shutil.rmtree(self.state, ignore_errors=True)


def _spark_home() -> str:
    """The Spark distribution inside the installed pyspark package (spark-submit needs it)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError_("pyspark is not installed in this environment; run 'make install'")
    return str(next(iter(spec.submodule_search_locations)))


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
