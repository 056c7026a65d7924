"""The reference profile: bins and proportions of a model's training data, the baseline of drift.

Built once per model version at training time (logged to MLflow as ``reference_profile.json``)
and read by the drift job, so both sides bin with the same rules (:mod:`flightdeck.monitoring.drift`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.monitoring.drift import NULL_BIN, OTHER, PREDICTION, count_bins

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class ProfileError(FlightdeckError):
    """No reference profile can be built from these rows (e.g. no rows at all)."""


TOP_CATEGORIES = 50


_QUANTILE_ACCURACY = 10_000


def numeric_edges(quantiles: Sequence[float | None], low: float | None, high: float | None) -> list[float]:
    """Bin edges from training quantiles, fenced by the observed range, with -inf/+inf ends.

    Besides the (deduplicated) quantile cut points, the training minimum and the value just
    above the training maximum are edges, so values outside the range seen in training land
    in bins that were empty at training time; a feature that was constant in training (or
    mostly one value) still shows drift when it moves.
    """
    cuts = {float(q) for q in quantiles if q is not None}
    if low is not None and high is not None:
        cuts |= {float(low), math.nextafter(float(high), math.inf)}
    return [-math.inf, *sorted(c for c in cuts if math.isfinite(c)), math.inf]


def reference_profile(train_df: DataFrame, cfg: PipelineConfig) -> dict[str, Any]:
    """Bins and proportions of the training data for every model input, in two Spark passes.

    Pass 1: approximate quantiles, min and max of every numeric feature in one aggregation
    (see :func:`numeric_edges`). Pass 2: every feature's bin counts and
    every category's count in one aggregation (:func:`flightdeck.monitoring.drift.count_bins`).
    The score distribution is added by :func:`prediction_profile`.
    """
    from pyspark.sql import functions as F

    bins = cfg.drift.bins
    probs = [i / bins for i in range(1, bins)]
    numeric = list(cfg.features.numeric)
    edges: dict[str, list[float]] = {}
    if numeric:
        aggs = []
        for i, name in enumerate(numeric):
            x = F.col(name).cast("double")
            clean = F.when(~F.isnan(x), x)
            aggs += [
                F.percentile_approx(clean, probs, _QUANTILE_ACCURACY).alias(f"q{i}"),
                F.min(clean).alias(f"lo{i}"),
                F.max(clean).alias(f"hi{i}"),
            ]
        row = train_df.agg(*aggs).collect()[0]
        for i, name in enumerate(numeric):
            edges[name] = numeric_edges(row[f"q{i}"] or [], row[f"lo{i}"], row[f"hi{i}"])
    total, counts = count_bins(train_df, edges, dict.fromkeys(cfg.features.categorical))
    if total == 0:
        raise ProfileError("the training data is empty; cannot build a reference profile")
    profile: dict[str, Any] = {"n_rows": total, "bins": bins, "numeric": {}, "categorical": {}, "prediction": None}
    for name, e in edges.items():
        c = counts.get(name, {})
        profile["numeric"][name] = {
            "edges": e,
            "proportions": [c.get(str(i), 0) / total for i in range(len(e) - 1)],
            "null": c.get(NULL_BIN, 0) / total,
        }
    for name in cfg.features.categorical:
        c = counts.get(name, {})
        top = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        kept = [k for k, _ in top]
        other = total - sum(v for _, v in top)
        profile["categorical"][name] = {
            "categories": [*kept, OTHER],
            "proportions": [*(c[k] / total for k in kept), other / total],
        }
    return profile


def prediction_profile(scores: Sequence[float], bins: int, column: str = PREDICTION) -> dict[str, Any]:
    """Quantile bins of the holdout's scores and the share per bin (pure, numpy).

    ``column`` names the score: ``probability`` (a binary model's positive-class probability)
    or ``prediction`` (a regression model's predicted value); drift bins that column of the
    day's predictions.
    """
    import numpy as np

    values = np.asarray(scores, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ProfileError(f"no predicted {column} values to profile")
    cuts = sorted({float(v) for v in np.quantile(values, [i / bins for i in range(1, bins)])})
    edges = [float("-inf"), *cuts, float("inf")]
    # searchsorted(side="right") is drift.bin_index's rule: edges[i] <= x < edges[i+1]
    counts = np.bincount(np.searchsorted(np.asarray(cuts), values, side="right"), minlength=len(edges) - 1)
    return {"column": column, "edges": edges, "proportions": [float(c) / values.size for c in counts]}
