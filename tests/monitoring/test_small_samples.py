"""Drift and live-performance decisions that hold for small and large days (issue 17).

Pure functions on synthetic data (numpy, no Spark): a reference profile of 80,000 training
rows built with the profile's own bin rules, and days drawn from the same distribution or
a shifted one. Small days (100-150 rows) are judged by chi-square tests and must not drift
by sampling noise alone, however many levels a categorical has; large days are judged by
PSI; a labelled day counts as a performance breach only with enough labels of each class
and a bootstrap interval that clears the threshold.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from flightdeck.core.config import Drift, load_config
from flightdeck.monitoring.drift import (
    adjust_p_values,
    bootstrap_metrics,
    chi_square_test,
    drift_report,
    merge_sparse_bins,
    monitoring_rows,
    performance_report,
    roc_auc,
)
from flightdeck.monitoring.drift_html import render_report
from flightdeck.monitoring.profile import numeric_edges
from flightdeck.monitoring.retrain import History, should_retrain, window_breaches

# The user's case: ~110 rows a day, a categorical of 84 levels (the profile keeps the top 50
# and __other__), numerics with deciles and a null bin.
LEVELS = [f"L{i:02d}" for i in range(84)]
SHARES = 1 / np.arange(1, 85) ** 0.9
SHARES /= SHARES.sum()
CARRIERS = LEVELS[:16]
NUMERIC = ["temp", "gust", "hour", "distance"]
CATEGORICAL = ["dest", "carrier"]
SCORE_EDGES = [-math.inf, *[i / 10 for i in range(1, 10)], math.inf]
POLICY = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=50, cooldown_days=7)
DAY = dt.date(2013, 7, 1)


def _draw(rng: np.random.Generator, n: int, shift: bool = False) -> dict[str, np.ndarray]:
    """``n`` rows of the reference distribution, or of a shifted one (warmer, later, other
    destinations, higher scores); ``gust`` and ``carrier`` never shift."""
    dest_shares = SHARES[::-1] if shift else SHARES
    return {
        "temp": rng.normal(65 if shift else 50, 10, n),
        "gust": np.where(rng.random(n) < 0.3, np.nan, rng.gamma(2, 5, n)),
        "hour": rng.integers(10 if shift else 5, 23, n).astype(float),
        "distance": rng.lognormal(6.5, 0.6, n),
        "dest": rng.choice(LEVELS, size=n, p=dest_shares),
        "carrier": rng.choice(CARRIERS, size=n, p=SHARES[:16] / SHARES[:16].sum()),
        "probability": rng.beta(4 if shift else 2, 5, n),
    }


def _numeric_shares(values: np.ndarray, edges: list[float]) -> dict[str, Any]:
    missing = np.isnan(values)
    inner = np.asarray(edges[1:-1])
    per_bin = np.bincount(np.searchsorted(inner, values[~missing], side="right"), minlength=len(edges) - 1)
    return {"proportions": (per_bin / values.size).tolist(), "null": float(missing.sum() / values.size)}


def _category_shares(values: np.ndarray, kept: list[str]) -> list[float]:
    known = np.isin(values, kept)
    counts = [int((values == k).sum()) for k in kept] + [int((~known).sum())]
    return [c / values.size for c in counts]


def _profile(n: int = 80_000, bins: int = 10) -> dict[str, Any]:
    """A reference profile with the same layout and bin rules as ``profile.reference_profile``."""
    rows = _draw(np.random.default_rng(12345), n)
    profile: dict[str, Any] = {"n_rows": n, "bins": bins, "numeric": {}, "categorical": {}}
    for name in NUMERIC:
        clean = rows[name][~np.isnan(rows[name])]
        cuts = np.quantile(clean, [i / bins for i in range(1, bins)]).tolist()
        edges = numeric_edges(cuts, float(clean.min()), float(clean.max()))
        profile["numeric"][name] = {"edges": edges, **_numeric_shares(rows[name], edges)}
    for name in CATEGORICAL:
        levels, counts = np.unique(rows[name], return_counts=True)
        kept = [str(v) for v, _ in sorted(zip(levels, counts, strict=True), key=lambda t: (-t[1], t[0]))[:50]]
        profile["categorical"][name] = {
            "categories": [*kept, "__other__"],
            "proportions": _category_shares(rows[name], kept),
        }
    score = _numeric_shares(rows["probability"], SCORE_EDGES)
    profile["prediction"] = {"column": "probability", "edges": SCORE_EDGES, "proportions": score["proportions"]}
    return profile


PROFILE = _profile()


def _day(seed: int, n: int, shift: bool = False) -> dict[str, Any]:
    """The day's bin shares, as ``profile_counts`` returns them."""
    rows = _draw(np.random.default_rng(seed), n, shift)
    return {
        "n_rows": n,
        "n_predictions": n,
        "numeric": {f: _numeric_shares(rows[f], PROFILE["numeric"][f]["edges"]) for f in NUMERIC},
        "categorical": {
            f: {
                "categories": PROFILE["categorical"][f]["categories"],
                "proportions": _category_shares(rows[f], PROFILE["categorical"][f]["categories"][:-1]),
            }
            for f in CATEGORICAL
        },
        "prediction": {"proportions": _numeric_shares(rows["probability"], SCORE_EDGES)["proportions"]},
        "missing": [],
    }


