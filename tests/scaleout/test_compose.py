"""docker-compose.yaml, Dockerfile, .env.example and deploy/ checked statically.

There is no Docker engine on the test machines, so the stack is never started here; what
the file promises is checked instead (and each part runs for real in the other scale-out
tests: the MLflow server script, the S3 landing zone, the Spark standalone cluster).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from scaleout_support import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
SERVICES = {
    "postgres",
    "s3",
    "s3-init",
    "mlflow",
    "spark-master",
    "spark-worker-1",
    "spark-worker-2",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
AIRFLOW = {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
ONE_SHOT = {"s3-init", "airflow-init"}
SPARK = {"spark-master", "spark-worker-1", "spark-worker-2"}
FLIGHTDECK_IMAGE = "flightdeck:0.1.0"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|ACCESS_KEY|TOKEN")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (it is merged from anchors)"
    return {k: str(v) for k, v in env.items()}


def _example_env() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _substitute(value: str, env: dict[str, str]) -> str:
    return VAR.sub(lambda m: env.get(m.group(1)) or m.group(3) or "", value)


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} is not a version"
    from_lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("FROM ")]
    assert from_lines == ["FROM python:3.11.14-slim-bookworm"]


def test_airflow_spark_and_mlflow_share_one_image_built_here(services: dict[str, Any]) -> None:
    for name in AIRFLOW | SPARK | ONE_SHOT | {"mlflow"}:
        assert services[name]["image"] == FLIGHTDECK_IMAGE, name
        assert services[name]["build"] == ".", name


def test_code_is_mounted(services: dict[str, Any]) -> None:
    for name in AIRFLOW:
        mounts = {v.split(":")[0]: v.split(":")[1] for v in services[name]["volumes"]}
        for folder in ("dags", "plugins", "jobs", "include"):
            assert mounts.get(f"./{folder}") == f"/opt/flightdeck/{folder}", f"{name} does not mount {folder}/"
    for name in SPARK - {"spark-master"}:
        mounts = {v.split(":")[0]: v.split(":")[1] for v in services[name]["volumes"]}
        assert mounts == {"./jobs": "/opt/flightdeck/jobs", "./include": "/opt/flightdeck/include"}, name


def test_airflow_services_share_fernet_key_and_jwt_secret(services: dict[str, Any]) -> None:
    keys = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    seen = {k: {_env(services[n])[k] for n in AIRFLOW | {"airflow-init"}} for k in keys}
    for key, values in seen.items():
        assert len(values) == 1, f"{key} differs between Airflow services: {values}"
    assert seen["AIRFLOW__CORE__FERNET_KEY"] == {"${AIRFLOW_FERNET_KEY:?set AIRFLOW_FERNET_KEY in .env}"}
    assert seen["AIRFLOW__API_AUTH__JWT_SECRET"] == {"${AIRFLOW_JWT_SECRET:?set AIRFLOW_JWT_SECRET in .env}"}


def test_flightdeck_environment_matches_the_config(services: dict[str, Any]) -> None:
    from flightdeck.core.config import load_config

    example = _example_env()
    for name in AIRFLOW | SPARK:
        env = _env(services[name])
        assert env["FLIGHTDECK__LAKE__ROOT"].startswith("s3a://"), name
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert env["AWS_ENDPOINT_URL"] == "http://s3:8333", name
        # The configuration the jobs will load, with this environment: the lake is on S3.
        resolved = {k: _substitute(v, example) for k, v in env.items() if k.startswith("FLIGHTDECK__")}
        cfg = load_config(environ=resolved)
        assert cfg.lake.root == f"s3a://{example['LAKE_BUCKET']}/lake" and cfg.lake.is_remote
    conn = _env(services["airflow-scheduler"])["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert '"host": "spark://spark-master", "port": 7077' in conn
    assert "--host spark-master --port 7077" in services["spark-master"]["command"]
    for name in ("spark-worker-1", "spark-worker-2"):
        assert "spark://spark-master:7077" in services[name]["command"]
    assert services["airflow-scheduler"]["hostname"] == "airflow-scheduler"  # executors reach the driver


def test_mlflow_server_postgres_s3_and_authentication(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    env = _env(mlflow)
    command = " ".join(mlflow["command"].split())
    assert command.startswith("deploy/mlflow-server.sh ")
    script = (ROOT / "deploy" / "mlflow-server.sh").read_text()
    assert "--app-name basic-auth" in script
    assert "--artifacts-destination" in script and "--backend-store-uri" in script
    hosts = command.split("--allowed-hosts ", 1)[1].split()[0].split(",")
    assert {"mlflow", "mlflow:5000", "localhost:5000"} <= set(hosts)
    backend, auth = env["MLFLOW_BACKEND_STORE_URI"], env["MLFLOW_AUTH_DATABASE_URI"]
    airflow_db = _env(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    dbs = {uri.rsplit("/", 1)[1] for uri in (backend, auth, airflow_db)}
    assert dbs == {"mlflow", "mlflow_auth", "airflow"}, "Airflow, MLflow and MLflow auth need separate databases"
    assert all("@postgres:5432/" in uri for uri in (backend, auth, airflow_db))
    init = (ROOT / "deploy" / "postgres-init.sh").read_text()
    for db in dbs:
        assert f"CREATE DATABASE {db} " in init, db
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:8333"
    # Clients log in with the admin credentials the server was started with.
    client = _env(services["airflow-scheduler"])
    assert client["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert client["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]


def test_secrets_only_from_env_file(services: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    used = {m.group(1): (m.group(2), m.group(3)) for m in VAR.finditer(text)}
    for var, (op, _) in used.items():
        if SECRET_NAME.search(var):
            assert op == ":?", f"${{{var}}} must be required (${{{var}:?...}}), never defaulted"
    example = _example_env()
    assert set(used) <= set(example), f"variables missing from .env.example: {set(used) - set(example)}"
    for var, value in example.items():
        if SECRET_NAME.search(var):
            assert value == "", f".env.example must not ship a value for the secret {var}"
    # No literal secret in any environment: every secret-looking value comes from a ${VAR:?}.
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key) and key != "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", value), f"{name}: {key} is not taken from .env"
        for uri_key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
            if uri_key in _env(svc):
                assert re.search(r":\$\{[A-Z0-9_]+:\?[^}]+\}@", _env(svc)[uri_key]), f"{name}: {uri_key} password"


def test_healthchecks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") is None, f"{name} runs once"
            continue
        check = svc.get("healthcheck", {}).get("test")
        assert check, f"{name} has no healthcheck"


def test_dependencies_wait_for_health(services: dict[str, Any]) -> None:
    for name in AIRFLOW:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"] == {"condition": "service_completed_successfully"}
        assert deps["mlflow"] == {"condition": "service_healthy"}
        assert deps["s3-init"] == {"condition": "service_completed_successfully"}
    assert services["mlflow"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("spark-worker-1", "spark-worker-2"):
        assert services[name]["depends_on"] == {"spark-master": {"condition": "service_healthy"}}


def test_dockerfile_installs_the_s3a_jars_for_pysparks_hadoop() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RUN python deploy/fetch_s3a_jars.py" in dockerfile
    assert "SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark" in dockerfile
    assert "COPY deploy ./deploy" in dockerfile
