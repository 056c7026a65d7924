"""Drift: PSI and chi-square tests on binned counts (one Spark pass), the report and its table rows.

A *reference profile* (built at training time, see :func:`flightdeck.monitoring.profile.reference_profile`)
holds, for every model input, the bins of the training data and the share of rows per bin;
and the holdout's score distribution. Monitoring bins a new partition the same way
(:func:`profile_counts`, one Spark pass) and :func:`drift_report` judges each feature with
the statistic its sample size allows: a chi-square test on the binned counts
(:func:`chi_square_test`, p-values corrected over the features) on a small day, PSI
(:func:`psi`) on a large one (``drift.large_sample_rows``). Labelled days are judged by
:func:`performance_report` (a bootstrap interval of the AUC drop and log-loss rise), or for a
regression model by :func:`regression_performance_report` (a bootstrap interval of the
relative RMSE rise). The
pure policy :func:`flightdeck.monitoring.retrain.should_retrain` turns a report plus the
history of retrain requests into a decision with a reason.

Profile layout (JSON, Python's ``Infinity`` for the open ends)::

    {"n_rows": int,
     "numeric": {f: {"edges": [-inf, c1, ..., ck, inf], "proportions": [k+1 floats], "null": float}},
     "categorical": {f: {"categories": [..., "__other__"], "proportions": [...]}},   # nulls are "__null__"
     "prediction": {"column": "probability" | "prediction", "edges": [...], "proportions": [...]} | None}

The score distribution is a binary model's ``probability`` or a regression model's
``prediction`` (its predicted value), named by ``column``.

Bin i of a numeric feature is ``edges[i] <= x < edges[i+1]`` (the last bin includes +inf);
null and NaN form their own bin. Proportions times the row count give back the counts
the tests need (the reference's ``n_rows``; the holdout's size is not kept, so the score
distribution is tested for goodness of fit against the reference proportions).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import Drift
from flightdeck.core.lake import parse_date

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

NULL_BIN = "__null__"
OTHER = "__other__"
PREDICTION = "probability"
_PREDICTION_KEY = "__prediction__"
_ROWS_KEY = "__rows__"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient_rows"
STATUS_NO_LABELS = "no_labels"
STATUS_ONE_CLASS = "one_class"
STATUS_NO_REFERENCE = "no_reference"
STATUS_FEW_PER_CLASS = "insufficient_class_labels"
TASK_REGRESSION = "regression"
STAT_PSI = "psi"
STAT_CHI2 = "chi2"
MIN_EXPECTED = 5.0  # the chi-square approximation's rule (Cochran): every expected count >= 5


# --- pure ---------------------------------------------------------------------------------


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = 1e-4) -> float:
    """Population stability index between two binned distributions (same bins, proportions).

    ``sum((a - e) * ln(a / e))`` with both sides floored at ``eps`` so empty bins stay finite.
    Biased upwards on small samples (about ``(bins - 1) / rows`` with no drift at all, more
    with empty bins), which is why :func:`drift_report` uses it only on large days.
    """
    if len(expected) != len(actual):
        raise ValueError(f"psi needs the same bins on both sides; got {len(expected)} and {len(actual)}")
    total = 0.0
    for e_raw, a_raw in zip(expected, actual, strict=True):
        e = max(float(e_raw), eps)
        a = max(float(a_raw), eps)
        total += (a - e) * math.log(a / e)
    return total


def bin_index(value: float | None, edges: Sequence[float]) -> int | None:
    """The bin of ``value`` under ``edges`` (None for null/NaN); the same rule as the Spark side."""
    if value is None or math.isnan(value):
        return None
    return bisect.bisect_right(list(edges[1:-1]), value)


def _proportions(counts: Sequence[float], total: float) -> list[float]:
    return [float(c) / total if total else 0.0 for c in counts]


def _merge_ordered(bins: Sequence[int], expected: Sequence[float], min_expected: float) -> list[list[int]]:
    groups: list[list[int]] = []
    current: list[int] = []
    for j in bins:
        current.append(j)
        if sum(expected[i] for i in current) >= min_expected:
            groups.append(current)
            current = []
    if current and groups:
        groups[-1].extend(current)
    elif current:
        groups.append(current)
    return groups


def _merge_unordered(bins: Sequence[int], expected: Sequence[float], min_expected: float) -> list[list[int]]:
    ranked = sorted(bins, key=lambda j: -expected[j])
    groups = [[j] for j in ranked if expected[j] >= min_expected]
    pool = [j for j in ranked if expected[j] < min_expected]
    if pool and groups and sum(expected[j] for j in pool) < min_expected:
        groups[-1].extend(pool)
    elif pool:
        groups.append(pool)
    return groups


def merge_sparse_bins(
    expected: Sequence[float],
    occupied: Sequence[bool],
    *,
    ordered: bool,
    free: Sequence[int] = (),
    min_expected: float = MIN_EXPECTED,
) -> list[list[int]]:
    """Groups of bins whose expected counts each reach ``min_expected`` (the chi-square rule).

    ``expected[j]`` is the smallest expected count of bin j over the table's rows; bins with
    no rows on either side (``occupied`` False) are left out. Ordered bins (numeric ranges)
    are merged with their neighbours, left to right, a short last group joining the one
    before it; unordered bins (categories) keep the ones that reach the minimum alone and
    pool the rest, the pool joining the smallest kept bin when it is still short. Bins in
    ``free`` (the null bin of a numeric) stand alone when they reach the minimum, else join
    the group with the smallest expected count. One group (or none) means no test is possible.
    """
    free_set = set(free)
    bins = [j for j in range(len(expected)) if occupied[j] and j not in free_set]
    merge = _merge_ordered if ordered else _merge_unordered
    groups = merge(bins, expected, min_expected)
    for j in free:
        if not occupied[j]:
            continue
        if expected[j] >= min_expected or not groups:
            groups.append([j])
        else:
            min(groups, key=lambda g: sum(expected[i] for i in g)).append(j)
    return groups


def chi_square_test(
    expected: Sequence[float],
    actual: Sequence[float],
    n_current: int,
    n_reference: int | None = None,
    *,
    ordered: bool = False,
    free: Sequence[int] = (),
) -> dict[str, Any]:
    """Chi-square test that the current counts come from the reference distribution.

    ``expected`` and ``actual`` are proportions over the same bins, turned back into counts
    with ``n_reference`` and ``n_current`` rows. With ``n_reference`` it is the test of
    homogeneity of the 2 x bins table (both sides are samples); without it (e.g. the score
    distribution, whose holdout size the profile does not keep) a goodness-of-fit test
    against the reference proportions. Sparse bins are merged first (:func:`merge_sparse_bins`).

    Returns ``{"statistic": "chi2", "value", "p_value", "dof", "bins"}``; ``value`` and
    ``p_value`` are None when the merged table has fewer than two bins (too few rows).
    """
    import numpy as np
    from scipy import stats

    if len(expected) != len(actual):
        raise ValueError(f"chi_square_test needs the same bins on both sides; got {len(expected)} and {len(actual)}")
    cur = np.rint(np.asarray(actual, dtype=float) * n_current)
    ref_p = np.clip(np.asarray(expected, dtype=float), 0.0, None)
    if n_reference:
        ref = np.rint(ref_p * n_reference)
        pooled = ref + cur
        total = pooled.sum()
        smallest = min(ref.sum(), cur.sum())
        exp_small = smallest * pooled / total if total else np.zeros_like(pooled)
        occupied = pooled > 0
    else:
        exp_small = cur.sum() * ref_p / ref_p.sum() if ref_p.sum() else np.zeros_like(ref_p)
        occupied = (ref_p > 0) | (cur > 0)
    groups = merge_sparse_bins(exp_small.tolist(), occupied.tolist(), ordered=ordered, free=free)
    out: dict[str, Any] = {"statistic": STAT_CHI2, "value": None, "p_value": None, "dof": 0, "bins": len(groups)}
    if len(groups) < 2:
        return out
    cur_g = np.array([cur[g].sum() for g in groups])
    if n_reference:
        ref_g = np.array([ref[g].sum() for g in groups])
        statistic, p_value, dof, _ = stats.chi2_contingency(np.vstack([ref_g, cur_g]), correction=False)
    else:
        exp_g = np.array([ref_p[g].sum() for g in groups])
        statistic, p_value = stats.chisquare(cur_g, exp_g / exp_g.sum() * cur_g.sum())
        dof = len(groups) - 1
    return {**out, "value": float(statistic), "p_value": float(p_value), "dof": int(dof)}


def adjust_p_values(p_values: Mapping[str, float], method: str) -> dict[str, float]:
    """P-values corrected for testing several features at once (family-wise error control).

    ``holm`` (step-down: the i-th smallest of m is multiplied by m - i + 1, kept monotone),
    ``bonferroni`` (each multiplied by m), or ``none``; capped at 1.
    """
    m = len(p_values)
    if method == "none" or m == 0:
        return dict(p_values)
    if method == "bonferroni":
        return {n: min(1.0, p * m) for n, p in p_values.items()}
    if method != "holm":
        raise ValueError(f"unknown p-value correction {method!r}; expected holm, bonferroni or none")
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[name] = running
    return adjusted


def uses_test(n_rows: int, policy: Drift) -> bool:
    """Whether a sample of ``n_rows`` is judged by the chi-square test (else by PSI)."""
    return n_rows < policy.large_sample_rows


def _feature_bins(kind: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    expected = list(ref["proportions"])
    actual = list(cur["proportions"])
    if kind == "numeric":
        expected.append(ref.get("null", 0.0))
        actual.append(cur.get("null", 0.0))
    return expected, actual


def drift_report(
    reference_profile: Mapping[str, Any], current_counts: Mapping[str, Any], policy: Drift, n_rows: int
) -> dict[str, Any]:
    """Per-feature drift against the reference, the drifted features and their share.

    The statistic follows the day's size (``policy.large_sample_rows``): a small day is judged
    by a chi-square test per feature (:func:`chi_square_test`, homogeneity against the
    reference's ``n_rows`` training rows), drifted when the p-value corrected over the judged
    features (``policy.p_value_correction``) is below ``policy.p_value``; a large day by PSI
    against ``policy.psi_threshold``. The score distribution likewise, on its own row count
    (``n_predictions``), with one uncorrected test. PSI is always reported (``psi``);
    ``statistics`` says per feature which statistic decided, its value, p-value and threshold.

    Features in ``policy.exclude`` are measured but never count as drifted nor in the share.
    Below ``policy.min_rows`` rows the statistics are still reported (for information) but the
    status is ``insufficient_rows`` and no feature counts as drifted.
    """
    enough = n_rows >= policy.min_rows
    by_test = uses_test(n_rows, policy)
    n_reference = reference_profile.get("n_rows")
    features: dict[str, dict[str, Any]] = {}
    per_feature: dict[str, dict[str, Any]] = {}
    for kind in ("numeric", "categorical"):
        for name, ref in reference_profile.get(kind, {}).items():
            cur = current_counts.get(kind, {}).get(name)
            if cur is None:
                features[name] = {"psi": None, "drifted": False, "missing": True}
                per_feature[name] = {"statistic": None, "value": None, "p_value": None, "threshold": None}
                continue
            expected, actual = _feature_bins(kind, ref, cur)
            value = psi(expected, actual)
            features[name] = {"psi": value, "drifted": False, "excluded": name in policy.exclude}
            if by_test:
                null_bin = [len(expected) - 1] if kind == "numeric" else []
                test = chi_square_test(expected, actual, n_rows, n_reference, ordered=kind == "numeric", free=null_bin)
                per_feature[name] = {**test, "threshold": policy.p_value}
            else:
                per_feature[name] = {
                    "statistic": STAT_PSI,
                    "value": value,
                    "p_value": None,
                    "threshold": policy.psi_threshold,
                }
    judged = {n for n, f in features.items() if f["psi"] is not None and not f["excluded"]}
    if by_test:
        raw = {n: per_feature[n]["p_value"] for n in judged if per_feature[n]["p_value"] is not None}
        adjusted = adjust_p_values(raw, policy.p_value_correction)
        for name, s in per_feature.items():
            if s["statistic"] == STAT_CHI2:
                s["p_value_adjusted"] = adjusted.get(name)
                s["correction"] = policy.p_value_correction if name in judged else "none"
        for name in judged:
            p_adj = adjusted.get(name)
            features[name]["drifted"] = bool(enough and p_adj is not None and p_adj < policy.p_value)
    else:
        for name in judged:
            features[name]["drifted"] = bool(enough and features[name]["psi"] >= policy.psi_threshold)
    for name, f in features.items():
        per_feature[name]["drifted"] = f["drifted"]

    def rank(name: str) -> tuple[float, float]:
        p_adj = per_feature[name].get("p_value_adjusted")
        return (p_adj if by_test and p_adj is not None else 0.0, -features[name]["psi"])

    drifted = sorted((n for n, f in features.items() if f["drifted"]), key=rank)
    share = len(drifted) / len(judged) if judged else 0.0
    prediction_psi, prediction = _prediction_drift(reference_profile, current_counts, policy, n_rows, enough)
    return {
        "status": STATUS_OK if enough else STATUS_INSUFFICIENT,
        "n_rows": int(n_rows),
        "min_rows": policy.min_rows,
        "psi_threshold": policy.psi_threshold,
        "psi": {n: f["psi"] for n, f in features.items()},
        "feature_statistic": STAT_CHI2 if by_test else STAT_PSI,
        "large_sample_rows": policy.large_sample_rows,
        "p_value_threshold": policy.p_value,
        "p_value_correction": policy.p_value_correction,
        "statistics": per_feature,
        "missing": sorted(n for n, f in features.items() if f.get("missing")),
        "excluded": sorted(n for n, f in features.items() if f.get("excluded")),
        "prediction_psi": prediction_psi,
        "prediction_column": (reference_profile.get("prediction") or {}).get("column", PREDICTION),
        "prediction_threshold": prediction_threshold(policy),
        "prediction_statistic": prediction,
        "prediction_drifted": bool(prediction and prediction["drifted"]),
        "drifted": drifted,
        "n_features": len(judged),
        "drifted_share": share,
    }


def _prediction_drift(
    reference_profile: Mapping[str, Any], current_counts: Mapping[str, Any], policy: Drift, n_rows: int, enough: bool
) -> tuple[float | None, dict[str, Any] | None]:
    """The score distribution's PSI and the statistic that judged it (on the prediction count)."""
    ref_pred = reference_profile.get("prediction")
    cur_pred = current_counts.get("prediction")
    if not (ref_pred and cur_pred):
        return None, None
    value = psi(ref_pred["proportions"], cur_pred["proportions"])
    n_pred = int(current_counts.get("n_predictions") or n_rows)
    if uses_test(n_pred, policy):
        test = chi_square_test(
            ref_pred["proportions"], cur_pred["proportions"], n_pred, ref_pred.get("n_rows"), ordered=True
        )
        p_value = test["p_value"]
        drifted = enough and p_value is not None and p_value < policy.p_value
        return value, {**test, "threshold": policy.p_value, "n_rows": n_pred, "drifted": bool(drifted)}
    limit = prediction_threshold(policy)
    psi_verdict = {"statistic": STAT_PSI, "value": value, "p_value": None, "threshold": limit, "n_rows": n_pred}
    return value, {**psi_verdict, "drifted": bool(enough and value >= limit)}


# --- performance once labels arrive ---------------------------------------------------------


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U on average ranks, so ties count one half); None with one class."""
    import numpy as np
    from scipy import stats

    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _row_losses(labels: Sequence[int] | Any, scores: Sequence[float] | Any, eps: float) -> Any:
    import numpy as np

    y = np.asarray(labels, dtype=bool)
    p = np.clip(np.asarray(scores, dtype=float), eps, 1 - eps)
    return -np.where(y, np.log(p), np.log1p(-p))


def log_loss(labels: Sequence[int], scores: Sequence[float], eps: float = 1e-15) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""
    if len(labels) == 0:
        raise ValueError("log_loss needs at least one labelled row")
    return float(_row_losses(labels, scores, eps).mean())


_BOOTSTRAP_CELLS = 2_000_000  # resamples x rows held in memory at once (16 MB of float64)


def bootstrap_metrics(
    labels: Sequence[int], scores: Sequence[float], samples: int, seed: int
) -> tuple[list[float], list[float]]:
    """AUC and log loss of ``samples`` bootstrap resamples of the labelled rows (seeded).

    Stratified by class, as pROC's ``ci.auc`` does: positives and negatives are resampled
    separately, so every resample has the day's class counts and a defined AUC. Vectorised:
    a resample is a row of multiplicities over the rows sorted by score; its AUC is the
    weighted Mann-Whitney count (each positive against the negatives scored below it, ties
    one half), its log loss the weighted mean of the rows' losses. Needs both classes.
    """
    import numpy as np

    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="mergesort")
    y, s = y[order], s[order]
    losses = _row_losses(y, s, 1e-15)
    n = y.size
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("bootstrap_metrics needs labels of both classes")
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each group of tied scores
    rng = np.random.default_rng(seed)

    def multiplicities(rows: Any, k: int) -> Any:
        picks = rng.integers(0, rows.size, size=(k, rows.size)) + rows.size * np.arange(k)[:, None]
        return np.bincount(picks.ravel(), minlength=k * rows.size).reshape(k, rows.size)

    aucs: list[float] = []
    lls: list[float] = []
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for first in range(0, samples, chunk):
        k = min(chunk, samples - first)
        w_pos = np.zeros((k, n))
        w_neg = np.zeros((k, n))
        w_pos[:, pos] = multiplicities(pos, k)
        w_neg[:, neg] = multiplicities(neg, k)
        p_tie = np.add.reduceat(w_pos, starts, axis=1)
        n_tie = np.add.reduceat(w_neg, starts, axis=1)
        below = np.cumsum(n_tie, axis=1) - n_tie
        aucs += ((p_tie * (below + 0.5 * n_tie)).sum(axis=1) / (pos.size * neg.size)).tolist()
        lls += (((w_pos + w_neg) @ losses) / n).tolist()
    return aucs, lls


def _interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    import numpy as np

    tail = (1 - confidence) / 2
    lo, hi = np.quantile(np.asarray(values, dtype=float), [tail, 1 - tail])
    return float(lo), float(hi)


def performance_report(
    labels: Sequence[int],
    scores: Sequence[float],
    reference: Mapping[str, float] | None,
    policy: Drift,
    *,
    data_date: dt.date | str | None = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """AUC and log loss of one labelled day vs the holdout metrics of the model that scored it.

    ``reference`` holds the holdout ``roc_auc`` and ``log_loss`` of that model version. The
    day is judged (status ``ok``) only with at least ``policy.min_labeled_rows`` rows, at
    least ``policy.min_labels_per_class`` of each class and a reference; otherwise the metrics
    are reported (when computable), ``status`` and ``reason`` say why it was not judged, and
    nothing counts as a breach. A judged day breaches only when the whole bootstrap interval
    (:func:`bootstrap_metrics`, ``policy.bootstrap_confidence``) of the AUC drop (log-loss
    rise) is at or above ``policy.max_auc_drop`` (``max_log_loss_rise``); with
    ``bootstrap_samples`` 0 the point estimate decides. The holdout metric is taken as fixed.
    """
    n = len(labels)
    n_pos = int(sum(1 for y in labels if y))
    out: dict[str, Any] = {
        "date": None if data_date is None else parse_date(data_date).isoformat(),
        "model_version": model_version,
        "n_rows": n,
        "n_positive": n_pos,
        "n_negative": n - n_pos,
        "min_rows": policy.min_labeled_rows,
        "min_labels_per_class": policy.min_labels_per_class,
        "roc_auc": None,
        "log_loss": None,
        "reference": dict(reference or {}),
        "auc_drop": None,
        "log_loss_rise": None,
        "auc_drop_interval": None,
        "log_loss_rise_interval": None,
        "confidence": policy.bootstrap_confidence,
        "bootstrap_samples": policy.bootstrap_samples,
        "max_auc_drop": policy.max_auc_drop,
        "max_log_loss_rise": policy.max_log_loss_rise,
        "auc_breach": False,
        "log_loss_breach": False,
    }
    if n == 0:
        return {**out, "status": STATUS_NO_LABELS, "reason": "no labelled rows"}
    auc = roc_auc(labels, scores)
    out["roc_auc"] = auc
    out["log_loss"] = log_loss(labels, scores)
    ref_auc = (reference or {}).get("roc_auc")
    ref_ll = (reference or {}).get("log_loss")
    if auc is not None and ref_auc is not None:
        out["auc_drop"] = float(ref_auc) - auc
    if ref_ll is not None:
        out["log_loss_rise"] = out["log_loss"] - float(ref_ll)
    fewest = min(n_pos, n - n_pos)
    if n < policy.min_labeled_rows:
        reason = f"{n} labelled rows < minimum {policy.min_labeled_rows}"
        return {**out, "status": STATUS_INSUFFICIENT, "reason": reason}
    if auc is None:
        return {**out, "status": STATUS_ONE_CLASS, "reason": f"all {n} labelled rows have the same label"}
    if fewest < policy.min_labels_per_class:
        reason = f"{n_pos} positive and {n - n_pos} negative labels; need {policy.min_labels_per_class} of each"
        return {**out, "status": STATUS_FEW_PER_CLASS, "reason": reason}
    if not reference:
        return {**out, "status": STATUS_NO_REFERENCE, "reason": f"no holdout metrics for model v{model_version}"}
    auc_low = ll_low = None
    if policy.bootstrap_samples > 0:
        aucs, lls = bootstrap_metrics(labels, scores, policy.bootstrap_samples, policy.bootstrap_seed)
        if ref_auc is not None:
            lo, hi = _interval(aucs, policy.bootstrap_confidence)
            out["auc_drop_interval"] = [float(ref_auc) - hi, float(ref_auc) - lo]
            auc_low = out["auc_drop_interval"][0]
        if ref_ll is not None:
            lo, hi = _interval(lls, policy.bootstrap_confidence)
            out["log_loss_rise_interval"] = [lo - float(ref_ll), hi - float(ref_ll)]
            ll_low = out["log_loss_rise_interval"][0]
    else:
        auc_low, ll_low = out["auc_drop"], out["log_loss_rise"]
    out["auc_breach"] = auc_low is not None and auc_low >= policy.max_auc_drop
    out["log_loss_breach"] = ll_low is not None and ll_low >= policy.max_log_loss_rise
    return {**out, "status": STATUS_OK, "reason": ""}


def bootstrap_regression_metrics(
    labels: Sequence[float], predictions: Sequence[float], samples: int, seed: int
) -> tuple[list[float], list[float]]:
    """RMSE and MAE of ``samples`` bootstrap resamples of the labelled rows (seeded).

    Plain resamples (no classes to stratify by), vectorised as :func:`bootstrap_metrics` is: a
    resample is a row of multiplicities over the rows, its MSE and MAE the weighted means of
    the rows' squared and absolute errors.
    """
    import numpy as np

    error = np.asarray(predictions, dtype=float) - np.asarray(labels, dtype=float)
    n = error.size
    if n == 0:
        raise ValueError("bootstrap_regression_metrics needs at least one labelled row")
    squared, absolute = error**2, np.abs(error)
    rng = np.random.default_rng(seed)
    rmses: list[float] = []
    maes: list[float] = []
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for first in range(0, samples, chunk):
        k = min(chunk, samples - first)
        picks = rng.integers(0, n, size=(k, n)) + n * np.arange(k)[:, None]
        weights = np.bincount(picks.ravel(), minlength=k * n).reshape(k, n)
        rmses += np.sqrt((weights @ squared) / n).tolist()
        maes += ((weights @ absolute) / n).tolist()
    return rmses, maes


def regression_performance_report(
    labels: Sequence[float],
    predictions: Sequence[float],
    reference: Mapping[str, float] | None,
    policy: Drift,
    *,
    data_date: dt.date | str | None = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """RMSE and MAE of one labelled day vs the holdout RMSE and MAE of the model that scored it.

    ``reference`` holds the holdout ``rmse`` (and ``mae``) of that model version. The day is
    judged (status ``ok``) only with at least ``policy.min_labeled_rows`` rows and a reference
    RMSE; otherwise the metrics are reported, ``status`` and ``reason`` say why, and nothing
    counts as a breach. Rises are relative (RMSE / holdout RMSE - 1). A judged day breaches
    only when the whole bootstrap interval (:func:`bootstrap_regression_metrics`,
    ``policy.bootstrap_confidence``) of the RMSE rise is at or above ``policy.max_rmse_rise``;
    with ``bootstrap_samples`` 0 the point estimate decides. MAE is reported, never judged.
    The holdout metric is taken as fixed.
    """
    import numpy as np

    n = len(labels)
    out: dict[str, Any] = {
        "task": TASK_REGRESSION,
        "date": None if data_date is None else parse_date(data_date).isoformat(),
        "model_version": model_version,
        "n_rows": n,
        "min_rows": policy.min_labeled_rows,
        "rmse": None,
        "mae": None,
        "reference": dict(reference or {}),
        "rmse_rise": None,
        "mae_rise": None,
        "rmse_rise_interval": None,
        "mae_rise_interval": None,
        "confidence": policy.bootstrap_confidence,
        "bootstrap_samples": policy.bootstrap_samples,
        "max_rmse_rise": policy.max_rmse_rise,
        "rmse_breach": False,
        "mae_breach": False,
    }
    if n == 0:
        return {**out, "status": STATUS_NO_LABELS, "reason": "no labelled rows"}
    error = np.asarray(predictions, dtype=float) - np.asarray(labels, dtype=float)
    out["rmse"] = float(np.sqrt(np.mean(error**2)))
    out["mae"] = float(np.mean(np.abs(error)))
    ref_rmse = (reference or {}).get("rmse")
    ref_mae = (reference or {}).get("mae")
    if ref_rmse:
        out["rmse_rise"] = out["rmse"] / float(ref_rmse) - 1
    if ref_mae:
        out["mae_rise"] = out["mae"] / float(ref_mae) - 1
    if n < policy.min_labeled_rows:
        reason = f"{n} labelled rows < minimum {policy.min_labeled_rows}"
        return {**out, "status": STATUS_INSUFFICIENT, "reason": reason}
    if not ref_rmse:
        return {**out, "status": STATUS_NO_REFERENCE, "reason": f"no holdout RMSE for model v{model_version}"}
    rmse_low = out["rmse_rise"]
    if policy.bootstrap_samples > 0:
        rmses, maes = bootstrap_regression_metrics(labels, predictions, policy.bootstrap_samples, policy.bootstrap_seed)
        lo, hi = _interval(rmses, policy.bootstrap_confidence)
        out["rmse_rise_interval"] = [lo / float(ref_rmse) - 1, hi / float(ref_rmse) - 1]
        rmse_low = out["rmse_rise_interval"][0]
        if ref_mae:
            lo, hi = _interval(maes, policy.bootstrap_confidence)
            out["mae_rise_interval"] = [lo / float(ref_mae) - 1, hi / float(ref_mae) - 1]
    out["rmse_breach"] = rmse_low is not None and rmse_low >= policy.max_rmse_rise
    return {**out, "status": STATUS_OK, "reason": ""}


# --- thresholds ---------------------------------------------------------------------------------


def prediction_threshold(policy: Drift) -> float:
    """The prediction PSI threshold: its own when configured, else the feature threshold."""
    return policy.prediction_psi_threshold if policy.prediction_psi_threshold is not None else policy.psi_threshold


# --- Spark: binned counts in one pass -------------------------------------------------------


def _bin_counter(
    numeric: Mapping[str, Sequence[float]],
    categorical: Mapping[str, Sequence[str] | None],
    column_names: Mapping[str, str],
    count_rows: bool,
) -> Any:
    """A ``mapInPandas`` function: each Arrow batch's bin counts as ``(feature, bin, n)`` rows.

    Numeric values are binned with ``numpy.searchsorted`` on the inner edges (bin i is
    ``edges[i] <= x < edges[i+1]``; null and NaN go to NULL_BIN); known categorical levels
    are counted as themselves or OTHER; levels of None count every value. Feature keys
    are the names in ``column_names`` (feature -> key), so the score can be counted under
    its own key.
    """
    cuts = {name: [float(c) for c in edges[1:-1]] for name, edges in numeric.items()}
    bins = {name: len(edges) - 1 for name, edges in numeric.items()}
    levels = {name: None if lv is None else [v for v in lv if v != OTHER] for name, lv in categorical.items()}
    null_bin, other, rows_key = NULL_BIN, OTHER, _ROWS_KEY

    def count(batches: Any) -> Any:
        import numpy as np
        import pandas as pd

        def pairs(key: str, counts: Mapping[Any, int]) -> list[tuple[str, str, int]]:
            return [(key, str(label), int(n)) for label, n in counts.items() if n]

        for pdf in batches:
            out: list[tuple[str, str, int]] = []
            if count_rows:
                out += pairs(rows_key, {"n": len(pdf)})
            for name, inner in cuts.items():
                x = pdf[name].to_numpy(dtype="float64", na_value=np.nan)
                missing = np.isnan(x)
                per_bin = np.bincount(np.searchsorted(inner, x[~missing], side="right"), minlength=bins[name])
                out += pairs(column_names[name], {null_bin: int(missing.sum()), **dict(enumerate(per_bin))})
            for name, known in levels.items():
                value = pdf[name].astype("object").where(pdf[name].notna(), null_bin)
                if known is not None:
                    value = value.where(value.isin(known), other)
                out += pairs(column_names[name], value.value_counts(sort=False).to_dict())
            yield pd.DataFrame(out, columns=["f", "b", "n"]).astype({"n": "int64"})

    return count


def count_bins(
    df: DataFrame,
    numeric: Mapping[str, Sequence[float]],
    categorical: Mapping[str, Sequence[str] | None],
    prediction_edges: Sequence[float] | None = None,
    predictions: DataFrame | None = None,
    score_column: str = PREDICTION,
) -> tuple[int, dict[str, dict[str, int]]]:
    """Row count and per-feature bin counts for every feature at once (one Spark job, one pass).

    Every Arrow batch of the rows is binned and counted with numpy inside the scan
    (``mapInPandas``), and only the small ``(feature, bin, count)`` tables are summed:
    about three times faster than exploding each row into one record per feature and
    grouping those (see the README's Performance section). Categorical levels of None mean
    "count every value" (used to find the top categories at training time). The score
    distribution is binned from ``df``'s ``score_column`` (``probability``; a regression model's
    ``prediction``), or from ``predictions`` (another frame with that column, e.g. the day's
    predictions) in the same job.
    """
    from pyspark.sql import functions as F

    schema = "f string, b string, n long"
    score_edges = {score_column: prediction_edges} if prediction_edges is not None else {}
    own_scores = score_edges if predictions is None else {}
    features = df.select(
        *[F.col(n).cast("double").alias(n) for n in [*numeric, *own_scores]],
        *[F.col(n).cast("string").alias(n) for n in categorical],
    )
    names = {**{n: n for n in [*numeric, *categorical]}, score_column: _PREDICTION_KEY}
    counted = features.mapInPandas(_bin_counter({**numeric, **own_scores}, categorical, names, True), schema)
    if score_edges and predictions is not None:
        scores = predictions.select(F.col(score_column).cast("double").alias(score_column))
        counted = counted.unionByName(scores.mapInPandas(_bin_counter(score_edges, {}, names, False), schema))
    counts: dict[str, dict[str, int]] = {}
    for row in counted.groupBy("f", "b").agg(F.sum("n").alias("n")).collect():
        counts.setdefault(row["f"], {})[row["b"]] = int(row["n"])
    total = sum(counts.pop(_ROWS_KEY, {}).values())
    return total, counts


def _numeric_summary(bins: Mapping[str, int], edges: Sequence[float], total: int) -> dict[str, Any]:
    per_bin = [bins.get(str(i), 0) for i in range(len(edges) - 1)]
    return {"proportions": _proportions(per_bin, total), "null": _proportions([bins.get(NULL_BIN, 0)], total)[0]}


def profile_counts(df: DataFrame, profile: Mapping[str, Any], predictions: DataFrame | None = None) -> dict[str, Any]:
    """Current proportions of ``df`` in the reference profile's bins, in one Spark pass.

    Covers every profile feature present in ``df`` (absent ones are listed in ``missing``) and
    the score distribution when ``df`` has the profile's score column (``probability``, or
    ``prediction`` for a regression model), or from ``predictions`` (another frame with that
    column, e.g. the day's predictions), whose bins are counted in the same Spark job (a union
    before the one aggregation). ``n_predictions`` is the number of prediction rows counted.
    """
    columns = set(df.columns)
    numeric = {n: spec["edges"] for n, spec in profile.get("numeric", {}).items() if n in columns}
    categorical = {n: spec["categories"] for n, spec in profile.get("categorical", {}).items() if n in columns}
    pred = profile.get("prediction")
    score_column = (pred or {}).get("column", PREDICTION)
    pred_edges = None
    if pred and (score_column in columns or predictions is not None):
        pred_edges = pred["edges"]
    total, counts = count_bins(
        df, numeric, categorical, pred_edges, predictions if pred_edges is not None else None, score_column
    )
    result: dict[str, Any] = {
        "n_rows": total,
        "numeric": {n: _numeric_summary(counts.get(n, {}), e, total) for n, e in numeric.items()},
        "categorical": {
            n: {
                "categories": list(cats),
                "proportions": _proportions([counts.get(n, {}).get(c, 0) for c in cats], total),
            }
            for n, cats in categorical.items()
        },
        "prediction": None,
        "missing": sorted(n for kind in ("numeric", "categorical") for n in profile.get(kind, {}) if n not in columns),
    }
    if pred_edges is not None:
        n_pred = sum(counts.get(_PREDICTION_KEY, {}).values())
        summary = _numeric_summary(counts.get(_PREDICTION_KEY, {}), pred_edges, n_pred)
        result["n_predictions"] = n_pred
        result["prediction"] = (
            {"column": score_column, "edges": list(pred_edges), "proportions": summary["proportions"]}
            if n_pred
            else None
        )
    return result


# --- the monitoring table: one row per (date, statistic) --------------------------------------

MONITORING_TABLE = "drift_daily"
MONITORING_COLUMNS = (
    "date",  # the monitored window (partition D)
    "model_version",  # the reference model (whose training profile / holdout is compared with)
    "kind",  # feature | prediction | features | performance | feature_test | prediction_test
    "name",  # feature, "probability" (regression: "prediction"), "drifted_share", "roc_auc", "log_loss", "rmse", "mae"
    "statistic",  # psi | share | auc_drop | log_loss_rise | rmse_rise | mae_rise | chi2
    "value",  # the statistic (None when not computable); for chi2 rows the (corrected) p-value
    "observed",  # the raw metric behind it (AUC, log loss, the chi-square statistic), else None
    "reference",  # the champion's holdout value it is compared with, else None
    "threshold",  # None on a PSI row when a test decided (see the chi2 row)
    "breached",  # counts toward the policy
    "n_rows",
    "data_date",  # the day whose data was measured (D, or D-1 for performance)
    "note",  # excluded | missing | insufficient_rows | no_labels | one_class | which test decided | ...
)


def _test_note(stat: Mapping[str, Any]) -> str:
    """``"chi2 test: p 0.34 >= 0.01"`` (the corrected p-value) or why no test was possible."""
    p_value = stat.get("p_value_adjusted", stat.get("p_value"))
    if p_value is None:
        return f"chi2 test: too few rows ({stat.get('bins', 0)} bin(s) after merging)"
    op = "<" if stat.get("drifted") else ">="
    return f"chi2 test: p {p_value:.2g} {op} {float(stat.get('threshold') or 0.0):g}"


def _performance_rows(perf: Mapping[str, Any], policy: Drift, row: Any) -> list[dict[str, Any]]:
    """The ``performance`` rows of a labelled day: AUC drop and log-loss rise, or (a regression model)
    the relative RMSE rise (judged) and MAE rise (reported); ``row`` builds one table row."""
    rows: list[dict[str, Any]] = []
    ref = perf.get("reference") or {}
    common = {"n_rows": int(perf.get("n_rows", 0)), "data_date": perf.get("date"), "note": perf.get("status")}
    judged: tuple[tuple[str, str, float | None, str, str], ...] = (
        ("roc_auc", "auc_drop", policy.max_auc_drop, "roc_auc", "auc_breach"),
        ("log_loss", "log_loss_rise", policy.max_log_loss_rise, "log_loss", "log_loss_breach"),
    )
    if perf.get("task") == TASK_REGRESSION:
        judged = (
            ("rmse", "rmse_rise", policy.max_rmse_rise, "rmse", "rmse_breach"),
            ("mae", "mae_rise", None, "mae", "mae_breach"),  # reported, never judged
        )
    for name, statistic, threshold, observed, breach in judged:
        note = common["note"]
        interval = perf.get(f"{statistic}_interval")
        if note == STATUS_OK:
            note = (
                f"{float(perf.get('confidence', 0.95)):.0%} interval {interval[0]:.3f}..{interval[1]:.3f}"
                if interval
                else ""
            )
        rows.append(
            row(
                "performance",
                name,
                statistic,
                perf.get(statistic),
                threshold=threshold,
                breached=bool(perf.get(breach)),
                observed=perf.get(observed),
                reference=ref.get(observed),
                **{**common, "note": note},
            )
        )
    return rows


def monitoring_rows(report: Mapping[str, Any], policy: Drift) -> list[dict[str, Any]]:
    """The rows of ``monitoring/drift_daily/date=D`` for one drift report (see ``MONITORING_COLUMNS``).

    Feature and prediction rows always carry the PSI (what the page and ``status`` chart);
    when a chi-square test decided, the PSI row has no threshold, its note names the test,
    and a ``feature_test`` / ``prediction_test`` row carries the p-value (corrected for the
    features), the chi-square statistic and the p-value threshold.
    """
    day = str(report["date"])
    version = str(report.get("model_version") or "")
    n_rows = int(report.get("n_rows", 0))
    enough = report.get("status") != STATUS_INSUFFICIENT
    base_note = "" if enough else STATUS_INSUFFICIENT
    excluded = set(report.get("excluded", []))
    missing = set(report.get("missing", []))
    drifted = set(report.get("drifted", []))
    statistics: Mapping[str, Mapping[str, Any]] = report.get("statistics") or {}

    def row(
        kind: str, name: str, statistic: str, value: Any, *, threshold: float | None, breached: bool, **kw: Any
    ) -> dict:
        out = dict.fromkeys(MONITORING_COLUMNS)
        out.update(date=day, model_version=version, kind=kind, name=name, statistic=statistic, threshold=threshold)
        out.update(value=None if value is None else float(value), breached=bool(breached), n_rows=n_rows)
        out.update(data_date=day, note=base_note)
        out.update(kw)
        return out

    def test_row(kind: str, name: str, stat: Mapping[str, Any], breached: bool, note: str, **kw: Any) -> dict:
        p_value = stat.get("p_value_adjusted", stat.get("p_value"))
        kw = {"observed": stat.get("value"), "note": note, **kw}
        return row(kind, name, STAT_CHI2, p_value, threshold=stat.get("threshold"), breached=breached, **kw)

    rows = []
    for name, value in sorted(report.get("psi", {}).items()):
        stat = statistics.get(name) or {}
        tested = stat.get("statistic") == STAT_CHI2
        note = "excluded" if name in excluded else "missing" if name in missing else base_note
        if tested and not note:
            note = _test_note(stat)
        threshold = None if tested else policy.psi_threshold
        rows.append(row("feature", name, STAT_PSI, value, threshold=threshold, breached=name in drifted, note=note))
        if tested:
            rows.append(test_row("feature_test", name, stat, name in drifted, note))
    if report.get("prediction_psi") is not None:
        stat = report.get("prediction_statistic") or {}
        tested = stat.get("statistic") == STAT_CHI2
        breached = bool(report.get("prediction_drifted"))
        n_pred = int(report.get("n_predictions", n_rows))
        note = _test_note(stat) if tested and not base_note else base_note
        score_name = str(report.get("prediction_column") or PREDICTION)
        rows.append(
            row(
                "prediction",
                score_name,
                STAT_PSI,
                report["prediction_psi"],
                threshold=None if tested else prediction_threshold(policy),
                breached=breached,
                n_rows=n_pred,
                note=note,
            )
        )
        if tested:
            rows.append(test_row("prediction_test", score_name, stat, breached, note, n_rows=n_pred))
    share = float(report.get("drifted_share", 0.0))
    rows.append(
        row(
            "features",
            "drifted_share",
            "share",
            share,
            threshold=policy.drifted_share,
            breached=enough and share >= policy.drifted_share,
        )
    )
    perf = report.get("performance")
    if perf:
        rows += _performance_rows(perf, policy, row)
    return rows
