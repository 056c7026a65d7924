"""Drift: population stability index, binned counts in one Spark pass, report and retrain policy.

A *reference profile* (built at training time, see :func:`flightdeck.training.reference_profile`)
holds, for every model input, the bins of the training data and the share of rows per bin;
and the holdout's score distribution. Monitoring bins a new partition the same way
(:func:`profile_counts`, one Spark pass), compares with :func:`psi`, summarises with
:func:`drift_report`, and the pure policy :func:`should_retrain` turns a report plus the
history of retrain requests into a decision with a reason.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.config import Drift
from flightdeck.lake import parse_date

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

NULL_BIN = "__null__"
OTHER = "__other__"
PREDICTION = "probability"
_PREDICTION_KEY = "__prediction__"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient_rows"


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
        "prediction_drifted": bool(enough and prediction_psi is not None and prediction_psi >= policy.psi_threshold),
        "drifted": drifted,
        "n_features": len(measured),
        "drifted_share": share,
    }


@dataclass(frozen=True)
class RetrainDecision:
    """The drift policy's verdict for one partition."""

    retrain: bool
    reason: str
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def should_retrain(
    report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], policy: Drift, partition: dt.date | str
) -> RetrainDecision:
    """Ask for a retrain when enough features drifted and no request is in its cooldown.

    ``history`` holds previous retrain requests, each with a ``partition`` (YYYY-MM-DD). A request
    for a partition P blocks new ones for partitions P .. P + cooldown_days - 1 (so a rerun of the
    same partition does not ask twice); requests for later partitions (backfills) are ignored.
    """
    day = parse_date(partition)
    psis: Mapping[str, float | None] = report.get("psi", {})
    drifted_names = list(report.get("drifted", []))
    drifted = {n: float(psis[n] or 0.0) for n in sorted(drifted_names, key=lambda n: -float(psis.get(n) or 0.0))}
    n_features = int(report.get("n_features", len(psis)))
    share = float(report.get("drifted_share", 0.0))

    if report.get("status") == STATUS_INSUFFICIENT:
        return RetrainDecision(
            False,
            f"insufficient rows for drift on {day}: {report.get('n_rows')} < minimum {report.get('min_rows')}",
            {},
        )
    listing = ", ".join(f"{n} PSI {v:.2f}" for n, v in drifted.items())
    summary = f"{len(drifted)} of {n_features} features drifted (share {share:.2f}"
    if share < policy.drifted_share:
        reason = f"{summary} < {policy.drifted_share:.2f})" + (f": {listing}" if listing else "")
        return RetrainDecision(False, reason, drifted)
    previous = sorted(
        (parse_date(h["partition"]) for h in history if "partition" in h and parse_date(h["partition"]) <= day),
        reverse=True,
    )
    if previous and policy.cooldown_days > 0 and (day - previous[0]).days < policy.cooldown_days:
        return RetrainDecision(
            False,
            f"{summary} >= {policy.drifted_share:.2f}) but in cooldown: last retrain request was for "
            f"{previous[0]}, {(day - previous[0]).days} day(s) before {day} (cooldown {policy.cooldown_days} days): "
            f"{listing}",
            drifted,
        )
    return RetrainDecision(True, f"{summary} >= {policy.drifted_share:.2f}): {listing}", drifted)


# --- Spark: binned counts in one pass -------------------------------------------------------


def _numeric_bin(column: str, edges: Sequence[float]) -> Column:
    from pyspark.sql import functions as F

    x = F.col(column).cast("double")
    expr = F.when(x.isNull() | F.isnan(x), F.lit(NULL_BIN))
    for i, cut in enumerate(edges[1:-1]):
        expr = expr.when(x < F.lit(float(cut)), F.lit(str(i)))
    return expr.otherwise(F.lit(str(len(edges) - 2)))


