"""PSI, the drift report and the retrain policy: pure functions, hand-computed expectations."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from flightdeck.config import Drift
from flightdeck.drift import STATUS_INSUFFICIENT, bin_index, drift_report, psi, should_retrain

POLICY = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=200, cooldown_days=7)


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0


def test_psi_known_value() -> None:
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5) = 0.2*ln(0.7/0.3)
    expected = 0.2 * math.log(0.7 / 0.3)
    assert psi([0.5, 0.5], [0.3, 0.7]) == pytest.approx(expected, rel=1e-12)
    assert psi([0.5, 0.5], [0.3, 0.7]) == pytest.approx(0.16946, abs=1e-5)  # 0.2 * 0.847298


def test_psi_empty_bin_is_floored_by_eps() -> None:
    # expected [1, 0], actual [0.5, 0.5]; eps=1e-4 floors the empty bin
    value = psi([1.0, 0.0], [0.5, 0.5])
    hand = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert value == pytest.approx(hand)
    assert math.isfinite(value)


def test_psi_needs_same_bins() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_bin_index_rule() -> None:
    edges = [float("-inf"), 1.0, 2.0, float("inf")]
    assert bin_index(0.5, edges) == 0
    assert bin_index(1.0, edges) == 1  # left-closed
    assert bin_index(5.0, edges) == 2
    assert bin_index(None, edges) is None
    assert bin_index(float("nan"), edges) is None


def _profile() -> dict:
    return {
        "numeric": {
            "a": {"edges": [float("-inf"), 0.0, float("inf")], "proportions": [0.5, 0.5], "null": 0.0},
            "b": {"edges": [float("-inf"), 0.0, float("inf")], "proportions": [0.5, 0.5], "null": 0.0},
        },
        "categorical": {"c": {"categories": ["x", "__other__"], "proportions": [0.9, 0.1]}},
        "prediction": {"column": "probability", "edges": [float("-inf"), 0.5, float("inf")], "proportions": [0.5, 0.5]},
    }


def _current(a: list[float], null_a: float = 0.0) -> dict:
    return {
        "numeric": {
            "a": {"proportions": a, "null": null_a},
            "b": {"proportions": [0.5, 0.5], "null": 0.0},
        },
        "categorical": {"c": {"categories": ["x", "__other__"], "proportions": [0.9, 0.1]}},
        "prediction": {"proportions": [0.3, 0.7]},
    }


def test_report_flags_drifted_feature() -> None:
    report = drift_report(_profile(), _current([0.1, 0.9]), POLICY, n_rows=1000)
    # a: (0.1-0.5)ln(0.2) + (0.9-0.5)ln(1.8) + null bin (0 vs 0 -> 0)
    hand = -0.4 * math.log(0.2) + 0.4 * math.log(1.8)
    assert report["psi"]["a"] == pytest.approx(hand)
    assert report["psi"]["b"] == 0.0
    assert report["drifted"] == ["a"]
    assert report["drifted_share"] == pytest.approx(1 / 3)
    assert report["status"] == "ok"
    assert report["prediction_psi"] == pytest.approx(0.2 * math.log(0.7 / 0.3))


def test_report_counts_nulls_as_a_bin() -> None:
    report = drift_report(_profile(), _current([0.3, 0.3], null_a=0.4), POLICY, n_rows=1000)
    assert report["psi"]["a"] > POLICY.psi_threshold


def test_report_below_min_rows_has_no_drift() -> None:
    report = drift_report(_profile(), _current([0.1, 0.9]), POLICY, n_rows=199)
    assert report["status"] == STATUS_INSUFFICIENT
    assert report["drifted"] == []
    assert report["drifted_share"] == 0.0
    assert report["psi"]["a"] > POLICY.psi_threshold  # still reported, for information
    decision = should_retrain(report, [], POLICY, "2013-05-01")
    assert not decision.retrain
    assert "insufficient rows" in decision.reason and "199 < minimum 200" in decision.reason


def _report(psis: dict[str, float], status: str = "ok") -> dict:
    drifted = sorted((n for n, v in psis.items() if v >= 0.2), key=lambda n: -psis[n])
    return {"status": status, "psi": psis, "drifted": drifted, "n_features": len(psis),
            "drifted_share": len(drifted) / len(psis), "n_rows": 5000, "min_rows": 200}  # fmt: skip


PSIS = {f"f{i}": 0.01 for i in range(15)} | {
    "wx_temp": 1.93, "month_of_year": 4.1, "dep_hour": 0.25, "wx_dewp": 0.9, "distance": 0.3,
}  # fmt: skip


def test_retrain_reason_names_features_with_psi() -> None:
    d = should_retrain(_report(PSIS), [], POLICY, dt.date(2013, 5, 1))
    assert d.retrain
    assert d.reason.startswith(
        "5 of 20 features drifted (share 0.25 >= 0.20): month_of_year PSI 4.10, wx_temp PSI 1.93"
    )
    assert list(d.features) == ["month_of_year", "wx_temp", "wx_dewp", "distance", "dep_hour"]
    assert d.features["wx_temp"] == 1.93


def test_no_retrain_below_share() -> None:
    psis = {f"f{i}": 0.01 for i in range(18)} | {"wx_temp": 0.5, "dep_hour": 0.3}
    d = should_retrain(_report(psis), [], POLICY, "2013-05-01")
    assert not d.retrain
    assert d.reason.startswith("2 of 20 features drifted (share 0.10 < 0.20)")


def test_cooldown_blocks_then_expires() -> None:
    history = [{"partition": "2013-04-28", "reason": "earlier"}]
    blocked = should_retrain(_report(PSIS), history, POLICY, "2013-05-01")
    assert not blocked.retrain
    assert "cooldown" in blocked.reason and "2013-04-28" in blocked.reason and "3 day(s)" in blocked.reason
    # 7 days later the cooldown (7 days) is over
    assert should_retrain(_report(PSIS), history, POLICY, "2013-05-05").retrain


def test_rerun_of_same_partition_does_not_ask_twice() -> None:
    history = [{"partition": "2013-05-01"}]
    assert not should_retrain(_report(PSIS), history, POLICY, "2013-05-01").retrain


def test_later_requests_are_ignored_and_zero_cooldown_never_blocks() -> None:
    assert should_retrain(_report(PSIS), [{"partition": "2013-06-01"}], POLICY, "2013-05-01").retrain
    no_cooldown = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=200, cooldown_days=0)
    assert should_retrain(_report(PSIS), [{"partition": "2013-05-01"}], no_cooldown, "2013-05-01").retrain


def test_excluded_features_are_reported_but_never_drift() -> None:
    policy = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=200, cooldown_days=7, exclude=["a"])
    report = drift_report(_profile(), _current([0.1, 0.9]), policy, n_rows=1000)
    assert report["psi"]["a"] > 0.2
    assert report["drifted"] == [] and report["excluded"] == ["a"]
    assert report["n_features"] == 2 and report["drifted_share"] == 0.0
