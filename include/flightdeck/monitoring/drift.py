"""Drift: population stability index, binned counts in one Spark pass, the report and its table rows.

A *reference profile* (built at training time, see :func:`flightdeck.monitoring.profile.reference_profile`)
holds, for every model input, the bins of the training data and the share of rows per bin;
and the holdout's score distribution. Monitoring bins a new partition the same way
(:func:`profile_counts`, one Spark pass), compares with :func:`psi`, summarises with
:func:`drift_report`, and the pure policy :func:`flightdeck.monitoring.retrain.should_retrain`
turns a report plus the history of retrain requests into a decision with a reason.

Profile layout (JSON, Python's ``Infinity`` for the open ends)::

    {"n_rows": int,
     "numeric": {f: {"edges": [-inf, c1, ..., ck, inf], "proportions": [k+1 floats], "null": float}},
     "categorical": {f: {"categories": [..., "__other__"], "proportions": [...]}},   # nulls are "__null__"
     "prediction": {"column": "probability", "edges": [...], "proportions": [...]} | None}

Bin i of a numeric feature is ``edges[i] <= x < edges[i+1]`` (the last bin includes +inf);
null and NaN form their own bin.
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


# --- pure ---------------------------------------------------------------------------------


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = 1e-4) -> float:
    """Population stability index between two binned distributions (same bins, proportions).

    ``sum((a - e) * ln(a / e))`` with both sides floored at ``eps`` so empty bins stay finite.
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


def drift_report(
    reference_profile: Mapping[str, Any], current_counts: Mapping[str, Any], policy: Drift, n_rows: int
) -> dict[str, Any]:
    """Per-feature PSI against the reference, the drifted features and their share.

    Features in ``policy.exclude`` get a PSI but never count as drifted nor in the share.
    Below ``policy.min_rows`` rows the PSI values are still reported (for information) but the
    status is ``insufficient_rows`` and no feature counts as drifted.
    """
    enough = n_rows >= policy.min_rows
    features: dict[str, dict[str, Any]] = {}
    for kind in ("numeric", "categorical"):
        for name, ref in reference_profile.get(kind, {}).items():
            cur = current_counts.get(kind, {}).get(name)
            if cur is None:
                features[name] = {"psi": None, "drifted": False, "missing": True}
                continue
            expected = list(ref["proportions"])
            actual = list(cur["proportions"])
            if kind == "numeric":
                expected.append(ref.get("null", 0.0))
                actual.append(cur.get("null", 0.0))
            value = psi(expected, actual)
            if name in policy.exclude:
                features[name] = {"psi": value, "drifted": False, "excluded": True}
                continue
            features[name] = {"psi": value, "drifted": bool(enough and value >= policy.psi_threshold)}
    prediction_psi: float | None = None
    ref_pred = reference_profile.get("prediction")
    cur_pred = current_counts.get("prediction")
    if ref_pred and cur_pred:
        prediction_psi = psi(ref_pred["proportions"], cur_pred["proportions"])
    drifted = sorted((n for n, f in features.items() if f["drifted"]), key=lambda n: -features[n]["psi"])
    measured = [n for n, f in features.items() if f["psi"] is not None and not f.get("excluded")]
    share = len(drifted) / len(measured) if measured else 0.0
    return {
        "status": STATUS_OK if enough else STATUS_INSUFFICIENT,
        "n_rows": int(n_rows),
        "min_rows": policy.min_rows,
        "psi_threshold": policy.psi_threshold,
        "psi": {n: f["psi"] for n, f in features.items()},
        "missing": sorted(n for n, f in features.items() if f.get("missing")),
        "excluded": sorted(n for n, f in features.items() if f.get("excluded")),
        "prediction_psi": prediction_psi,
        "prediction_threshold": prediction_threshold(policy),
        "prediction_drifted": bool(
            enough and prediction_psi is not None and prediction_psi >= prediction_threshold(policy)
        ),
        "drifted": drifted,
        "n_features": len(measured),
        "drifted_share": share,
    }