def _categorical_bin(column: str, levels: Sequence[str] | None) -> Column:
    from pyspark.sql import functions as F

    value = F.coalesce(F.col(column).cast("string"), F.lit(NULL_BIN))
    if levels is None:
        return value
    known = [v for v in levels if v != OTHER]
    return F.when(value.isin(known), value).otherwise(F.lit(OTHER)) if known else F.lit(OTHER)


def count_bins(
    df: DataFrame,
    numeric: Mapping[str, Sequence[float]],
    categorical: Mapping[str, Sequence[str] | None],
    prediction_edges: Sequence[float] | None = None,
) -> tuple[int, dict[str, dict[str, int]]]:
    """Row count and per-feature bin counts for every feature at once (one Spark job).

    Each row is exploded into one ``(feature, bin)`` pair per feature and the pairs are
    counted in a single aggregation, instead of one job per feature. Categorical levels
    of None mean "count every value" (used to find the top categories at training time).
    """
    from pyspark.sql import functions as F

    pairs = [F.struct(F.lit(n).alias("f"), _numeric_bin(n, e).alias("b")) for n, e in numeric.items()]
    pairs += [F.struct(F.lit(n).alias("f"), _categorical_bin(n, lv).alias("b")) for n, lv in categorical.items()]
    if prediction_edges is not None:
        pairs.append(F.struct(F.lit(_PREDICTION_KEY).alias("f"), _numeric_bin(PREDICTION, prediction_edges).alias("b")))
    if not pairs:
        return df.count(), {}
    rows = (
        df.select(F.explode(F.array(*pairs)).alias("p"))
        .groupBy(F.col("p.f").alias("f"), F.col("p.b").alias("b"))
        .count()
        .collect()
    )
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["f"], {})[row["b"]] = int(row["count"])
    first = next(iter(counts.values()), {})
    return sum(first.values()), counts


def _numeric_summary(bins: Mapping[str, int], edges: Sequence[float], total: int) -> dict[str, Any]:
    per_bin = [bins.get(str(i), 0) for i in range(len(edges) - 1)]
    return {"proportions": _proportions(per_bin, total), "null": _proportions([bins.get(NULL_BIN, 0)], total)[0]}


def profile_counts(df: DataFrame, profile: Mapping[str, Any]) -> dict[str, Any]:
    """Current proportions of ``df`` in the reference profile's bins, in one Spark pass.

    Covers every profile feature present in ``df`` (absent ones are listed in ``missing``) and
    the score distribution when ``df`` has a ``probability`` column.
    """
    columns = set(df.columns)
    numeric = {n: spec["edges"] for n, spec in profile.get("numeric", {}).items() if n in columns}
    categorical = {n: spec["categories"] for n, spec in profile.get("categorical", {}).items() if n in columns}
    pred = profile.get("prediction")
    pred_edges = pred["edges"] if pred and PREDICTION in columns else None
    total, counts = count_bins(df, numeric, categorical, pred_edges)
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
        summary = _numeric_summary(counts.get(_PREDICTION_KEY, {}), pred_edges, total)
        result["prediction"] = {"column": PREDICTION, "edges": list(pred_edges), "proportions": summary["proportions"]}
    return result


def plot_psi(report: Mapping[str, Any], path: str | Path, title: str = "PSI per feature") -> str:
    """A bar chart of PSI per feature (and the prediction) with the threshold line; returns the path.

    Red: counted as drifted; grey: excluded by policy; blue: the rest.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {n: v for n, v in report.get("psi", {}).items() if v is not None}
    if report.get("prediction_psi") is not None:
        values["(prediction)"] = report["prediction_psi"]
    names = sorted(values, key=lambda n: values[n])
    threshold = float(report.get("psi_threshold", 0.0))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(names) + 1)))
    drifted = {*report.get("drifted", []), *(["(prediction)"] if report.get("prediction_drifted") else [])}
    excluded = set(report.get("excluded", []))
    colors = ["tab:red" if n in drifted else "tab:gray" if n in excluded else "tab:blue" for n in names]
    ax.barh(names, [values[n] for n in names], color=colors)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("PSI")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