def _report(seed: int, n: int, shift: bool = False, policy: Drift = POLICY) -> dict[str, Any]:
    report = drift_report(PROFILE, _day(seed, n, shift), policy, n)
    return {**report, "date": DAY.isoformat(), "model_version": "1", "n_predictions": n}


# --- the chi-square machinery, by hand ----------------------------------------------------------


def test_sparse_categories_are_pooled_and_ordered_bins_merged_with_neighbours() -> None:
    # categories: two reach 5 alone, the three small ones pool (2 + 1.5 + 1 = 4.5 < 5) and the
    # short pool joins the smallest kept category; an empty one is left out
    expected = [30.0, 6.0, 2.0, 1.5, 1.0, 0.0]
    groups = merge_sparse_bins(expected, [True] * 5 + [False], ordered=False)
    assert groups == [[0], [1, 2, 3, 4]]
    # ordered: left to right until 5, the short tail joins the last group; the free null bin
    # (3 < 5) joins the group with the smallest expected count
    groups = merge_sparse_bins([1.0, 4.5, 6.0, 2.0, 3.0, 8.0, 1.0, 3.0], [True] * 8, ordered=True, free=[7])
    # 1+4.5 | 6 | 2+3 | 8, and the tail 1 joins 8; the null bin joins 2+3 (5, the smallest)
    assert groups == [[0, 1], [2], [3, 4, 7], [5, 6]]
    # too few rows for two groups: no test
    assert len(merge_sparse_bins([1.0, 1.0, 1.0], [True] * 3, ordered=True)) == 1


def test_chi_square_of_homogeneity_by_hand() -> None:
    # reference 1000 rows [0.5, 0.5] = 500/500, current 100 rows [0.7, 0.3] = 70/30
    table = np.array([[500.0, 500.0], [70.0, 30.0]])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    hand = float(((table - expected) ** 2 / expected).sum())
    result = chi_square_test([0.5, 0.5], [0.7, 0.3], 100, 1000)
    assert result["value"] == pytest.approx(hand) and result["dof"] == 1
    assert result["p_value"] == pytest.approx(stats.chi2.sf(hand, 1))
    # without the reference size: goodness of fit, sum (o - e)^2 / e with e = 50/50
    gof = chi_square_test([0.5, 0.5], [0.7, 0.3], 100)
    assert gof["value"] == pytest.approx((20**2 + 20**2) / 50)
    # four rows cannot fill two bins of 5
    assert chi_square_test([0.5, 0.5], [0.75, 0.25], 4, 1000)["p_value"] is None


def test_holm_and_bonferroni_by_hand() -> None:
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5}
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, kept monotone -> 0.04, 0.09, 0.09, 0.5
    assert adjust_p_values(p, "holm") == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert adjust_p_values(p, "bonferroni") == pytest.approx({"a": 0.04, "b": 0.16, "c": 0.12, "d": 1.0})
    assert adjust_p_values(p, "none") == p


# --- small days -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 110, 150])
@pytest.mark.parametrize("seed", range(8))
def test_small_day_from_the_reference_does_not_drift(seed: int, n: int) -> None:
    report = _report(seed, n)
    assert report["feature_statistic"] == "chi2"
    # PSI alone would have flagged the 84-level categorical on sampling noise (the issue)
    assert report["psi"]["dest"] > POLICY.psi_threshold
    assert report["drifted"] == [] and report["drifted_share"] == 0.0
    assert not report["prediction_drifted"] and report["prediction_statistic"]["statistic"] == "chi2"
    dest = report["statistics"]["dest"]
    assert dest["statistic"] == "chi2" and dest["threshold"] == POLICY.p_value
    assert dest["p_value"] is not None and dest["p_value_adjusted"] >= dest["p_value"]
    assert dest["bins"] < 51  # sparse categories pooled so every expected count is >= 5
    assert not should_retrain(History(DAY, [report]), POLICY).retrain