# --- performance once labels arrive ---------------------------------------------------------


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None with one class."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda t: t[0])
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1  # ranks are 1-based
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if pairs[k][1])
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def log_loss(labels: Sequence[int], scores: Sequence[float], eps: float = 1e-15) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""
    if not labels:
        raise ValueError("log_loss needs at least one labelled row")
    total = 0.0
    for y, p_raw in zip(labels, scores, strict=True):
        p = min(max(float(p_raw), eps), 1 - eps)
        total -= math.log(p) if y else math.log(1 - p)
    return total / len(labels)


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

    ``reference`` holds the holdout ``roc_auc`` and ``log_loss`` of that model version. Below
    ``policy.min_labeled_rows`` rows, with a single class, or without a reference, the metrics are
    reported (when computable) but never count as a breach.
    """
    n = len(labels)
    out: dict[str, Any] = {
        "date": None if data_date is None else parse_date(data_date).isoformat(),
        "model_version": model_version,
        "n_rows": n,
        "min_rows": policy.min_labeled_rows,
        "roc_auc": None,
        "log_loss": None,
        "reference": dict(reference or {}),
        "auc_drop": None,
        "log_loss_rise": None,
        "max_auc_drop": policy.max_auc_drop,
        "max_log_loss_rise": policy.max_log_loss_rise,
        "auc_breach": False,
        "log_loss_breach": False,
    }
    if n == 0:
        return {**out, "status": STATUS_NO_LABELS}
    auc = roc_auc(labels, scores)
    out["roc_auc"] = auc
    out["log_loss"] = log_loss(labels, scores)
    ref_auc = (reference or {}).get("roc_auc")
    ref_ll = (reference or {}).get("log_loss")
    if auc is not None and ref_auc is not None:
        out["auc_drop"] = float(ref_auc) - auc
    if ref_ll is not None:
        out["log_loss_rise"] = out["log_loss"] - float(ref_ll)
    if n < policy.min_labeled_rows:
        return {**out, "status": STATUS_INSUFFICIENT}
    if auc is None:
        return {**out, "status": STATUS_ONE_CLASS}
    if not reference:
        return {**out, "status": STATUS_NO_REFERENCE}
    out["auc_breach"] = out["auc_drop"] is not None and out["auc_drop"] >= policy.max_auc_drop
    out["log_loss_breach"] = out["log_loss_rise"] is not None and out["log_loss_rise"] >= policy.max_log_loss_rise
    return {**out, "status": STATUS_OK}


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
) -> tuple[int, dict[str, dict[str, int]]]:
    """Row count and per-feature bin counts for every feature at once (one Spark job, one pass).

    Every Arrow batch of the rows is binned and counted with numpy inside the scan
    (``mapInPandas``), and only the small ``(feature, bin, count)`` tables are summed:
    about three times faster than exploding each row into one record per feature and
    grouping those (see the README's Performance section). Categorical levels of None mean
    "count every value" (used to find the top categories at training time). The score
    distribution is binned from ``df``'s ``probability`` column, or from ``predictions``
    (another frame with that column, e.g. the day's predictions) in the same job.
    """
    from pyspark.sql import functions as F

    schema = "f string, b string, n long"
    score_edges = {PREDICTION: prediction_edges} if prediction_edges is not None else {}
    own_scores = score_edges if predictions is None else {}
    features = df.select(
        *[F.col(n).cast("double").alias(n) for n in [*numeric, *own_scores]],
        *[F.col(n).cast("string").alias(n) for n in categorical],
    )
    names = {**{n: n for n in [*numeric, *categorical]}, PREDICTION: _PREDICTION_KEY}
    counted = features.mapInPandas(_bin_counter({**numeric, **own_scores}, categorical, names, True), schema)
    if score_edges and predictions is not None:
        scores = predictions.select(F.col(PREDICTION).cast("double").alias(PREDICTION))
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
    the score distribution when ``df`` has a ``probability`` column, or from ``predictions``
    (another frame with a ``probability`` column, e.g. the day's predictions), whose bins are
    counted in the same Spark job (a union before the one aggregation). ``n_predictions`` is
    the number of prediction rows counted.
    """
    columns = set(df.columns)
    numeric = {n: spec["edges"] for n, spec in profile.get("numeric", {}).items() if n in columns}
    categorical = {n: spec["categories"] for n, spec in profile.get("categorical", {}).items() if n in columns}
    pred = profile.get("prediction")
    pred_edges = None
    if pred and (PREDICTION in columns or predictions is not None):
        pred_edges = pred["edges"]
    total, counts = count_bins(df, numeric, categorical, pred_edges, predictions if pred_edges is not None else None)
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
            {"column": PREDICTION, "edges": list(pred_edges), "proportions": summary["proportions"]} if n_pred else None
        )
    return result


# --- the monitoring table: one row per (date, statistic) --------------------------------------

MONITORING_TABLE = "drift_daily"
MONITORING_COLUMNS = (
    "date",  # the monitored window (partition D)
    "model_version",  # the reference model (whose training profile / holdout is compared with)
    "kind",  # feature | prediction | features | performance
    "name",  # feature name, "probability", "drifted_share", "roc_auc", "log_loss"
    "statistic",  # psi | share | auc_drop | log_loss_rise
    "value",  # the statistic (None when not computable)
    "observed",  # the raw metric behind it (AUC, log loss), else None
    "reference",  # the champion's holdout value it is compared with, else None
    "threshold",
    "breached",  # counts toward the policy
    "n_rows",
    "data_date",  # the day whose data was measured (D, or D-1 for performance)
    "note",  # excluded | missing | insufficient_rows | no_labels | one_class | ...
)


def monitoring_rows(report: Mapping[str, Any], policy: Drift) -> list[dict[str, Any]]:
    """The rows of ``monitoring/drift_daily/date=D`` for one drift report (see ``MONITORING_COLUMNS``)."""
    day = str(report["date"])
    version = str(report.get("model_version") or "")
    n_rows = int(report.get("n_rows", 0))
    enough = report.get("status") != STATUS_INSUFFICIENT
    base_note = "" if enough else STATUS_INSUFFICIENT
    excluded = set(report.get("excluded", []))
    missing = set(report.get("missing", []))
    drifted = set(report.get("drifted", []))

    def row(kind: str, name: str, statistic: str, value: Any, *, threshold: float, breached: bool, **kw: Any) -> dict:
        out = dict.fromkeys(MONITORING_COLUMNS)
        out.update(date=day, model_version=version, kind=kind, name=name, statistic=statistic, threshold=threshold)
        out.update(value=None if value is None else float(value), breached=bool(breached), n_rows=n_rows)
        out.update(data_date=day, note=base_note)
        out.update(kw)
        return out

    rows = []
    for name, value in sorted(report.get("psi", {}).items()):
        note = "excluded" if name in excluded else "missing" if name in missing else base_note
        rows.append(
            row("feature", name, "psi", value, threshold=policy.psi_threshold, breached=name in drifted, note=note)
        )
    if report.get("prediction_psi") is not None:
        rows.append(
            row(
                "prediction",
                PREDICTION,
                "psi",
                report["prediction_psi"],
                threshold=prediction_threshold(policy),
                breached=bool(report.get("prediction_drifted")),
                n_rows=int(report.get("n_predictions", n_rows)),
            )
        )
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
        ref = perf.get("reference") or {}
        common = {"n_rows": int(perf.get("n_rows", 0)), "data_date": perf.get("date"), "note": perf.get("status")}
        if common["note"] == STATUS_OK:
            common["note"] = ""
        rows.append(
            row(
                "performance",
                "roc_auc",
                "auc_drop",
                perf.get("auc_drop"),
                threshold=policy.max_auc_drop,
                breached=bool(perf.get("auc_breach")),
                observed=perf.get("roc_auc"),
                reference=ref.get("roc_auc"),
                **common,
            )
        )
        rows.append(
            row(
                "performance",
                "log_loss",
                "log_loss_rise",
                perf.get("log_loss_rise"),
                threshold=policy.max_log_loss_rise,
                breached=bool(perf.get("log_loss_breach")),
                observed=perf.get("log_loss"),
                reference=ref.get("log_loss"),
                **common,
            )
        )
    return rows
