"""The model plane through its jobs, in-process, against a real MLflow store (SQLite file):
train (nested search runs, dataset inputs, manifest) -> evaluate -> gate -> promote; a
reproduction of the champion; a candidate trained on shuffled labels that the gate rejects
(champion unchanged); and reproduction refusing changed data."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_model import START, synthetic_features_pandas

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake

pytestmark = pytest.mark.spark
DAYS = 6
ROWS_PER_DAY = 300


def _write_days(spark: Any, cfg: Any, lake: Lake, days: list[dt.date], *, shuffle_labels: bool = False) -> None:
    from flightdeck.data.sparkio import write_partition

    for i, day in enumerate(days):
        pdf = synthetic_features_pandas(cfg, day, ROWS_PER_DAY, seed=1000 + i)
        if shuffle_labels:
            pdf[cfg.label.name] = np.random.default_rng(7 + i).permutation(pdf[cfg.label.name].to_numpy())
        write_partition(spark.createDataFrame(pdf), lake, "features", cfg.dataset.entity.name, day)


@dataclass(frozen=True)
class Setup:
    """The test's MLflow store, lake and training window."""

    cfg: Any
    lake: Lake
    days: list[dt.date]
    client: Any
    uri: str

    @property
    def name(self) -> str:
        return str(self.cfg.model.name)

    @property
    def window(self) -> list[str]:
        return ["--train-start", self.days[0].isoformat(), "--train-end", self.days[-1].isoformat()]


def _setup(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) goes under tmp
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake"),
        "FLIGHTDECK__MODEL__NAME": "flightdeck-jobs-test",
        "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "2",
        "FLIGHTDECK__MODEL__VALIDATION_DAYS": "1",
        "FLIGHTDECK__MODEL__EARLY_STOPPING_ROUNDS": "5",
        "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "30",
        "FLIGHTDECK__MODEL__PARAMS__MAX_DEPTH": "3",
        "FLIGHTDECK__MODEL__SEARCH__MAX_TRIALS": "2",
        "FLIGHTDECK__MODEL__SEARCH__SPACE": "{max_depth: [2, 4]}",
        "FLIGHTDECK__GATE__MIN_SLICE_ROWS": "50",
        "FLIGHTDECK__GATE__BOOTSTRAP_SAMPLES": "50",
        "FLIGHTDECK_ACTOR": "pytest",
        "FLIGHTDECK_MODEL_CACHE": str(tmp_path / "model-cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config()
    lake = Lake(cfg.lake.root)
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    _write_days(spark, cfg, lake, days)
    return Setup(cfg, lake, days, MlflowClient(tracking_uri=uri, registry_uri=uri), uri)


def _first_model_is_logged_and_promoted(s: Setup, tmp_path: Path) -> None:
    """No champion yet: the first model passes on the absolute threshold and is promoted."""
    from flightdeck.model import promotion, registry

    client, name, days = s.client, s.name, s.days
    first = load_job("train").main([*s.window, "--run-key", "r1", "--reason", "first"])
    assert first["version"] == "1" and first["trials"] == 2
    assert first["validation_partitions"] == [days[3].isoformat()]
    assert first["metrics"]["roc_auc"] > 0.7
    run = client.get_run(first["run_id"])
    assert {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "val_roc_auc"} <= set(run.data.metrics)
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs if i.tags)
    assert contexts == ["evaluation", "training", "validation"]
    nested = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first['run_id']}'"
    )
    assert len(nested) == 2 and all("val_roc_auc" in r.data.metrics for r in nested)
    artifacts = {a.path for a in client.list_artifacts(first["run_id"])}
    assert {"manifest.json", "reference_profile.json", "plots", "model"} <= artifacts
    manifest = client.download_artifacts(first["run_id"], "manifest.json", str(tmp_path))
    doc = json.loads(Path(manifest).read_text())
    assert {"git_commit", "config_hash", "config", "seeds", "library_versions", "spark", "chosen_params"} <= set(doc)
    assert doc["data_fingerprint"]["train"]["rows"] == 4 * ROWS_PER_DAY
    assert {k: str(v) for k, v in client.get_registered_model(name).aliases.items()} == {"challenger": "1"}

    load_job("evaluate").main(["--run-key", "r1"])
    decision = promotion.gate_candidate("r1")
    assert decision["passed"] and decision["champion_version"] is None
    assert client.get_model_version(name, "1").tags["gate_passed"] == "true"
    promotion.promote_candidate("r1", decision, who="pytest")
    assert registry.champion_version(name, client=client) == "1"