@pytest.mark.parametrize("seed", range(4))
def test_shifted_small_day_drifts(seed: int) -> None:
    report = _report(seed, 120, shift=True)
    assert {"temp", "hour", "dest"} <= set(report["drifted"])
    assert "carrier" not in report["drifted"] and "gust" not in report["drifted"]  # they did not move
    assert report["prediction_drifted"]
    decision = should_retrain(History(DAY, [report]), POLICY)
    assert decision.retrain
    assert "chi-square test, p < 0.01 holm-corrected, 120 rows < 500" in decision.reason
    assert "prediction chi-square p" in decision.reason


def test_small_day_monitoring_rows_and_page_name_the_test() -> None:
    report = _report(0, 120, shift=True)
    rows = {(r["kind"], r["name"]): r for r in monitoring_rows(report, POLICY)}
    psi_row, test_row = rows[("feature", "temp")], rows[("feature_test", "temp")]
    assert psi_row["statistic"] == "psi" and psi_row["value"] == pytest.approx(report["psi"]["temp"])
    assert psi_row["threshold"] is None and psi_row["breached"] and psi_row["note"].startswith("chi2 test: p ")
    assert test_row["statistic"] == "chi2" and test_row["threshold"] == POLICY.p_value and test_row["breached"]
    assert test_row["value"] == pytest.approx(report["statistics"]["temp"]["p_value_adjusted"])
    assert test_row["observed"] == pytest.approx(report["statistics"]["temp"]["value"])
    assert not rows[("feature_test", "carrier")]["breached"]
    assert rows[("prediction_test", "probability")]["breached"]
    page = render_report(report)
    assert "judged by a chi-square test on the binned counts (120 rows &lt; 500" in page
    assert "<td>temp</td>" in page and "<td>chi2</td>" in page


# --- large days ------------------------------------------------------------------------------------


def test_large_day_uses_psi() -> None:
    quiet = _report(1, 50_000)
    assert quiet["feature_statistic"] == "psi" and quiet["drifted"] == []
    assert all(s["statistic"] == "psi" and s["p_value"] is None for s in quiet["statistics"].values())
    assert quiet["prediction_statistic"]["statistic"] == "psi" and not quiet["prediction_drifted"]
    shifted = _report(1, 50_000, shift=True)
    assert set(shifted["drifted"]) == {"temp", "hour", "dest"}
    assert shifted["drifted"][0] == max(shifted["drifted"], key=lambda n: shifted["psi"][n])  # highest PSI first
    assert shifted["statistics"]["temp"] == {"statistic": "psi", "value": shifted["psi"]["temp"], "p_value": None,
                                             "threshold": 0.2, "drifted": True}  # fmt: skip
    rows = monitoring_rows(shifted, POLICY)
    assert not any(r["kind"].endswith("_test") for r in rows)
    assert {r["threshold"] for r in rows if r["kind"] == "feature"} == {0.2}


def test_flights_sized_days_stay_on_psi_and_still_find_the_seasonal_drift() -> None:
    """The shipped config on a ~900-row day (the flights demo: 634 to 1,014 rows a day in 2013):
    PSI decides, a day like the reference is quiet, a shifted one asks for a retrain; the
    chi-square test would agree on that drift (both regimes find it)."""
    policy = load_config().drift.model_copy(update={"exclude": []})
    assert policy.large_sample_rows <= 634
    quiet = _report(2, 900, policy=policy)
    assert quiet["feature_statistic"] == "psi" and quiet["drifted"] == [] and not quiet["prediction_drifted"]
    shifted = _report(2, 900, shift=True, policy=policy)
    assert set(shifted["drifted"]) == {"temp", "hour", "dest"} and shifted["prediction_drifted"]
    decision = should_retrain(History(DAY, [shifted]), policy)
    assert decision.retrain and decision.reason.startswith("3 of 6 features drifted (share 0.50 >= 0.20): ")
    by_test = _report(2, 900, shift=True, policy=policy.model_copy(update={"large_sample_rows": 1000}))
    assert by_test["feature_statistic"] == "chi2" and {"temp", "hour", "dest"} <= set(by_test["drifted"])


# --- live performance ------------------------------------------------------------------------------

HOLDOUT = {"roc_auc": 0.73, "log_loss": 0.45}


