"""The booster as a vectorised pandas UDF, for scoring on Spark workers.

pandas is imported at module level because Spark reads the UDF's type hints from this
module's globals; import this module only where Spark runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd


def tree_range(booster: Any) -> tuple[int, int]:
    """The early-stopped tree range (``best_iteration``), or every tree when there is none."""
    best = booster.attr("best_iteration")
    return (0, int(best) + 1) if best is not None else (0, 0)


def feature_arrays(booster: Any, batches: Iterator[pd.DataFrame], n_features: int) -> Iterator[Any]:
    """Inside a pandas UDF: the booster set to the task's CPUs, then each batch as a float64 array.

    Raises:
        ValueError: a batch does not have the model's number of features.
    """
    import numpy as np
    from pyspark import TaskContext

    context = TaskContext.get()
    booster.set_param({"nthread": context.cpus() if context is not None else 1})
    for features in batches:
        x = features.to_numpy(dtype=np.float64)
        if x.shape[1] != n_features:
            raise ValueError(f"the model expects {n_features} features, got {x.shape[1]}")
        yield x


def probability_udf(booster: Any, n_features: int) -> Any:
    """A pandas UDF: struct of ``n_features`` doubles -> positive-class probability (double).

    The margins come from the booster's early-stopped tree range (``best_iteration``) when it
    has one, then the logistic function, exactly as xgboost.spark's own transform computes
    them. The booster is unpickled once per task and predicts with the task's CPUs as threads.
    """
    from pyspark.sql.functions import pandas_udf

    iteration_range = tree_range(booster)

    @pandas_udf("double")  # type: ignore[call-overload]
    def probability(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
        import numpy as np
        from scipy.special import expit

        for x in feature_arrays(booster, batches, n_features):
            margins = booster.inplace_predict(
                x, iteration_range=iteration_range, predict_type="margin", missing=np.nan, validate_features=False
            )
            yield pd.Series(expit(margins).astype(np.float64))

    return probability


def value_udf(booster: Any, n_features: int) -> Any:
    """A pandas UDF: struct of ``n_features`` doubles -> the regressor's predicted value (double).

    The values of xgboost.spark's own regressor transform: the booster's ``value`` output
    (the objective's link applied to the margin) over its early-stopped tree range.
    """
    from pyspark.sql.functions import pandas_udf

    iteration_range = tree_range(booster)

    @pandas_udf("double")  # type: ignore[call-overload]
    def value(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
        import numpy as np

        for x in feature_arrays(booster, batches, n_features):
            values = booster.inplace_predict(
                x, iteration_range=iteration_range, predict_type="value", missing=np.nan, validate_features=False
            )
            yield pd.Series(np.asarray(values).astype(np.float64))

    return value


EXPLAINED_SCHEMA = "score double, features array<string>, contributions array<double>, base double"
"""The struct :func:`explained_udf` returns: the score and the row's top-k explanation."""


def contributions(booster: Any, x: Any, iteration_range: tuple[int, int]) -> Any:
    """XGBoost's own SHAP values (``pred_contribs``) of the rows ``x``: one column per feature, then the
    base value (the bias) last; each row's sum is the booster's margin over ``iteration_range``."""
    import numpy as np
    import xgboost as xgb

    matrix = xgb.DMatrix(np.asarray(x, dtype=np.float64), missing=np.nan)
    return booster.predict(matrix, pred_contribs=True, iteration_range=iteration_range, validate_features=False)


def top_contributions(contribs: Any, names: list[str], k: int) -> tuple[list[list[str]], list[list[float]], Any]:
    """Each row's ``k`` largest features by |contribution| (largest first, ties by feature order): their
    names, their contributions, and every row's base value."""
    import numpy as np

    phi = np.asarray(contribs)[:, :-1]
    base = np.asarray(contribs)[:, -1].astype(np.float64)
    k = min(k, phi.shape[1])
    order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(phi, order, axis=1).astype(np.float64)
    return [[names[j] for j in row] for row in order.tolist()], picked.tolist(), base


def explained_udf(booster: Any, names: list[str], top_k: int, output: str) -> Any:
    """A pandas UDF: struct of the features -> struct ``score`` (as :func:`probability_udf` for
    ``output`` ``probability``, :func:`value_udf` for ``value``) and the row's top-``top_k`` SHAP
    contributions (``features``, ``contributions``) with the ``base`` value, from ``pred_contribs``
    over the same tree range: ``base`` + every feature's contribution = the margin."""
    from pyspark.sql.functions import pandas_udf

    iteration_range = tree_range(booster)
    n_features = len(names)

    @pandas_udf(EXPLAINED_SCHEMA)  # type: ignore[call-overload]
    def explained(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import numpy as np
        from scipy.special import expit

        for x in feature_arrays(booster, batches, n_features):
            kind = "margin" if output == "probability" else "value"
            raw = booster.inplace_predict(
                x, iteration_range=iteration_range, predict_type=kind, missing=np.nan, validate_features=False
            )
            score = expit(raw) if output == "probability" else np.asarray(raw)
            top_names, top_values, base = top_contributions(contributions(booster, x, iteration_range), names, top_k)
            yield pd.DataFrame(
                {
                    "score": np.asarray(score).astype(np.float64),
                    "features": top_names,
                    "contributions": top_values,
                    "base": base,
                }
            )

    return explained
