"""Decisions that depend on earlier days do not depend on the order the days are processed in.

Asset-triggered monitoring runs do not arrive in day order (a ten-day UI backfill processed
07-11 before 07-10). Each simulated run goes through the monitoring DAG's steps on a real lake
folder: detect (writes the day's drift report and run document), ``wait_for_earlier_decisions``
(:func:`retrain.poke_decisions`, rescheduled while it says not done), ``decide_retrain`` (records
the day's decision) and, when it says so, ``request_retrain`` (the request, a step of its own).
Runs advance one step per round, interleaved, as the scheduler would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.lake import COMMIT_MARKER, Lake, read_json, write_json
from flightdeck.monitoring import retrain

# k=2 of n=3 windows, cooldown 3 days, a request open for 2 days: the policy's horizon is 2 days.
POLICY_ENV = {
    "FLIGHTDECK__DRIFT__BREACHES": "2",
    "FLIGHTDECK__DRIFT__WINDOWS": "3",
    "FLIGHTDECK__DRIFT__COOLDOWN_DAYS": "3",
    "FLIGHTDECK__DRIFT__REQUEST_TTL_DAYS": "2",
    "FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS": "6",
}
DAYS = [f"2013-07-{d:02d}" for d in range(2, 12)]  # ten days, 07-02..07-11
PATTERN = "BB.BBB..BB"  # B: the day's drift breaches; .: quiet
# Worked out by hand from the rules (k-of-n over the days up to D, cooldown, open requests of
# earlier days): 07-03 (2 of 2), 07-05 in cooldown of 07-03, 07-06 (2 of 3, cooldown over),
# 07-07 in cooldown of 07-06, 07-10 only 1 of 3, 07-11 (2 of 3).
EXPECTED_RETRAINS = ["2013-07-03", "2013-07-06", "2013-07-11"]
SHUFFLED = ["2013-07-05", "2013-07-11", "2013-07-02", "2013-07-08", "2013-07-10",
            "2013-07-03", "2013-07-07", "2013-07-04", "2013-07-09", "2013-07-06"]  # fmt: skip
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # the sensors' clock: before their deadline


def _report(day: str) -> dict[str, Any]:
    breached = PATTERN[DAYS.index(day)] == "B"
    psi = {"wx_temp": 1.9 if breached else 0.01, "wx_dewp": 0.8 if breached else 0.02, "distance": 0.01}
    drifted = ["wx_temp", "wx_dewp"] if breached else []
    return {"date": day, "status": "ok", "n_rows": 900, "min_rows": 200, "psi": psi, "n_features": 3,
            "drifted": drifted, "drifted_share": len(drifted) / 3, "prediction_psi": 0.05}  # fmt: skip


def _summary(day: str) -> dict[str, Any]:
    """The run document jobs/detect_drift.py hands on (runs/<key>/detect_drift.json)."""
    return {**_report(day), "partition": day, "model_name": "flight_delay", "model_version": "1",
            "n_predictions": 900, "psi_threshold": 0.2, "missing": [], "excluded": [],
            "prediction_threshold": 0.2, "prediction_drifted": False, "performance": None,
            "report_html": f"/lake/monitoring/drift_reports/{day}.html", "mlflow_run_id": "r"}  # fmt: skip


def _commit(lake: Lake, zone: str, day: str) -> None:
    folder = Path(lake.partition(zone, "flights", day))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMMIT_MARKER).touch()


@pytest.fixture()
def lake(lake_root: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    for key, value in POLICY_ENV.items():
        monkeypatch.setenv(key, value)
    lake = Lake(str(lake_root))
    # History the bootstrap loaded (bronze and features, no feature status): never monitored.
    for day in range(20, 31):
        _commit(lake, "bronze", f"2013-06-{day}")
        _commit(lake, "features", f"2013-06-{day}")
    _commit(lake, "bronze", "2013-07-01")
    _commit(lake, "features", "2013-07-01")
    # The ten days were ingested (a backfill): their features, scores and monitoring follow.
    for day in DAYS:
        _commit(lake, "bronze", day)
    return lake


def _run(lake: Lake, day: str, *, wait: bool, log: list[str]) -> Iterator[None]:
    """One monitoring run of ``day``, a step per ``next``."""
    key = f"mon-{day}"
    write_json(lake.drift_report(day), _report(day))  # detect_drift
    write_json(lake.run_doc(key, "detect_drift"), _summary(day))
    yield
    waited: dict[str, Any] | None = None
    while wait:  # wait_for_earlier_decisions, rescheduled until done
        done, waited = retrain.poke_decisions(day, NOW, NOW)
        if done:
            break
        log.append(f"{day} waits for {','.join(waited['undecided'])}")
        yield
    decision = retrain.decide_retrain(day, key, waited)
    yield
    if decision["retrain"]:  # request_retrain, the next task
        retrain.record_retrain_request(day, decision, key)


def _process(lake: Lake, order: list[str], *, wait: bool = True) -> tuple[dict[str, tuple[bool, str]], list[str]]:
    """Start the runs in ``order``, one per round, advancing every started run one step per round."""
    log: list[str] = []
    pending = list(order)
    running: list[Iterator[None]] = []
    while pending or running:
        if pending:
            running.append(_run(lake, pending.pop(0), wait=wait, log=log))
        for run in list(running):
            if next(run, "finished") == "finished":
                running.remove(run)
    decisions = {day: read_json(lake.retrain_decision(day)) for day in DAYS}
    return {d: (doc["retrain"], doc["reason"]) for d, doc in decisions.items()}, log


def test_the_horizon_is_the_policys_reach(lake: Lake) -> None:
    from flightdeck.core.config import load_config

    assert retrain.decision_horizon(load_config().drift) == 2


def test_same_decisions_in_day_order_and_shuffled(lake: Lake, lake_root: Path, tmp_path: Path) -> None:
    import shutil

    pristine = tmp_path / "pristine"
    shutil.copytree(lake_root, pristine)

    in_order, waits = _process(lake, DAYS)
    assert [d for d, (retrain_, _) in in_order.items() if retrain_] == EXPECTED_RETRAINS
    assert sorted(p.stem for p in Path(lake.retrain_requests()).glob("*.json")) == EXPECTED_RETRAINS

    shutil.rmtree(lake_root)
    shutil.copytree(pristine, lake_root)
    shuffled, waits = _process(lake, SHUFFLED)
    assert SHUFFLED.index("2013-07-11") < SHUFFLED.index("2013-07-10")
    assert shuffled == in_order
    assert sorted(p.stem for p in Path(lake.retrain_requests()).glob("*.json")) == EXPECTED_RETRAINS
    # 07-11 started before 07-10 and waited for it (and for 07-09); 07-02 never waited (07-01 is history).
    assert "2013-07-11 waits for 2013-07-09,2013-07-10" in waits
    assert not any(w.startswith("2013-07-02") for w in waits)


def test_without_the_wait_the_order_changes_decisions(lake: Lake) -> None:
    """The scenario is sensitive to order: deciding on arrival gives other decisions."""
    decided, _ = _process(lake, SHUFFLED, wait=False)
    assert [d for d, (r, _) in decided.items() if r] != EXPECTED_RETRAINS
    assert not decided["2013-07-11"][0]  # 07-10's breach was not there yet: 1 of 2 windows


def test_past_the_deadline_the_decision_names_the_days_it_went_without(lake: Lake) -> None:
    day = "2013-07-04"
    write_json(lake.drift_report(day), _report(day))
    write_json(lake.run_doc("mon", "detect_drift"), _summary(day))
    started = NOW - dt.timedelta(hours=1)
    done, status = retrain.poke_decisions(day, started, NOW)
    assert not done and status["undecided"] == ["2013-07-02", "2013-07-03"]
    done, status = retrain.poke_decisions(day, started, started + dt.timedelta(hours=6))
    assert done and status["undecided"] == ["2013-07-02", "2013-07-03"]
    retrain.decide_retrain(day, "mon", status)
    assert read_json(lake.retrain_decision(day))["went_without"] == ["2013-07-02", "2013-07-03"]
    # A day decided as "retrain" still blocks until its request is recorded.
    write_json(lake.retrain_decision("2013-07-05"), {"partition": "2013-07-05", "retrain": True, "reason": "r"})
    assert retrain.undecided_days(lake, _cfg(), "2013-07-06") == ["2013-07-05"]
    retrain.record_retrain_request("2013-07-05", {"reason": "r"}, "mon")
    assert retrain.undecided_days(lake, _cfg(), "2013-07-06") == []


def _cfg() -> Any:
    from flightdeck.core.config import load_config

    return load_config()