def _champion_rebuilds_identically() -> None:
    same = load_job("reproduce").main(["--model-version", "1", "--run-key", "rep1"])
    assert same["identical"] and same["max_abs_diff"] == 0.0 and same["n_rows"] == 2 * ROWS_PER_DAY


def _worse_candidate_is_rejected(spark: Any, s: Setup) -> str:
    """A candidate trained on shuffled labels fails the gate; the champion stays. Returns its version."""
    from flightdeck.model import promotion, registry

    client, name = s.client, s.name
    _write_days(spark, s.cfg, s.lake, s.days[:4], shuffle_labels=True)  # same holdout days, training labels shuffled
    worse = load_job("train").main([*s.window, "--run-key", "r2", "--reason", "shuffled labels"])
    evaluate_doc = load_job("evaluate").main(["--run-key", "r2"])
    assert evaluate_doc["champion"]["version"] == "1"
    assert evaluate_doc["comparison"]["auc_diff_ci"]["high"] < 0
    decision = promotion.gate_candidate("r2")
    assert not decision["passed"], decision["reasons"]
    failed = {k for k, v in decision["checks"].items() if not v["passed"]}
    assert {"max_auc_regression", "auc_diff_ci"} <= failed
    assert client.get_model_version(name, worse["version"]).tags["gate_passed"] == "false"
    with pytest.raises(registry.RegistryError, match="refusing to promote"):
        promotion.promote_candidate("r2", decision)
    assert registry.champion_version(name, client=client) == "1"
    assert [m.to for m in registry.ledger_entries(name, alias="champion", lake=s.lake)] == ["1"]
    return str(worse["version"])


def _reproduction_refuses_changed_data() -> None:
    from flightdeck.model.reproduce import ReproductionError

    with pytest.raises(ReproductionError, match="no longer hold the data"):
        load_job("reproduce").main(["--model-version", "1", "--run-key", "rep2"])


def _scoring_keeps_the_version_it_resolved(
    spark: Any, s: Setup, monkeypatch: pytest.MonkeyPatch, worse_version: str
) -> None:
    """The alias moves while a scoring run is under way: the run keeps the version it resolved."""
    from flightdeck.data.sparkio import FAULT_PAUSE_ENV, read_partitions

    cfg = s.cfg
    holdout = [d.isoformat() for d in s.days[-2:]]
    monkeypatch.setenv(FAULT_PAUSE_ENV, "4@/predictions/")  # each day pauses between staging and commit
    cache = Path(os.environ["FLIGHTDECK_MODEL_CACHE"])
    before = {p.name for p in cache.iterdir()}  # evaluation has downloaded the versions it compared
    outcome: dict[str, Any] = {}
    job = threading.Thread(
        target=lambda: outcome.update(
            load_job("score").main(["--partition", ",".join(holdout), "--model-version", "champion"])
        )
    )
    job.start()
    staged = Path(cfg.lake.root) / "predictions" / cfg.dataset.entity.name / "_staging"
    deadline = time.monotonic() + 300
    while not list(staged.glob("*/_SUCCESS")) and time.monotonic() < deadline:  # day 1 is staged
        time.sleep(0.05)
    s.client.set_registered_model_alias(s.name, "champion", worse_version)  # moved mid-run, outside the gate
    job.join(timeout=300)
    assert outcome["model_version"] == "1"
    predictions = read_partitions(spark, s.lake, "predictions", cfg.dataset.entity.name, holdout)
    versions = {r[0] for r in predictions.select("model_version").distinct().collect()}
    assert versions == {"1"}, "one model version in the whole run, whatever the alias did meanwhile"
    assert predictions.count() == 2 * ROWS_PER_DAY
    # the scored version is in the model cache once, read from its files there, and scoring
    # added nothing else to it
    after = {p.name for p in cache.iterdir()}
    scored = [name for name in after if name.startswith(f"{s.name}-v1-")]
    assert len(scored) == 1 and after - before <= set(scored), (before, after)


def test_train_gate_promote_reproduce_and_reject_a_worse_candidate(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _setup(spark, tmp_path, monkeypatch)
    _first_model_is_logged_and_promoted(s, tmp_path)
    _champion_rebuilds_identically()
    worse_version = _worse_candidate_is_rejected(spark, s)
    _reproduction_refuses_changed_data()  # the training data changed since the champion was trained
    _scoring_keeps_the_version_it_resolved(spark, s, monkeypatch, worse_version)
