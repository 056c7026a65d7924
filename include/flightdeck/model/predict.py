"""The booster as a vectorised pandas UDF, for scoring on Spark workers.

pandas is imported at module level because Spark reads the UDF's type hints from this
module's globals; import this module only where Spark runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd


def probability_udf(booster: Any, n_features: int) -> Any:
    """A pandas UDF: struct of ``n_features`` doubles -> positive-class probability (double).

    The margins come from the booster's early-stopped tree range (``best_iteration``) when it
    has one, then the logistic function, exactly as xgboost.spark's own transform computes
    them. The booster is unpickled once per task and predicts with the task's CPUs as threads.
    """
    from pyspark.sql.functions import pandas_udf

    best = booster.attr("best_iteration")
    iteration_range = (0, int(best) + 1) if best is not None else (0, 0)

    @pandas_udf("double")  # type: ignore[call-overload]
    def probability(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
        import numpy as np
        from pyspark import TaskContext
        from scipy.special import expit

        context = TaskContext.get()
        booster.set_param({"nthread": context.cpus() if context is not None else 1})
        for features in batches:
            x = features.to_numpy(dtype=np.float64)
            if x.shape[1] != n_features:
                raise ValueError(f"the model expects {n_features} features, got {x.shape[1]}")
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

    best = booster.attr("best_iteration")
    iteration_range = (0, int(best) + 1) if best is not None else (0, 0)

    @pandas_udf("double")  # type: ignore[call-overload]
    def value(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
        import numpy as np
        from pyspark import TaskContext

        context = TaskContext.get()
        booster.set_param({"nthread": context.cpus() if context is not None else 1})
        for features in batches:
            x = features.to_numpy(dtype=np.float64)
            if x.shape[1] != n_features:
                raise ValueError(f"the model expects {n_features} features, got {x.shape[1]}")
            values = booster.inplace_predict(
                x, iteration_range=iteration_range, predict_type="value", missing=np.nan, validate_features=False
            )
            yield pd.Series(np.asarray(values).astype(np.float64))

    return value
