"""Rebuild a model from its manifest and check that its holdout predictions are identical.

The manifest (:class:`~flightdeck.model.documents.Manifest`) holds the configuration the model
was trained with, its partitions with their data fingerprints, the chosen parameters and seeds.
The features partitions must still hold the same data; the model is retrained with the same
parameters and both models score the holdout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake
from flightdeck.model.documents import Manifest
from flightdeck.model.evaluation import ROW_ID

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class ReproductionError(FlightdeckError):
    """The model could not be rebuilt identically (the message says what differs)."""


def check_rebuildable(manifest: Manifest, name: str, version: str) -> None:
    """Refuse manifests without the config or the chosen parameters (models trained before reproducible manifests)."""
    if manifest.config is None or manifest.chosen_params is None:
        raise ReproductionError(
            f"the manifest of {name} v{version} lacks the config or chosen parameters "
            "(trained before reproducible manifests); it cannot be rebuilt"
        )


def _check_same_data(df: DataFrame, trained: PipelineConfig, manifest: Manifest) -> None:
    """Raise when the features partitions no longer hold the rows and content the manifest recorded."""
    from flightdeck.model.training import data_fingerprint, partition_stats

    train_keys, holdout_keys = manifest.train_partitions, manifest.holdout_partitions
    stats = partition_stats(df, [*trained.features.model_inputs, trained.label.name])
    expected = manifest.data_fingerprint
    changed = [k for k in [*train_keys, *holdout_keys] if stats.get(k) != expected.partitions.get(k)]
    if changed or data_fingerprint({k: stats[k] for k in train_keys if k in stats}) != expected.train:
        raise ReproductionError(
            f"features partitions {changed[:10]} no longer hold the data the model was trained on "
            "(rows or content hash differ from the manifest); rebuild them from the same bronze and code, "
            f"or train a new model. Expected {[expected.partitions.get(k) for k in changed[:3]]}, "
            f"found {[stats.get(k) for k in changed[:3]]}"
        )


def _with_arrived_labels(
    spark: SparkSession, trained: PipelineConfig, lake: Lake, df: DataFrame, manifest: Manifest
) -> DataFrame:
    """The rows labelled as at training time: outcomes arrived by the manifest's ``labels_known_by``.

    An outcome ingested since (a late or corrected one) is not seen, so the data fingerprint
    still matches when nothing the model was trained on changed.
    """
    import datetime as dt

    from flightdeck.data.labels import arrived_labels

    known_by = dt.date.fromisoformat(manifest.labels_known_by or manifest.train_end)
    first = dt.date.fromisoformat(manifest.train_start)
    labelled, _ = arrived_labels(spark, trained, lake, df, first, known_by)
    return labelled.persist()


def reproduce(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, manifest: Manifest, original: PipelineModel
) -> dict[str, Any]:
    """Retrain from ``manifest`` on the lake's features; compare holdout predictions with ``original``.

    Raises:
        ReproductionError: the features partitions changed since the model was trained.
    """
    import numpy as np
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.inference import collect_keyed_scores
    from flightdeck.model.training import check_task_slots, fit

    try:
        trained = PipelineConfig.model_validate(manifest.config)
    except ValidationError as err:
        raise ReproductionError(
            f"the manifest's config no longer validates against today's schema ({err.error_count()} errors; "
            f"first: {'.'.join(map(str, err.errors()[0]['loc']))}: {err.errors()[0]['msg']}); "
            "check out the code version the manifest names (git_commit) to reproduce this model"
        ) from err
    trained = trained.model_copy(update={"lake": cfg.lake})  # the lake may have moved; the data must not
    check_task_slots(spark, trained.model.num_workers)
    train_keys, holdout_keys = list(manifest.train_partitions), list(manifest.holdout_partitions)
    df = read_partitions(spark, lake, "features", trained.dataset.entity.name, [*train_keys, *holdout_keys])
    if trained.dataset.labels is not None:
        df = _with_arrived_labels(spark, trained, lake, df, manifest)
    _check_same_data(df, trained, manifest)
    train_df = df.filter(F.col("date").isin(train_keys)).persist()
    rebuilt = fit(train_df, trained, params=manifest.chosen_params, validation_dates=manifest.validation_partitions)
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


def check_identical(outcome: dict[str, Any], name: str, version: str, manifest: Manifest) -> None:
    """Raise when the rebuilt model's holdout predictions differ from the registered one's."""
    if not outcome["identical"]:
        raise ReproductionError(
            f"rebuilt {name} v{version} differs on the holdout: max |p - p'| = {outcome['max_abs_diff']:.3g} "
            f"over {outcome['n_rows']} rows (library versions then: {manifest.library_versions})"
        )
    log.info("rebuilt %s v%s: identical predictions on %d holdout rows", name, version, outcome["n_rows"])
