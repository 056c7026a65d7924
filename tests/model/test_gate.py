"""The promotion gate is a pure function: metrics in, decision with reasons out."""

from __future__ import annotations

from flightdeck.core.config import Gate
from flightdeck.model.gate import decide

GATE = Gate(min_auc=0.62, max_auc_regression=0.01)


def test_first_model_passes_on_absolute_threshold_only() -> None:
    d = decide({"roc_auc": 0.70}, None, GATE)
    assert d.passed
    assert d.checks["min_auc"]["passed"] is True
    assert any("no current champion" in r for r in d.reasons)
    assert "0.7000 >= minimum 0.6200" in d.reasons[0]


def test_first_model_below_minimum_fails() -> None:
    d = decide({"roc_auc": 0.55}, None, GATE)
    assert not d.passed
    assert "candidate ROC AUC 0.5500 < minimum 0.6200" in d.reasons[0]


def test_small_regression_within_tolerance_passes() -> None:
    d = decide({"roc_auc": 0.705}, {"roc_auc": 0.71}, GATE)
    assert d.passed
    assert d.checks["max_auc_regression"]["floor"] == 0.71 - 0.01


def test_regression_beyond_tolerance_fails_with_numbers() -> None:
    d = decide({"roc_auc": 0.69}, {"roc_auc": 0.71}, GATE)
    assert not d.passed
    reason = d.reasons[-1]
    assert "0.6900 vs champion 0.7100" in reason
    assert "-0.0200" in reason
    assert "< floor 0.7000" in reason


def test_improvement_passes() -> None:
    d = decide({"roc_auc": 0.75}, {"roc_auc": 0.71}, GATE)
    assert d.passed
    assert d.checks["max_auc_regression"]["passed"] is True


def test_both_checks_must_pass() -> None:
    d = decide({"roc_auc": 0.60}, {"roc_auc": 0.59}, GATE)
    assert not d.passed
    assert d.checks["min_auc"]["passed"] is False
    assert d.checks["max_auc_regression"]["passed"] is True


def test_missing_or_nan_metric_fails_clearly() -> None:
    assert not decide({}, None, GATE).passed
    d = decide({"roc_auc": float("nan")}, None, GATE)
    assert not d.passed
    assert "no valid roc_auc" in d.reasons[0]


def test_decision_is_frozen_and_serialisable() -> None:
    d = decide({"roc_auc": 0.7}, {"roc_auc": 0.7}, GATE)
    doc = d.to_dict()
    assert set(doc) == {"passed", "reasons", "checks"}
    try:
        d.passed = False  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Decision must be frozen")


# --- slices and the bootstrap interval ----------------------------------------------------------

FULL = Gate(
    min_auc=0.62,
    max_auc_regression=0.01,
    slices=["carrier", "origin", "month_of_year"],
    max_slice_regression=0.05,
    min_slice_rows=100,
    bootstrap_samples=200,
    bootstrap_confidence=0.95,
)


def _slices(**overrides: tuple[int, float, float]) -> dict:
    base = {
        "carrier": {
            "AA": {"n": 500, "candidate": 0.71, "champion": 0.70},
            "B6": {"n": 800, "candidate": 0.69, "champion": 0.70},
        },
        "origin": {"JFK": {"n": 900, "candidate": 0.70, "champion": 0.70}},
    }
    for key, (n, cand, champ) in overrides.items():
        column, value = key.split("__")
        base.setdefault(column, {})[value] = {"n": n, "candidate": cand, "champion": champ}
    return base


def test_slices_within_tolerance_pass() -> None:
    d = decide({"roc_auc": 0.70}, {"roc_auc": 0.70}, FULL, slices=_slices(), auc_diff_ci=(-0.008, 0.009))
    assert d.passed, d.reasons
    assert d.checks["slices"]["judged"] == 3 and d.checks["slices"]["failed"] == []
    assert d.checks["slices"]["worst"]["slice"] == "carrier=B6"
    assert d.checks["auc_diff_ci"]["passed"] is True


def test_one_regressing_slice_fails_the_gate_and_is_named() -> None:
    slices = _slices(origin__EWR=(400, 0.60, 0.68))
    d = decide({"roc_auc": 0.71}, {"roc_auc": 0.70}, FULL, slices=slices)
    assert not d.passed
    assert d.checks["max_auc_regression"]["passed"] is True  # overall is fine
    failed = d.checks["slices"]["failed"]
    assert [f["slice"] for f in failed] == ["origin=EWR"]
    assert "origin=EWR 0.6000 vs 0.6800 (-0.0800, n=400)" in d.reasons[-1]


