"""The one MLflow module: nothing else in the library speaks to MLflow, core stays light at parse
time, and the runs it writes for other planes carry the names they always had (a real SQLite store)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "include" / "flightdeck"
TRACKING = LIBRARY / "core" / "tracking.py"


def _mlflow_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found += [f"{path.relative_to(LIBRARY)}:{node.lineno}" for n in names if n.split(".")[0] == "mlflow"]
    return found


def test_only_the_tracking_module_imports_mlflow() -> None:
    others = [hit for p in sorted(LIBRARY.rglob("*.py")) if p != TRACKING for hit in _mlflow_imports(p)]
    assert others == []
    assert _mlflow_imports(TRACKING)  # the check itself finds imports where they are


def test_importing_tracking_loads_no_mlflow() -> None:
    code = "import sys, flightdeck.core.tracking; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("mlflow", "pyspark", "pandas"):
        assert f"'{heavy}'" not in out


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) lands in tmp_path
    return MlflowClient(tracking_uri=uri)


def test_data_docs_run_in_the_data_quality_experiment(store: Any) -> None:
    from flightdeck.core import tracking

    run_id = tracking.log_data_docs(
        "bronze_flights 2013-07-01..2013-07-02",
        tags={"suites": "bronze_flights", "failed": "2013-07-02"},
        metrics={"partitions": 2, "partitions_failed": 1},
        pages={"bronze_flights/2013-07-01.html": "<p>one</p>", "bronze_flights/2013-07-02.html": "<p>two</p>"},
    )
    run = store.get_run(run_id)
    assert store.get_experiment(run.info.experiment_id).name == "flightdeck-data-quality"
    assert run.info.run_name == "bronze_flights 2013-07-01..2013-07-02"
    assert run.data.tags["failed"] == "2013-07-02"
    assert run.data.metrics == {"partitions": 2.0, "partitions_failed": 1.0}
    pages = {a.path for a in store.list_artifacts(run_id, "data_docs/bronze_flights")}
    assert pages == {"data_docs/bronze_flights/2013-07-01.html", "data_docs/bronze_flights/2013-07-02.html"}


def test_version_reads_without_a_model_say_none(store: Any) -> None:
    from flightdeck.core import tracking

    assert tracking.model_aliases("no-such-model") is None
