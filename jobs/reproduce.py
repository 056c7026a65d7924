"""Rebuild a registered model version from its manifest and check its holdout predictions are identical.

    spark-submit jobs/reproduce.py --model-version 3 --config include/config/flights.yaml --run-key K

Reads ``manifest.json`` of the version's training run (written by ``jobs/train.py``):
the configuration the model was trained with, its training, validation and holdout
partitions with their data fingerprints, the chosen parameters and seeds. Checks the
features partitions still hold the same data (fingerprints), retrains with the same
parameters, and scores the holdout with both the registered model and the rebuilt one.
The version gets tags ``reproduced`` (true/false) and ``reproduce_max_abs_diff``; the job
fails when the data changed or the predictions differ.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.core.errors import FlightdeckError
from flightdeck.core.jobargs import emit_result, parser, run, setup

log = logging.getLogger("flightdeck.jobs.reproduce")

ROW_ID = "_holdout_row"


class ReproductionError(FlightdeckError):
    """The model could not be rebuilt identically (the message says what differs)."""


def reproduce(spark: Any, cfg: Any, lake: Any, manifest: dict[str, Any], original: Any) -> dict[str, Any]:
    """Retrain from ``manifest`` on the lake's features; compare holdout predictions with ``original``."""
    import numpy as np
    from pyspark.sql import functions as F

    from flightdeck.core.config import PipelineConfig
    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.inference import collect_keyed_scores
    from flightdeck.model.training import check_task_slots, data_fingerprint, fit, partition_stats

    trained = PipelineConfig.model_validate(manifest["config"])
    trained = trained.model_copy(update={"lake": cfg.lake})  # the lake may have moved; the data must not
    check_task_slots(spark, trained.model.num_workers)
    train_keys = list(manifest["train_partitions"])
    holdout_keys = list(manifest["holdout_partitions"])
    df = read_partitions(spark, lake, "features", trained.dataset.entity.name, [*train_keys, *holdout_keys])
    stats = partition_stats(df, [*trained.features.model_inputs, trained.label.name])
    expected = manifest["data_fingerprint"]
    changed = [k for k in [*train_keys, *holdout_keys] if stats.get(k) != expected["partitions"].get(k)]
    if changed or data_fingerprint({k: stats[k] for k in train_keys if k in stats}) != expected["train"]:
        raise ReproductionError(
            f"features partitions {changed[:10]} no longer hold the data the model was trained on "
            "(rows or content hash differ from the manifest); rebuild them from the same bronze and code, "
            f"or train a new model. Expected {[expected['partitions'].get(k) for k in changed[:3]]}, "
            f"found {[stats.get(k) for k in changed[:3]]}"
        )
    train_df = df.filter(F.col("date").isin(train_keys)).persist()
    rebuilt = fit(
        train_df,
        trained,
        params=manifest["chosen_params"],
        validation_dates=manifest.get("validation_partitions") or [],
    )
    train_df.unpersist()
    holdout = df.filter(F.col("date").isin(holdout_keys)).withColumn(ROW_ID, F.monotonically_increasing_id()).persist()
    a = collect_keyed_scores(original, holdout, trained, ROW_ID)
    b = collect_keyed_scores(rebuilt, holdout, trained, ROW_ID)
    holdout.unpersist()
    same_rows = np.array_equal(a[ROW_ID].to_numpy(), b[ROW_ID].to_numpy())
    diff = np.abs(a["p"].to_numpy() - b["p"].to_numpy()) if same_rows else np.array([np.inf])
    return {
        "identical": bool(same_rows and np.array_equal(a["p"].to_numpy(), b["p"].to_numpy())),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "n_rows": len(a),
        "data_fingerprint_match": True,
    }


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("reproduce", __doc__ or "", partition=False)
    p.add_argument("--model-version", required=True, help="registered model version to rebuild (e.g. 3)")
    args = p.parse_args(argv)
    cfg, lake = setup(args)

    import mlflow
    from mlflow import MlflowClient

    from flightdeck.data.sparkio import build_session

    name = cfg.model.name
    version = str(args.model_version).strip().removeprefix("v")
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    if not mv.run_id:
        raise ReproductionError(f"model {name} v{version} has no training run; it was not trained by flightdeck")
    manifest = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/manifest.json")
    if "config" not in manifest or "chosen_params" not in manifest:
        raise ReproductionError(
            f"the manifest of {name} v{version} lacks the config or chosen parameters "
            "(trained before reproducible manifests); it cannot be rebuilt"
        )
    spark = build_session("flightdeck-reproduce", {"spark.task.cpus": str(manifest.get("threads_per_worker", 1))})
    original = mlflow.spark.load_model(f"models:/{name}/{version}")
    outcome = reproduce(spark, cfg, lake, manifest, original)
    client.set_model_version_tag(name, version, "reproduced", str(outcome["identical"]).lower())
    client.set_model_version_tag(name, version, "reproduce_max_abs_diff", repr(outcome["max_abs_diff"]))
    result = {"model_name": name, "version": version, "run_id": mv.run_id, **outcome}
    emit_result(result, lake, args.run_key, "reproduce")
    if not outcome["identical"]:
        raise ReproductionError(
            f"rebuilt {name} v{version} differs on the holdout: max |p - p'| = {outcome['max_abs_diff']:.3g} "
            f"over {outcome['n_rows']} rows (library versions then: {manifest.get('library_versions')})"
        )
    log.info("rebuilt %s v%s: identical predictions on %d holdout rows", name, version, outcome["n_rows"])
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
