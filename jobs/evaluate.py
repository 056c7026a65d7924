"""Evaluate the candidate of a training run and the current champion on the same holdout.

    spark-submit jobs/evaluate.py --run-key K --config include/config/flights.yaml

Reads ``runs/<K>/train.json`` (written by ``jobs/train.py``), resolves ``champion``
once, scores both models on the candidate's holdout partitions and writes
``runs/<K>/evaluate.json``. The comparison is also logged on the candidate's MLflow
run (``champion_*`` metrics). The gate (``flightdeck.gate.decide``) runs on this result.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.jobargs import emit_result, parser, run, setup
from flightdeck.lake import read_json

log = logging.getLogger("flightdeck.jobs.evaluate")


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("evaluate", __doc__ or "", partition=False)
    args = p.parse_args(argv)
    if not args.run_key:
        raise ValueError("--run-key is required: evaluate reads runs/<run key>/train.json")
    cfg, lake = setup(args)
    train = read_json(lake.run_doc(args.run_key, "train"))

    import mlflow
    from mlflow import MlflowClient

    from flightdeck.evaluation import evaluate
    from flightdeck.registry import champion_version
    from flightdeck.sparkio import build_session, read_partitions

    name = train["model_name"]
    candidate_version = str(train["version"])
    client = MlflowClient()
    champion = champion_version(name, client=client)  # resolved once for this run
    spark = build_session("flightdeck-evaluate")
    holdout = read_partitions(spark, lake, "features", cfg.dataset.entity.name, train["holdout_partitions"]).persist()
    n_rows = holdout.count()

    candidate_metrics = evaluate(mlflow.spark.load_model(f"models:/{name}/{candidate_version}"), holdout, cfg)
    champion_doc: dict[str, Any] | None = None
    if champion is not None:
        if champion == candidate_version:
            log.info("candidate v%s is already the champion; comparing it with itself", candidate_version)
        champion_metrics = evaluate(mlflow.spark.load_model(f"models:/{name}/{champion}"), holdout, cfg)
        champion_doc = {"version": champion, "metrics": champion_metrics}
    holdout.unpersist()

    run_id = train["run_id"]
    for key, value in candidate_metrics.items():
        client.log_metric(run_id, f"eval_{key}", value)
    if champion_doc is not None:
        for key, value in champion_doc["metrics"].items():
            client.log_metric(run_id, f"champion_{key}", value)
        client.log_metric(
            run_id, "champion_roc_auc_delta", candidate_metrics["roc_auc"] - champion_doc["metrics"]["roc_auc"]
        )
    client.set_tag(run_id, "compared_against_champion", champion or "none")
    client.set_model_version_tag(name, candidate_version, "compared_against_champion", champion or "none")

    result = {
        "model_name": name,
        "candidate": {"version": candidate_version, "metrics": candidate_metrics},
        "champion": champion_doc,
        "holdout_partitions": train["holdout_partitions"],
        "n_rows": n_rows,
    }
    emit_result(result, lake, args.run_key, "evaluate")
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
