"""The promotion gate is a pure function: metrics in, decision with reasons out."""

from __future__ import annotations

from flightdeck.config import Gate
from flightdeck.gate import decide

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
