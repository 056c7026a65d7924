"""Evaluate the candidate of a training run and the current champion on the same holdout.

    spark-submit jobs/evaluate.py --run-key K --config include/config/flights.yaml

Reads ``runs/<K>/train.json`` (written by ``jobs/train.py``), resolves ``champion``
once, scores both models on the candidate's holdout partitions (the same rows, lined up
by a row id) and writes ``runs/<K>/evaluate.json``: both models' metrics, per-slice AUCs
(``gate.slices``) and a paired bootstrap interval of the AUC difference. The comparison
is also logged on the candidate's MLflow run (``champion_*`` metrics,
``evaluation/comparison.json``). The gate (``flightdeck.model.gate.decide``) runs on this result.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import emit_result, parser, run, setup
from flightdeck.core.lake import read_json

log = logging.getLogger("flightdeck.jobs.evaluate")

ROW_ID = "_holdout_row"


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("evaluate", __doc__ or "", partition=False)
    args = p.parse_args(argv)
    if not args.run_key:
        raise ValueError("--run-key is required: evaluate reads runs/<run key>/train.json")
    cfg, lake = setup(args)
    train = read_json(lake.run_doc(args.run_key, "train"))

    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import build_session, read_partitions
    from flightdeck.model.evaluation import bootstrap_auc_diff, metrics, slice_aucs
    from flightdeck.model.inference import collect_keyed_scores
    from flightdeck.model.registry import champion_version

    name = train["model_name"]
    candidate_version = str(train["version"])
    client = MlflowClient()
    champion = champion_version(name, client=client)  # resolved once for this run
    spark = build_session("flightdeck-evaluate")
    # The frozen holdout: the candidate's holdout partitions, one row id so both models' scores line up.
    holdout = (
        read_partitions(spark, lake, "features", cfg.dataset.entity.name, train["holdout_partitions"])
        .withColumn(ROW_ID, F.monotonically_increasing_id())
        .persist()
    )
    n_rows = holdout.count()
    slices = [c for c in cfg.gate.slices if c in holdout.columns]
    missing = sorted(set(cfg.gate.slices) - set(slices))
    if missing:
        log.warning("gate slices %s are not columns of the features; not judged", missing)

    cand = collect_keyed_scores(
        mlflow.spark.load_model(f"models:/{name}/{candidate_version}"), holdout, cfg, ROW_ID, slices
    )
    y = cand["y"].to_numpy(dtype=np.int64)
    p_cand = cand["p"].to_numpy(dtype=np.float64)
    candidate_metrics = metrics(y, p_cand)
    champion_doc: dict[str, Any] | None = None
    comparison: dict[str, Any] = {}
    if champion is not None:
        if champion == candidate_version:
            log.info("candidate v%s is already the champion; comparing it with itself", candidate_version)
        champ = collect_keyed_scores(mlflow.spark.load_model(f"models:/{name}/{champion}"), holdout, cfg, ROW_ID)
        if not np.array_equal(champ[ROW_ID].to_numpy(), cand[ROW_ID].to_numpy()):
            raise RuntimeError("candidate and champion were not scored on the same holdout rows")
        p_champ = champ["p"].to_numpy(dtype=np.float64)
        champion_doc = {"version": champion, "metrics": metrics(y, p_champ)}
        ci = bootstrap_auc_diff(
            y, p_cand, p_champ,
            samples=cfg.gate.bootstrap_samples, confidence=cfg.gate.bootstrap_confidence, seed=cfg.model.seed,
        ) if cfg.gate.bootstrap_samples else None  # fmt: skip
        comparison = {
            "roc_auc_delta": candidate_metrics["roc_auc"] - champion_doc["metrics"]["roc_auc"],
            "auc_diff_ci": ci,
            "slices": slice_aucs(y, p_cand, p_champ, {c: cand[c].to_numpy() for c in slices}),
        }
    else:
        comparison = {"slices": slice_aucs(y, p_cand, None, {c: cand[c].to_numpy() for c in slices})}
    holdout.unpersist()

    run_id = train["run_id"]
    for key, value in candidate_metrics.items():
        client.log_metric(run_id, f"eval_{key}", value)
    if champion_doc is not None:
        for key, value in champion_doc["metrics"].items():
            client.log_metric(run_id, f"champion_{key}", value)
        client.log_metric(run_id, "champion_roc_auc_delta", comparison["roc_auc_delta"])
        if comparison["auc_diff_ci"]:
            client.log_metric(run_id, "champion_roc_auc_delta_ci_low", comparison["auc_diff_ci"]["low"])
            client.log_metric(run_id, "champion_roc_auc_delta_ci_high", comparison["auc_diff_ci"]["high"])
    client.log_dict(run_id, comparison, "evaluation/comparison.json")
    client.set_tag(run_id, "compared_against_champion", champion or "none")
    client.set_model_version_tag(name, candidate_version, "compared_against_champion", champion or "none")

    result = {
        "model_name": name,
        "candidate": {"version": candidate_version, "metrics": candidate_metrics},
        "champion": champion_doc,
        "holdout_partitions": train["holdout_partitions"],
        "n_rows": n_rows,
        "comparison": comparison,
    }
    emit_result(result, lake, args.run_key, "evaluate")
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