def _labelled(seed: int, n: int, positives: int, signal: float) -> tuple[list[int], list[float]]:
    """``n`` labelled predictions, ``positives`` of them late; scores separate the classes by ``signal``."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, positives, replace=False)] = 1
    scores = 1 / (1 + np.exp(-(rng.normal(-1.4, 1.0, n) + signal * y)))
    return y.tolist(), scores.tolist()


def test_a_day_with_eight_positives_is_not_judged() -> None:
    labels, scores = _labelled(3, 110, 8, 0.0)
    policy = POLICY.model_copy(update={"min_labeled_rows": 100})
    perf = performance_report(labels, scores, HOLDOUT, policy, data_date=DAY, model_version="1")
    assert perf["n_positive"] == 8 and perf["n_negative"] == 102
    assert perf["status"] == "insufficient_class_labels"
    assert perf["reason"] == "8 positive and 102 negative labels; need 20 of each"
    assert perf["auc_drop"] is not None and perf["auc_drop"] >= policy.max_auc_drop  # reported, not counted
    assert not perf["auc_breach"] and not perf["log_loss_breach"]
    verdict = window_breaches({"status": "insufficient_rows", "date": "2013-07-02", "performance": perf}, policy)
    assert not verdict["judged"] and verdict["breaches"] == []
    assert verdict["notes"][-1] == (
        "performance not judged on labels of 2013-07-01: insufficient_class_labels "
        "(8 positive and 102 negative labels; need 20 of each)"
    )


def test_a_noisy_drop_whose_interval_straddles_the_threshold_is_no_breach() -> None:
    # enough labels of each class, a point drop past 0.05, but 25 positives cannot tell it from noise
    for seed in range(40):
        labels, scores = _labelled(seed, 200, 25, 1.2)
        perf = performance_report(labels, scores, HOLDOUT, POLICY)
        if perf["auc_drop"] >= 0.05:
            break
    else:
        pytest.fail("no seed gave a point drop past the threshold")
    assert perf["status"] == "ok"
    low, high = perf["auc_drop_interval"]
    assert low < POLICY.max_auc_drop <= perf["auc_drop"] < high
    assert not perf["auc_breach"]
    verdict = window_breaches({"status": "ok", "drifted_share": 0.0, "performance": perf}, POLICY)
    assert verdict["breaches"] == [] and "breach only when all of it >= 0.050" in verdict["notes"][-1]


def test_clearly_degraded_scores_with_enough_labels_breach() -> None:
    labels, scores = _labelled(4, 900, 200, 0.0)  # scores no longer separate the classes: AUC about 0.5
    perf = performance_report(labels, scores, HOLDOUT, POLICY, data_date=DAY, model_version="1")
    assert perf["status"] == "ok" and perf["reason"] == ""
    assert perf["roc_auc"] == pytest.approx(0.5, abs=0.06)
    low, high = perf["auc_drop_interval"]
    assert POLICY.max_auc_drop <= low <= perf["auc_drop"] <= high
    assert perf["auc_breach"] and perf["bootstrap_samples"] == 500
    # seeded: the same day gives the same interval
    assert performance_report(labels, scores, HOLDOUT, POLICY)["auc_drop_interval"] == [low, high]
    report = {"date": "2013-07-02", "status": "ok", "drifted_share": 0.0, "psi": {}, "performance": perf}
    decision = should_retrain(History(dt.date(2013, 7, 2), [report]), POLICY)
    assert decision.retrain and "95% interval" in decision.reason and "labels of 2013-07-01" in decision.reason
    rows = {r["name"]: r for r in monitoring_rows(report, POLICY) if r["kind"] == "performance"}
    assert rows["roc_auc"]["breached"] and rows["roc_auc"]["note"] == f"95% interval {low:.3f}..{high:.3f}"


def test_bootstrap_resamples_are_stratified_resamples_of_the_rows() -> None:
    # 2 positives and 2 negatives (one tie across classes): every bootstrap AUC must be the AUC
    # of some resample that keeps two of each class, computed here by the plain rank formula
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]
    possible = {
        round(roc_auc([0, 0, 1, 1], [scores[a], scores[b], scores[c], scores[d]]) or -1.0, 12)
        for a, b in itertools.product([0, 1], repeat=2)
        for c, d in itertools.product([2, 3], repeat=2)
    }
    aucs, losses = bootstrap_metrics(labels, scores, 300, seed=7)
    assert {round(a, 12) for a in aucs} <= possible and len(set(aucs)) > 1
    assert min(losses) > 0
    assert bootstrap_metrics(labels, scores, 300, seed=7) == (aucs, losses)


def test_auc_by_ranks_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.random(300), 2)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert roc_auc(y.tolist(), s.tolist()) == pytest.approx(pairwise)
