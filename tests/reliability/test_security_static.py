"""Security checks that need no running service: no credential is committed, and nothing that
comes from a trigger form (Params), a partition key or a run id can reach outside the lake."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.lake import Lake, LakeError
from flightdeck.model.registry import RegistryError, rollback
from flightdeck.monitoring.retrain import training_window

ROOT = Path(__file__).resolve().parents[2]

# High-confidence shapes of real credentials, anywhere in the repository.
SECRET_SHAPES = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA |)PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
    "Fernet key or JWT secret with a value": re.compile(
        r"(FERNET_KEY|JWT_SECRET|SECRET_KEY)[ \t]*[:=][ \t]*['\"]?[A-Za-z0-9_\-+/]{20,}={0,2}['\"]?[ \t]*$", re.M
    ),
}
# A password given as a quoted literal, in what is deployed (tests use throwaway loopback
# servers); YAML and env files also unquoted. Variables, placeholders and psql parameters are fine.
DEPLOYED = ("dags/", "jobs/", "include/", "plugins/", "deploy/", "docker-compose.yaml", "Dockerfile", ".env.example")
LITERAL_PASSWORD = re.compile(r"(?i)(password|passwd|secret)\w*[\"']?[ \t]*[:=][ \t]*[\"']([^\"'$<:{\s]{6,})[\"']")
UNQUOTED_PASSWORD = re.compile(r"(?im)^[ \t]*[\w.-]*(password|passwd|secret)\w*[ \t]*[:=][ \t]*(?![$<\"'/])(\S{6,})")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_no_credential_is_committed() -> None:
    files = _tracked()
    assert len(files) > 50, "git ls-files found the repository"
    found = []
    for path in files:
        if path.suffix in {".png", ".jpg", ".parquet", ".gz"}:
            continue
        text = path.read_text(errors="replace")
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel}: {what}" for what, shape in SECRET_SHAPES.items() if shape.search(text)]
        if rel.startswith(DEPLOYED):
            shapes = [LITERAL_PASSWORD, UNQUOTED_PASSWORD] if rel.endswith((".yaml", ".yml", ".env.example")) else []
            shapes = shapes or [LITERAL_PASSWORD]
            matches = [m.group(0) for shape in shapes for m in shape.finditer(text)]
            found += [f"{rel}: literal {m[:40]!r}" for m in matches if " :'" not in m]  # psql :'variable'

    assert not found, found
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored and ".flightdeck/" in ignored, "secrets files (.env, generated keys) stay untracked"
    assert not any(p.name == ".env" for p in files)


def test_the_scan_recognises_what_it_looks_for() -> None:
    key = "AKIA" + "Z7Q2" * 4
    assert SECRET_SHAPES["AWS access key id"].search(f"aws_access_key_id = {key}")
    assert SECRET_SHAPES["Fernet key or JWT secret with a value"].search("FERNET_KEY=" + "x" * 43 + "=")
    assert LITERAL_PASSWORD.search('admin_password = "hunter2hunter2"')
    assert not LITERAL_PASSWORD.search('password = os.environ["MLFLOW_TRACKING_PASSWORD"]')
    assert UNQUOTED_PASSWORD.search("  MLFLOW_TRACKING_PASSWORD: hunter2hunter2")
    assert not UNQUOTED_PASSWORD.search("  MLFLOW_TRACKING_PASSWORD: ${MLFLOW_ADMIN_PASSWORD:?set it in .env}")
    assert not UNQUOTED_PASSWORD.search("AIRFLOW_DB_PASSWORD=\nNEXT=1")


@pytest.mark.parametrize(
    "params",
    [
        {"train_start": "../../etc/passwd", "train_end": "2013-03-31"},
        {"train_start": "2013-01-01", "train_end": "2013-03-31/../../../tmp"},
        {"train_start": "2013-01-01\n", "train_end": "/etc"},
    ],
)
def test_params_cannot_name_paths(params: dict[str, str]) -> None:
    with pytest.raises(LakeError, match="not a date"):
        training_window(None, params, None, load_config())


@pytest.mark.parametrize("key", ["2013-07-01/../../..", "../2013-07-01", "2013-07-01;rm -rf /", "*"])
def test_partition_keys_cannot_escape_the_lake(key: str, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(LakeError):
        lake.partition("features", "flights", key)
    with pytest.raises(LakeError):
        lake.landing_file("flights", key)


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "x y", "/abs"])
def test_tables_sources_and_documents_stay_under_the_root(name: str, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(LakeError):
        lake.table("bronze", name)
    with pytest.raises(LakeError):
        lake.landing_file(name, "2013-07-01")
    # a run id from Airflow (or a crafted one) becomes one folder name under runs/
    doc = Path(lake.run_doc(f"manual__{name}/../../escape", "train"))
    assert doc.resolve().is_relative_to((tmp_path / "lake" / "runs").resolve())


@pytest.mark.parametrize("version", ["../1", "1; DROP TABLE", "latest", "1/../2"])
def test_rollback_accepts_a_version_number_only(version: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a model version number"):
        rollback("flightdeck-any-model", to_version=version, lake=Lake(str(tmp_path / "lake")))
