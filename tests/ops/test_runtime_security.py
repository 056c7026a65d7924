"""The embedded runtime keeps its secrets private and its sockets on loopback, for real.

- secret files are 0600 in a 0700 state folder, and Airflow's JWT secret, Fernet key and API
  secret key are only in airflow.cfg: not in the environment the services, tasks and Spark
  jobs inherit (even when the parent process had them), and Airflow itself reads them from
  the file (unit-test mode, which ignores airflow.cfg, is switched off);
- the MLflow server runs the basic-auth app: a request without a login, or with a wrong
  one, is refused; flightdeck's client, with the credentials the runtime gives it, works;
  the server listens on loopback only and its log is owner-only without the password;
- a Spark job submitted with the runtime's environment has no UI and listens on loopback only.
"""

from __future__ import annotations

import base64
import configparser
import os
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from testkit import free_port

from flightdeck.ops.runtime import Runtime

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every LISTEN socket of ``pid`` and its descendants."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


@pytest.fixture()
def runtime(tmp_path: Path) -> Runtime:
    return Runtime(state=tmp_path / "state", airflow_port=free_port(), mlflow_port=free_port())


def test_secret_files_are_private_and_airflow_secrets_stay_in_airflow_cfg(runtime: Runtime) -> None:
    parent = {
        **os.environ,
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",  # as tests/dags' conftest sets it
        "AIRFLOW__CORE__FERNET_KEY": "inherited-key-that-must-not-survive",
    }
    env = runtime.environ(base=parent)
    keys = runtime.secrets()

    assert _mode(runtime.state) == 0o700
    for private in (runtime.secrets_file, runtime.airflow_cfg, runtime.mlflow_auth_config):
        assert _mode(private) == 0o600, private
    for folder in (runtime.airflow_home, runtime.log_dir, runtime.state / "mlflow"):
        assert _mode(folder) == 0o700, folder

    assert env["AIRFLOW__CORE__UNIT_TEST_MODE"] == "False"
    assert "AIRFLOW__CORE__FERNET_KEY" not in env
    airflow_secrets = [keys["jwt_secret"], keys["fernet_key"], keys["api_secret_key"], keys["mlflow_flask_secret_key"]]
    for name in ("scheduler", "api-server", "triggerer", "mlflow"):
        service_env = runtime.service_environ(name, env)
        leaked = [k for k, v in service_env.items() if any(secret in v for secret in airflow_secrets[:3])]
        assert not leaked, f"{name} inherits Airflow secrets in {leaked}"
    assert keys["mlflow_flask_secret_key"] not in env.values()  # only the MLflow server gets it
    # The jobs do get the MLflow login (the tracking URI is the runtime's server).
    assert env["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert env["MLFLOW_TRACKING_PASSWORD"] == keys["mlflow_admin_password"]

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(runtime.airflow_cfg)
    assert cfg["core"]["fernet_key"] == keys["fernet_key"]
    assert cfg["api_auth"]["jwt_secret"] == keys["jwt_secret"]
    # Airflow itself, started with that environment, reads the key from the file.
    airflow = Path(sys.executable).parent / "airflow"
    got = subprocess.run(
        [str(airflow), "config", "get-value", "core", "fernet_key"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip() == keys["fernet_key"]

    defaults = (runtime.spark_conf_dir / "spark-defaults.conf").read_text().split("\n")
    assert "spark.ui.enabled false" in defaults
    assert "spark.driver.bindAddress 127.0.0.1" in defaults
    # Another state folder is another deployment with its own secrets.
    other = Runtime(state=runtime.state.parent / "other").secrets()
    assert other["jwt_secret"] != keys["jwt_secret"] and other["fernet_key"] != keys["fernet_key"]


def test_mlflow_auth_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHTDECK_MLFLOW_AUTH", "false")
    rt = Runtime(state=tmp_path / "state", mlflow_port=free_port())
    assert rt.mlflow_credentials() is None
    assert "--app-name" not in rt._commands()["mlflow"]
    assert "MLFLOW_TRACKING_PASSWORD" not in rt.environ(base={"PATH": os.environ["PATH"]})


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture()
def mlflow_up(runtime: Runtime) -> Iterator[Runtime]:
    runtime.start(services=("mlflow",), timeout=120)
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.mark.slow  # a real MLflow server start: ~20 s on a quiet machine, over a minute on a busy one
def test_mlflow_refuses_anonymous_requests_and_accepts_flightdeck(
    mlflow_up: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = mlflow_up
    api = f"{rt.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(api) == 401
    assert _status(api, ("admin", "not-the-password")) == 401
    credentials = rt.mlflow_credentials()
    assert credentials is not None
    assert _status(api, credentials) == 200

    # flightdeck's own client, with nothing but the runtime's environment, is let in.
    env = rt.environ()
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    from flightdeck.core import tracking

    c = tracking.client()
    experiment = c.create_experiment("exposure-check")
    assert c.get_experiment(experiment).name == "exposure-check"

    pid = rt.pid_of("mlflow")
    assert pid is not None
    sockets = _listening(pid)
    assert (rt.host, rt.mlflow_port) in sockets
    assert {ip for ip, _ in sockets} <= LOOPBACK, sockets
    log_file = rt.log_dir / "mlflow.log"
    assert _mode(log_file) == 0o600
    assert credentials[1] not in log_file.read_text(errors="replace")


SPARK_PROBE = textwrap.dedent(
    """
    import os, sys, time
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("exposure-probe").getOrCreate()
    print("READY", spark.sparkContext.uiWebUrl, flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:  # the test's sweep runs now
        time.sleep(0.2)
    spark.stop()
    """
)


@pytest.mark.slow  # a JVM start: ~15 s on a quiet machine
def test_spark_job_has_no_ui_and_listens_on_loopback_only(runtime: Runtime, tmp_path: Path) -> None:
    env = runtime.environ()
    env["FLIGHTDECK_SPARK_MASTER"] = "local[1]"
    probe = tmp_path / "probe.py"
    probe.write_text(SPARK_PROBE)
    done = tmp_path / "sweep-done"
    spark_submit = Path(env["SPARK_HOME"]) / "bin" / "spark-submit"
    proc = subprocess.Popen(
        [str(spark_submit), "--master", "local[1]", "--driver-memory", "512m", str(probe), str(done)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and not line.startswith("READY"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("READY"), f"the Spark probe did not start (exit {proc.poll()})"
        assert line.split()[1] == "None", f"the Spark UI is on: {line}"
        sockets = _listening(proc.pid)
        assert sockets, "the driver listens on nothing: the sweep found no process"
        assert {ip for ip, _ in sockets} <= LOOPBACK, sockets
        done.touch()
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
