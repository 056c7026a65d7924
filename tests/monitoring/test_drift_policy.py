"""PSI, the drift report and the retrain policy: pure functions, hand-computed expectations."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from flightdeck.core.config import Drift
from flightdeck.core.lake import parse_date
from flightdeck.monitoring.drift import (
    STATUS_INSUFFICIENT,
    bin_index,
    drift_report,
    log_loss,
    performance_report,
    psi,
    roc_auc,
)
from flightdeck.monitoring.retrain import Decision, History, is_open, should_retrain


def _decide_one(report: dict, requests: list, policy: Drift, day: str | dt.date) -> Decision:
    """The policy on one window: ``report`` as the drift report of ``day``, with these requests."""
    day = parse_date(day)
    return should_retrain(History(day=day, windows=[{**report, "date": day.isoformat()}], requests=requests), policy)


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
    decision = _decide_one(report, [], POLICY, "2013-05-01")
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
    d = _decide_one(_report(PSIS), [], POLICY, dt.date(2013, 5, 1))
    assert d.retrain
    assert d.reason.startswith(
        "5 of 20 features drifted (share 0.25 >= 0.20): month_of_year PSI 4.10, wx_temp PSI 1.93"
    )
    assert list(d.features) == ["month_of_year", "wx_temp", "wx_dewp", "distance", "dep_hour"]
    assert d.features["wx_temp"] == 1.93


def test_no_retrain_below_share() -> None:
    psis = {f"f{i}": 0.01 for i in range(18)} | {"wx_temp": 0.5, "dep_hour": 0.3}
    d = _decide_one(_report(psis), [], POLICY, "2013-05-01")
    assert not d.retrain
    assert d.reason.startswith("no threshold breached on 2013-05-01: 2 of 20 features drifted (share 0.10 < 0.20)")


CONSUMED = {"consumed_by": "flightdeck_train/run-1"}


def test_cooldown_blocks_then_expires() -> None:
    history = [{"partition": "2013-04-28", "reason": "earlier", **CONSUMED}]
    blocked = _decide_one(_report(PSIS), history, POLICY, "2013-05-01")
    assert not blocked.retrain
    assert "cooldown" in blocked.reason and "2013-04-28" in blocked.reason and "3 day(s)" in blocked.reason
    # 7 days later the cooldown (7 days) is over
    assert _decide_one(_report(PSIS), history, POLICY, "2013-05-05").retrain


def test_rerun_of_same_partition_does_not_ask_twice() -> None:
    for request in ({"partition": "2013-05-01"}, {"partition": "2013-05-01", **CONSUMED}):
        d = _decide_one(_report(PSIS), [request], POLICY, "2013-05-01")
        assert not d.retrain and "exists already" in d.reason
    no_cooldown = POLICY.model_copy(update={"cooldown_days": 0})
    assert not _decide_one(_report(PSIS), [{"partition": "2013-05-01", **CONSUMED}], no_cooldown, "2013-05-01").retrain


def test_later_requests_are_ignored_and_zero_cooldown_never_blocks() -> None:
    later = [{"partition": "2013-06-01", **CONSUMED}]
    assert _decide_one(_report(PSIS), later, POLICY, "2013-05-01").retrain
    no_cooldown = POLICY.model_copy(update={"cooldown_days": 0})
    assert _decide_one(_report(PSIS), [{"partition": "2013-04-30", **CONSUMED}], no_cooldown, "2013-05-01").retrain


def test_at_most_one_open_request_until_consumed_or_expired() -> None:
    open_request = [{"partition": "2013-04-20"}]  # past the 7-day cooldown, never consumed
    d = _decide_one(_report(PSIS), open_request, POLICY, "2013-05-01")
    assert not d.retrain
    assert "request for 2013-04-20 is still open" in d.reason
    assert d.details["open_request"]["partition"] == "2013-04-20"
    # once the training DAG consumed it, a new request may go out
    assert _decide_one(_report(PSIS), [{**open_request[0], **CONSUMED}], POLICY, "2013-05-01").retrain
    # an abandoned request (older than request_ttl_days=14) no longer blocks
    assert is_open(open_request[0], dt.date(2013, 5, 3), POLICY)
    assert not is_open(open_request[0], dt.date(2013, 5, 4), POLICY)
    assert _decide_one(_report(PSIS), open_request, POLICY, "2013-05-04").retrain


QUIET = {f"f{i}": 0.01 for i in range(20)}


def _windows(pattern: str, first: dt.date = dt.date(2013, 7, 1)) -> list[dict]:
    """One window per character: B breached (PSIS), . quiet, _ too few rows."""
    out = []
    for i, c in enumerate(pattern):
        report = _report(PSIS if c == "B" else QUIET, status="insufficient_rows" if c == "_" else "ok")
        if c == "_":
            report |= {"drifted": [], "drifted_share": 0.0, "n_rows": 50}
        out.append({**report, "date": (first + dt.timedelta(days=i)).isoformat()})
    return out


K2_OF_3 = POLICY.model_copy(update={"breaches": 2, "windows": 3})


def _decide(pattern: str, requests: list | None = None, policy: Drift = K2_OF_3) -> Decision:
    windows = _windows(pattern)
    return should_retrain(History(parse_date(windows[-1]["date"]), windows, requests or []), policy)


def test_k_of_n_windows() -> None:
    assert not _decide("B").retrain  # 1 of 1: not enough evidence yet
    assert "only 1 of the last 1 windows breached, need 2 of 3" in _decide("B").reason
    assert _decide("BB").retrain
    assert _decide("B.B").retrain
    assert "(2 of the last 3 windows breached, need 2 of 3)" in _decide("B.B").reason
    assert not _decide("B..B").retrain  # the first breach slid out of the last 3
    assert not _decide("BB.").retrain  # the current window must breach
    # windows without enough rows are no evidence either way: skipped, not counted
    d = _decide("B__B")
    assert d.retrain and [w["date"] for w in d.details["windows"]] == ["2013-07-01", "2013-07-04"]


def test_k_of_n_with_cooldown_and_dedupe_on_a_long_history() -> None:
    windows = _windows("BBBBBBBBBBBB")  # 12 drifted days from 07-01
    requests: list[dict] = []
    asked = []
    for w in windows:
        day = parse_date(w["date"])
        d = should_retrain(History(day, windows, requests), K2_OF_3)
        if d.retrain:
            asked.append(day.isoformat())
            requests.append({"partition": day.isoformat()})
        if len(requests) == 1 and day.isoformat() == "2013-07-04":
            requests[0] |= CONSUMED  # training took the first request on 07-04
    # 07-02 (2 of 3), then open until 07-04, then cooldown 7 days -> next on 07-09
    assert asked == ["2013-07-02", "2013-07-09"]


def test_prediction_and_performance_breaches() -> None:
    quiet = {**_report(QUIET), "date": "2013-07-02"}
    assert not should_retrain(History(dt.date(2013, 7, 2), [quiet]), POLICY).retrain
    shifted = {**quiet, "prediction_psi": 0.35}
    d = should_retrain(History(dt.date(2013, 7, 2), [shifted]), POLICY)
    assert d.retrain and "prediction PSI 0.35 >= 0.20" in d.reason
    # AUC 0.70 on 07-01's labels vs a 0.76 holdout: a 0.06 drop >= 0.05
    perf = {"status": "ok", "date": "2013-07-01", "roc_auc": 0.70, "log_loss": 0.55, "auc_drop": 0.06,
            "log_loss_rise": 0.02, "auc_breach": True, "log_loss_breach": False,
            "reference": {"roc_auc": 0.76, "log_loss": 0.53}}  # fmt: skip
    d = should_retrain(History(dt.date(2013, 7, 2), [{**quiet, "performance": perf}]), POLICY)
    assert d.retrain
    assert d.reason == "AUC 0.700 vs holdout 0.760 (drop 0.060 >= 0.050, labels of 2013-07-01)"


def test_roc_auc_and_log_loss_hand_computed() -> None:
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    # positive/negative pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: (0.35<0.4) -> 3/4
    assert roc_auc(y, p) == pytest.approx(0.75)
    # ties count one half: pos 0.5 vs neg 0.5 -> 0.5
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    hand = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert log_loss(y, p) == pytest.approx(hand)


def test_performance_report_thresholds_and_minimum_rows() -> None:
    # 2 labels per class allowed, no bootstrap: the point estimate decides (the interval and the
    # default 20 labels per class are tested in test_small_samples.py)
    policy = POLICY.model_copy(update={"min_labeled_rows": 4, "min_labels_per_class": 2, "bootstrap_samples": 0})
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    ref = {"roc_auc": 0.85, "log_loss": 0.40}
    r = performance_report(y, p, ref, policy, data_date="2013-07-01", model_version="3")
    assert r["status"] == "ok" and r["date"] == "2013-07-01"
    assert r["auc_drop"] == pytest.approx(0.10) and r["auc_breach"]
    hand_ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4  # 0.4389
    assert r["log_loss_rise"] == pytest.approx(hand_ll - 0.40)
    assert not r["log_loss_breach"]  # 0.039 < 0.1
    few = performance_report(y[:3], p[:3], ref, policy)
    assert few["status"] == "insufficient_rows" and not few["auc_breach"]
    assert performance_report([], [], ref, policy)["status"] == "no_labels"
    assert performance_report([1, 1, 1, 1], p, ref, policy)["status"] == "one_class"
    # the default minimum of labels per class: 2 of each are reported, not judged
    strict = POLICY.model_copy(update={"min_labeled_rows": 4})
    few = performance_report(y, p, ref, strict)
    assert few["status"] == "insufficient_class_labels" and not few["auc_breach"]
    assert few["auc_drop"] == pytest.approx(0.10) and "need 20 of each" in few["reason"]


def test_excluded_features_are_reported_but_never_drift() -> None:
    policy = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=200, cooldown_days=7, exclude=["a"])
    report = drift_report(_profile(), _current([0.1, 0.9]), policy, n_rows=1000)
    assert report["psi"]["a"] > 0.2
    assert report["drifted"] == [] and report["excluded"] == ["a"]
    assert report["n_features"] == 2 and report["drifted_share"] == 0.0


def test_k_cannot_exceed_n() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        POLICY.model_validate({**POLICY.model_dump(), "breaches": 3, "windows": 2})