def test_small_or_single_class_slices_are_not_judged() -> None:
    slices = _slices(origin__LGA=(50, 0.30, 0.90), month_of_year__12=(5000, None, 0.7))
    d = decide({"roc_auc": 0.70}, {"roc_auc": 0.70}, FULL, slices=slices)
    assert d.passed
    assert d.checks["slices"]["skipped"] == 2


def test_interval_wholly_below_tolerance_fails() -> None:
    # point estimate within tolerance, but the bootstrap says "worse beyond tolerance" with 95% confidence
    d = decide({"roc_auc": 0.6905}, {"roc_auc": 0.70}, FULL, auc_diff_ci=(-0.020, -0.012))
    assert not d.passed
    assert d.checks["max_auc_regression"]["passed"] is True
    assert d.checks["auc_diff_ci"] == {
        "low": -0.020, "high": -0.012, "confidence": 0.95, "threshold": -0.01, "passed": False
    }  # fmt: skip
    assert "[-0.0200, -0.0120] lies wholly below -0.0100" in d.reasons[-1]


def test_interval_reaching_tolerance_passes() -> None:
    d = decide({"roc_auc": 0.70}, {"roc_auc": 0.70}, FULL, auc_diff_ci=(-0.03, -0.009))
    assert d.passed


def test_undefined_interval_is_reported_not_judged() -> None:
    d = decide({"roc_auc": 0.70}, {"roc_auc": 0.70}, FULL, auc_diff_ci=(float("nan"), float("nan")))
    assert d.passed and "undefined" in d.reasons[-1]


def test_first_model_ignores_slices_and_interval() -> None:
    slices = _slices(origin__EWR=(400, 0.40, None))
    d = decide({"roc_auc": 0.66}, None, FULL, slices=slices, auc_diff_ci=None)
    assert d.passed
    assert set(d.checks) == {"min_auc", "max_auc_regression"}
    assert "no current champion: judged on absolute thresholds only" in d.reasons


def test_worse_candidate_fails_every_relative_check() -> None:
    slices = {"carrier": {"AA": {"n": 1000, "candidate": 0.50, "champion": 0.72}}}
    d = decide({"roc_auc": 0.51}, {"roc_auc": 0.72}, FULL, slices=slices, auc_diff_ci=(-0.24, -0.18))
    assert not d.passed
    assert [k for k, v in d.checks.items() if not v["passed"]] == [
        "min_auc", "max_auc_regression", "slices", "auc_diff_ci"
    ]  # fmt: skip


# --- the evaluation helpers feeding the gate (pure numpy) ---------------------------------------


def test_bootstrap_interval_brackets_the_true_difference() -> None:
    import numpy as np

    from flightdeck.model.evaluation import bootstrap_auc_diff

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = y + rng.normal(0, 0.8, y.size)
    same = good.copy()
    ci = bootstrap_auc_diff(y, good, same, samples=20, confidence=0.95, seed=1)
    assert ci["low"] == ci["high"] == 0.0
    noise = rng.normal(0, 1, y.size)
    ci = bootstrap_auc_diff(y, noise, good, samples=40, confidence=0.95, seed=1)
    assert ci["high"] < -0.2  # a random scorer is far worse than a good one
    again = bootstrap_auc_diff(y, noise, good, samples=40, confidence=0.95, seed=1)
    assert again == ci  # seeded


def test_slice_aucs_and_calibration_error() -> None:
    import numpy as np

    from flightdeck.model.evaluation import calibration_error, slice_aucs

    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.6])
    out = slice_aucs(y, p, 1 - p, {"carrier": np.array(["AA", "AA", "AA", "AA", "B6", "B6"])})
    assert out["carrier"]["AA"] == {"n": 4, "candidate": 1.0, "champion": 0.0}
    assert out["carrier"]["B6"] == {"n": 2, "candidate": None, "champion": None}  # one class only
    assert calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    # 4 rows at 0.5 with 1 late: |0.25 - 0.5| = 0.25
    assert calibration_error(np.array([1, 0, 0, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.25
