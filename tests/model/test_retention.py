"""Model retention: the pure policy (keep, deprecate, wait, delete, restore, each with its reason) and the
maintenance run against a real MLflow store (a SQLite file with a local artifact folder), where
versions are deprecated and, after the grace period, deleted exactly as the policy names them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import Retention
from flightdeck.model.retention import DELETE, DEPRECATE, KEEP, RESTORE, WAIT, VersionState, plan

D = dt.date(2024, 5, 20)
POLICY = Retention(keep_last=2, window_days=10, grace_days=3)


def _actions(result: Any) -> dict[str, str]:
    return {s.version: s.action for s in result.steps}


def test_keeps_aliases_newest_and_recently_scored_versions() -> None:
    versions = [VersionState(str(v)) for v in range(1, 8)]
    aliases = {"champion": "2", "challenger": "7"}
    scored = {
        D - dt.timedelta(days=10): {"3"},  # the window's first day: still inside
        D - dt.timedelta(days=11): {"4"},  # one day before the window
        D: {"2"},
    }
    result = plan(versions, aliases, scored, D, POLICY)
    assert [s.version for s in result.steps] == ["7", "6", "5", "4", "3", "2", "1"]  # newest first
    assert _actions(result) == {
        "7": KEEP,  # challenger, and one of the 2 newest
        "6": KEEP,  # one of the 2 newest
        "5": DEPRECATE,
        "4": DEPRECATE,  # its predictions are older than the window
        "3": KEEP,  # named by a predictions partition within the window
        "2": KEEP,  # champion
        "1": DEPRECATE,
    }
    reasons = {s.version: s.reason for s in result.steps}
    assert "alias challenger" in reasons["7"] and "2 newest" in reasons["7"]
    assert "alias champion" in reasons["2"]
    assert "2024-05-10" in reasons["3"]
    assert all(s.deprecated_on == D for s in result.steps if s.action == DEPRECATE)
    assert result.versions(DEPRECATE) == ["5", "4", "1"]


def test_a_version_still_referenced_by_predictions_is_never_deleted() -> None:
    long_ago = D - dt.timedelta(days=100)
    versions = [VersionState("1", deprecated_on=long_ago), VersionState("2", deprecated_on=long_ago)]
    versions += [VersionState(str(v)) for v in range(3, 6)]
    scored = {D - dt.timedelta(days=1): {"1", "5"}}  # version 1 scored yesterday (a backfill, a shadow run)
    result = plan(versions, {"champion": "5"}, scored, D, POLICY)
    actions = _actions(result)
    assert actions["1"] == RESTORE  # deprecated long ago, but predictions in the window name it: kept, tag removed
    assert actions["2"] == DELETE
    assert "1" not in result.versions(DELETE)


def test_deprecated_then_deleted_after_the_grace_period() -> None:
    versions = [VersionState(str(v)) for v in range(1, 4)]
    first = plan(versions, {"champion": "3"}, {}, D, POLICY)
    assert first.versions(DEPRECATE) == ["1"]

    deprecated = [VersionState("1", deprecated_on=D), VersionState("2"), VersionState("3")]
    for days, action in [(1, WAIT), (2, WAIT), (3, DELETE), (30, DELETE)]:
        later = plan(deprecated, {"champion": "3"}, {}, D + dt.timedelta(days=days), POLICY)
        assert _actions(later)["1"] == action, days
    waiting = plan(deprecated, {"champion": "3"}, {}, D + dt.timedelta(days=1), POLICY)
    assert "deleted from 2024-05-23" in waiting.steps[-1].reason


def test_a_rolled_back_champion_is_restored_not_deleted() -> None:
    versions = [VersionState("1", deprecated_on=D - dt.timedelta(days=30))] + [VersionState(str(v)) for v in (2, 3, 4)]
    result = plan(versions, {"champion": "1"}, {}, D, POLICY)
    assert _actions(result) == {"4": KEEP, "3": KEEP, "2": DEPRECATE, "1": RESTORE}


def test_keep_last_counts_by_version_number_not_listing_order() -> None:
    versions = [VersionState(v) for v in ("9", "10", "2", "11")]
    assert plan(versions, {}, {}, D, POLICY).versions(KEEP) == ["11", "10"]


# --- the maintenance run on a real MLflow store --------------------------------------------------

NAME = "flightdeck-retention-test"


def _write_predictions(lake: Any, table: str, day: dt.date, versions: list[str]) -> None:
    """A committed predictions partition naming ``versions`` (a parquet file and the commit marker)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(lake.partition("predictions", table, day))
    folder.mkdir(parents=True, exist_ok=True)
    rows = pa.table({"probability": [0.5] * len(versions), "model_version": versions})
    pq.write_table(rows, folder / "part-00000.parquet")
    (folder / "_SUCCESS").touch()


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Six registered versions of a tiny sklearn model in a SQLite store with a local artifact folder."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("retention", artifact_location=(tmp_path / "artifacts").as_uri())
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    for _ in range(6):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(model, name="model", registered_model_name=NAME, pip_requirements=["scikit-learn"])
    return client


def _artifacts_exist(client: Any, version: str) -> bool:
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(client.get_model_version_download_uri(NAME, version))).exists()


