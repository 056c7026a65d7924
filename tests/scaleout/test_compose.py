"""docker-compose.yaml, Dockerfile, .env.example and deploy/ checked statically.

There is no Docker engine on the test machines, so the stack is never started here; what
the file promises is checked instead (and each part runs for real in the other scale-out
tests: the MLflow server script, the S3 landing zone, the Spark standalone cluster).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from scaleout_support import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
SERVICES = {
    "spark-connect",
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
    "airflow-metrics-token",
    "prometheus",
    "grafana",
    "marquez",
    "marquez-web",
}
AIRFLOW = {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
ONE_SHOT = {"s3-init", "airflow-init"}
SPARK = {"spark-master", "spark-worker-1", "spark-worker-2", "spark-connect"}
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


def test_short_jobs_run_on_the_clusters_spark_connect_server(services: dict[str, Any]) -> None:
    from flightdeck.data.sparkio import REMOTE_ENV, s3a_settings
    from flightdeck.ops.runtime import SPARK_CONNECT_CLASS

    command = " ".join(services["spark-connect"]["command"].split())
    assert f"--class {SPARK_CONNECT_CLASS}" in command and "--master spark://spark-master:7077" in command
    assert "--conf spark.connect.grpc.binding.port=15002" in command
    assert "--conf spark.python.use.daemon=false" in command  # one Python worker daemon per session otherwise
    assert services["spark-connect"]["hostname"] == "spark-connect"  # executors reach its driver
    # The server writes the lake through s3a: the same endpoint settings a spark-submit job derives.
    env = _env(services["spark-connect"])
    for key, value in s3a_settings(env).items():
        assert f"--conf spark.hadoop.{key}={value}" in command, key
    assert "ports" not in services["spark-connect"]  # on the compose network only
    for name in AIRFLOW:
        assert _env(services[name])[REMOTE_ENV] == "sc://spark-connect:15002", name
        assert services[name]["depends_on"]["spark-connect"] == {"condition": "service_healthy"}, name


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


# --- metrics: Prometheus, Grafana, Airflow's OpenTelemetry -------------------------------------

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
FLIGHTDECK_NAME = re.compile(r"\bflightdeck_\w+")


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def _exported_names(tmp_path: Any) -> set[str]:
    """Every sample name the collector exports over the hand-built lake (counters as _total, summaries
    as _sum/_count), whether or not the lake gives that family a value."""
    from metrics_lake import build_metrics_lake
    from prometheus_client.parser import text_string_to_metric_families

    from flightdeck.core.config import load_config
    from flightdeck.monitoring.metrics import LakeCollector, exposition, registry_for

    lake = build_metrics_lake(tmp_path / "lake")
    cfg = load_config(environ={"FLIGHTDECK__LAKE__ROOT": lake.root})
    body, _ = exposition(registry_for(LakeCollector(cfg, lake=lake)))
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        suffixes = {"counter": ("_total",), "summary": ("", "_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _dashboard_exprs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            out[f"{path.name}: {panel['title']}"] = [t["expr"] for t in panel.get("targets", [])]
    return out


def test_prometheus_and_grafana_are_provisioned_from_the_repo(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert _mounts(prometheus)["/etc/prometheus/flightdeck"] == "./deploy/prometheus"
    assert "--config.file=/etc/prometheus/flightdeck/prometheus.yml" in prometheus["command"]
    assert "--web.enable-otlp-receiver" in prometheus["command"]
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./deploy/grafana/dashboards"
    assert grafana["depends_on"]["prometheus"] == {"condition": "service_healthy"}
    # The token Prometheus sends: written by the token service into the volume Prometheus reads.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "flightdeck")
    assert job["metrics_path"] == "/flightdeck/metrics"
    assert job["static_configs"] == [{"targets": ["airflow-api-server:8080"]}]
    token = services["airflow-metrics-token"]
    assert job["authorization"]["type"] == "Bearer"
    assert f"--out {job['authorization']['credentials_file']}" in token["command"]
    assert _mounts(token)["/token"] == _mounts(prometheus)["/token"] == "prometheus-token"
    assert (ROOT / token["command"].split()[1]).is_file()


def test_every_provisioned_file_exists_and_parses() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    rule_files = [PROMETHEUS_DIR / name for name in config["rule_files"]]
    assert rule_files and all(f.is_file() for f in rule_files), rule_files
    for rules in rule_files:
        groups = yaml.safe_load(rules.read_text())["groups"]
        assert all(rule["alert"] and rule["expr"] for g in groups for rule in g["rules"])
    provisioning = sorted((GRAFANA_DIR / "provisioning").rglob("*.yml"))
    assert {p.parent.name for p in provisioning} == {"datasources", "dashboards"}
    uids = set()
    for path in provisioning:
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1, path
        uids |= {d["uid"] for d in doc.get("datasources", [])}
        for provider in doc.get("providers", []):
            assert provider["options"]["path"] == "/var/lib/grafana/dashboards", path
    dashboards = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids, f"{path.name}: {panel['title']} uses an unknown datasource"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"


def test_rules_pass_promtool() -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian's prometheus) is not installed: run `make prometheus` (make test does)")
    result = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")], check=False, capture_output=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_and_alerts_use_only_metrics_the_collector_exports(tmp_path: Any) -> None:
    exported = _exported_names(tmp_path)
    used: dict[str, set[str]] = {}
    for where, exprs in _dashboard_exprs().items():
        for expr in exprs:
            for name in FLIGHTDECK_NAME.findall(expr):
                used.setdefault(name, set()).add(where)
    for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            for name in FLIGHTDECK_NAME.findall(rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule['alert']}")
    assert len(used) >= 12, sorted(used)  # the dashboard shows the metrics, not a token few
    unknown = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not unknown, f"not exported by flightdeck.monitoring.metrics: {unknown}"


def test_airflow_sends_its_own_metrics_to_prometheus_by_opentelemetry(services: dict[str, Any]) -> None:
    for name in AIRFLOW:
        env = _env(services[name])
        assert env["AIRFLOW__METRICS__OTEL_ON"] == "True", name
        assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://prometheus:9090/api/v1/otlp/v1/metrics", name
        assert env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "http/protobuf", name


def test_airflow_sends_lineage_to_marquez(services: dict[str, Any]) -> None:
    env = _env(services["airflow-scheduler"])
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "http", "url": "http://marquez:5000", "endpoint": "api/v1/lineage"}
    assert env["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "flightdeck"
    marquez = _env(services["marquez"])
    assert marquez["POSTGRES_HOST"] == "postgres" and marquez["POSTGRES_DB"] == "marquez"
    assert services["marquez"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "CREATE DATABASE marquez OWNER marquez" in (ROOT / "deploy" / "postgres-init.sh").read_text()
    assert services["marquez-web"]["depends_on"]["marquez"] == {"condition": "service_healthy"}