def test_maintenance_deprecates_then_deletes_exactly_the_planned_versions(store: Any, tmp_path: Path) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.model.retention import DEPRECATED_TAG, retention_records, run_retention

    client = store
    base = load_config()
    cfg = base.model_copy(
        update={
            "model": base.model.model_copy(update={"name": NAME}),
            "retention": Retention(keep_last=2, window_days=10, grace_days=2),
        }
    )
    lake = Lake(str(tmp_path / "lake"))
    entity = cfg.dataset.entity.name
    client.set_registered_model_alias(NAME, "champion", "2")
    newest = dt.date(2013, 7, 10)  # the data's days, long before the run's (wall-clock) day
    _write_predictions(lake, entity, newest - dt.timedelta(days=40), ["1"])  # outside the window
    _write_predictions(lake, f"{entity}_shadow", newest - dt.timedelta(days=3), ["3"])  # shadow scoring, inside
    _write_predictions(lake, entity, newest, ["2"])
    run_day = dt.date(2026, 12, 6)
    artifacts = {v: _artifacts_exist(client, v) for v in ("1", "4")}
    assert artifacts == {"1": True, "4": True}

    dry = run_retention(cfg, lake, run_day=run_day, dry_run=True, who="tester", client=client)
    assert dry.dry_run and dry.day == newest.isoformat()
    assert {s.version: s.action for s in dry.steps} == {
        "6": KEEP, "5": KEEP, "4": DEPRECATE, "3": KEEP, "2": KEEP, "1": DEPRECATE,
    }  # fmt: skip
    assert not any(DEPRECATED_TAG in client.get_model_version(NAME, v).tags for v in "123456")

    first = run_retention(cfg, lake, run_day=run_day, who="tester", client=client)
    assert [s.version for s in first.steps if s.done] == ["4", "1"]
    tagged = {v for v in "123456" if DEPRECATED_TAG in client.get_model_version(NAME, v).tags}
    assert tagged == {"1", "4"}
    assert client.get_model_version(NAME, "1").tags[DEPRECATED_TAG] == newest.isoformat()

    # the data has not moved on: still in the grace period, nothing deleted
    waiting = run_retention(cfg, lake, run_day=run_day + dt.timedelta(days=5), who="tester", client=client)
    assert {s.version for s in waiting.steps if s.action == WAIT} == {"1", "4"}
    assert len(client.search_model_versions(f"name='{NAME}'")) == 6

    # two scored days later the grace period is over
    _write_predictions(lake, entity, newest + dt.timedelta(days=2), ["2"])
    last = run_retention(cfg, lake, run_day=run_day + dt.timedelta(days=6), who="tester", client=client)
    assert sorted(s.version for s in last.steps if s.action == DELETE and s.done) == ["1", "4"]
    remaining = sorted(int(mv.version) for mv in client.search_model_versions(f"name='{NAME}'"))
    assert remaining == [2, 3, 5, 6]  # 3 kept: the shadow predictions of 2013-07-07 are in the window
    assert all(s.deleted_uri for s in last.steps if s.action == DELETE)
    for step in last.steps:
        if step.action == DELETE:
            from mlflow.utils.file_utils import local_file_uri_to_path

            assert not Path(local_file_uri_to_path(step.deleted_uri)).exists()
    assert _artifacts_exist(client, "3")

    records = retention_records(NAME, lake=lake)
    assert [(r.seq, r.dry_run) for r in records] == [(1, True), (2, False), (3, False), (4, False)]
    assert records[-1].who == "tester" and all(not s.error for r in records for s in r.steps)
    ledger_files = sorted(p.name for p in (tmp_path / "lake" / "monitoring" / "promotions").iterdir())
    assert ledger_files == [f"{NAME}-retention-00000{i}.json" for i in range(1, 5)]


def test_the_page_shows_each_retention_run_and_its_steps() -> None:
    from flightdeck.model.documents import RetentionRecord, RetentionStep
    from flightdeck.ops.ui_page import render_page

    record = RetentionRecord(
        model_name="m", seq=4, who="airflow:scheduled", at="2026-12-06T01:00:00+00:00", day="2013-07-10",
        dry_run=False, policy=POLICY.model_dump(mode="json"),
        steps=[
            RetentionStep(version="3", action=KEEP, reason="kept: alias champion"),
            RetentionStep(version="2", action=DELETE, reason="deprecated on 2013-07-01; grace ended 2013-07-04",
                          done=True),
            RetentionStep(version="1", action=DEPRECATE, reason="not aliased", error="MlflowException: boom"),
        ],
    )  # fmt: skip
    data = {"model_name": "m", "versions": [], "ledger": [], "drift": [], "ingest": [], "requests": [],
            "policy": {}, "retention": [record.to_json()]}  # fmt: skip
    body = render_page(data)
    assert "<h2>Model retention (alias ledger)</h2>" in body
    assert "v2 delete</span> (done: deprecated on 2013-07-01; grace ended 2013-07-04)" in body
    assert "v1 deprecate</span> (MlflowException: boom: not aliased)" in body
    assert "<td>2013-07-10</td><td>applied</td><td>1</td>" in body  # window end, mode, versions kept
    deprecated = [{"version": "1", "aliases": [], "metrics": {}, "tags": {"flightdeck.deprecated": "2013-07-01"}}]
    assert "<span class='muted'>deprecated 2013-07-01</span>" in render_page({**data, "versions": deprecated})
    empty = render_page({**data, "retention": []})
    assert "No retention run recorded yet" in empty
