"""Registry aliases against a real MLflow tracking store (a SQLite file): promotion, compare-and-set
under racing promoters, rollback, and the alias ledger in the lake."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NAME = "flightdeck-test-model"


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Any]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(4):
        client.create_model_version(NAME, source=str(source))
    yield client


@pytest.fixture()
def lake(tmp_path: Path) -> Any:
    from flightdeck.core.lake import Lake

    return Lake(str(tmp_path / "lake"))


def test_promote_and_rollback(registry: Any, lake: Any) -> None:
    from flightdeck.model.registry import (
        Move,
        PromotionConflict,
        RegistryError,
        champion_version,
        ledger_entries,
        promote,
        rollback,
        set_challenger,
        tag_decision,
    )

    assert champion_version("no-such-model", client=registry) is None
    assert champion_version(NAME, client=registry) is None  # no alias yet

    set_challenger(NAME, "1", why="trained on 2013-01", who="alice", lake=lake, client=registry)
    tag_decision(
        NAME, "1", {"passed": True, "reasons": ["first"], "checks": {"min_auc": {"passed": True}}}, client=registry
    )
    first = promote(
        Move(NAME, "1", expected_current=None, decision_ref="runs/a", who="alice"), lake=lake, client=registry
    )
    assert champion_version(NAME, client=registry) == "1"
    assert (first["from"], first["to"], first["who"], first["seq"]) == (None, "1", "alice", 1)
    assert "challenger" not in registry.get_registered_model(NAME).aliases
    assert registry.get_model_version(NAME, "1").tags["gate.min_auc"] == "true"

    promote(Move(NAME, "2", expected_current="1", decision_ref="runs/b", who="bob"), lake=lake, client=registry)
    assert champion_version(NAME, client=registry) == "2"
    tags = registry.get_model_version(NAME, "2").tags
    assert tags["promoted_from"] == "1" and tags["gate_decision"] == "runs/b" and tags["promoted_by"] == "bob"
    model_tags = registry.get_registered_model(NAME).tags
    assert model_tags["ledger.champion.seq"] == "2" and model_tags["ledger.champion.last"].startswith(
        "#2 v1 -> v2 by bob"
    )

    with pytest.raises(PromotionConflict, match="champion is v2 but the caller expected v1"):
        promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry)
    assert champion_version(NAME, client=registry) == "2"

    back = rollback(NAME, why="bad scores on 2013-07-02", who="carol", lake=lake, client=registry)
    assert (back["action"], back["from"], back["to"], back["who"]) == ("rollback", "2", "1", "carol")
    assert champion_version(NAME, client=registry) == "1"
    assert registry.get_model_version(NAME, "1").tags["rolled_back_from"] == "2"
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(NAME, lake=lake, client=registry)

    named = rollback(NAME, to_version="v4", why="known good", lake=lake, client=registry)
    assert (named["from"], named["to"]) == ("1", "4") and champion_version(NAME, client=registry) == "4"
    with pytest.raises(RegistryError, match="already the champion"):
        rollback(NAME, to_version="4", lake=lake, client=registry)

    moves = ledger_entries(NAME, alias="champion", lake=lake)
    assert [(m.action, m.from_, m.to) for m in moves] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("rollback", "2", "1"), ("rollback", "1", "4")
    ]  # fmt: skip
    assert [m.seq for m in moves] == [1, 2, 3, 4]
    assert all(m.who and m.at and m.why for m in moves)
    assert [(m.alias, m.to) for m in ledger_entries(NAME, alias="challenger", lake=lake)] == [("challenger", "1")]


def test_racing_promotions_exactly_one_wins(registry: Any, lake: Any, tmp_path: Path) -> None:
    """Several promoters compared against the same champion start at once: one moves it, the rest stop."""
    from mlflow import MlflowClient

    from flightdeck.model.registry import Move, PromotionConflict, champion_version, ledger_entries, promote

    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/first"), lake=lake, client=registry)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    contenders = ["2", "3", "4"]
    start = threading.Barrier(len(contenders))
    outcomes: dict[str, str] = {}

    def race(version: str) -> None:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # one client per promoter, like separate tasks
        start.wait()
        try:
            promote(Move(NAME, version, expected_current="1", decision_ref=f"runs/{version}", who=f"run-{version}"),
                    lake=lake, client=client)  # fmt: skip
            outcomes[version] = "won"
        except PromotionConflict as err:
            outcomes[version] = f"conflict: {err}"

    for _ in range(3):  # several rounds: the interleavings differ
        threads = [threading.Thread(target=race, args=(v,)) for v in contenders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        winners = [v for v, o in outcomes.items() if o == "won"]
        assert len(winners) == 1, outcomes
        losers = [o for v, o in outcomes.items() if v not in winners]
        assert all(("nothing moved" in o or "caller expected" in o) for o in losers), losers
        champion = champion_version(NAME, client=registry)
        assert champion == winners[0]
        moves = ledger_entries(NAME, alias="champion", lake=lake)
        # the ledger is a chain: every move starts where the previous one ended, and ends at the alias
        assert [m.seq for m in moves] == list(range(1, len(moves) + 1))
        assert all(a.to == b.from_ for a, b in itertools.pairwise(moves))
        assert moves[-1].to == champion and moves[-1].who == f"run-{champion}"
        # reset for the next round: the winner steps back to v1 through the ledger
        from flightdeck.model.registry import rollback

        rollback(NAME, to_version="1", lake=lake, client=registry)
        outcomes.clear()


def _age(lake: Any, seq: int, seconds: float) -> None:
    """Make ledger entry ``seq`` look ``seconds`` old to the lake's clock (its stored time, set back)."""
    import os
    import time

    (path,) = [p for p in Path(lake.promotions()).iterdir() if p.name.endswith(f"-champion-{seq:06d}.json")]
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_unfinished_claim_blocks_then_expires(registry: Any, lake: Any) -> None:
    """A promoter that claimed the ledger entry but died before moving the alias blocks moves for a while;
    the claim's age is the lake's (the file's stored time), not the clock of whoever wrote it."""
    import datetime as dt

    from flightdeck.model.documents import LedgerEntry
    from flightdeck.model.registry import Move, PromotionConflict, _claim, champion_version, promote

    t0 = dt.datetime(2013, 7, 1, 12, 0, tzinfo=dt.UTC)
    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/a"), lake=lake, client=registry, now=t0)
    claim = {"action": "promote", "alias": "champion", "model_name": NAME, "seq": 2, "from": "1", "to": "2",
             "who": "crashed", "at": t0.isoformat(), "why": "x"}  # fmt: skip
    assert _claim(lake, LedgerEntry.model_validate(claim)) is not None
    assert _claim(lake, LedgerEntry.model_validate(claim)) is None  # exclusive
    # its writer's clock said 2013: a promoter that trusted it would supersede the live claim at once
    with pytest.raises(PromotionConflict, match="in progress or unfinished"):
        promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry)
    _age(lake, 2, 299)
    with pytest.raises(PromotionConflict, match="in progress or unfinished"):
        promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry)
    _age(lake, 2, 301)
    late = promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry)
    assert late["seq"] == 3 and late["supersedes_unfinished"] == 2
    assert champion_version(NAME, client=registry) == "3"


def test_fencing_before_the_move(registry: Any, lake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim superseded (or grown too old) between its creation and the alias move moves nothing."""
    from flightdeck.model import registry as reg
    from flightdeck.model.documents import LedgerEntry
    from flightdeck.model.registry import Move, PromotionConflict, PromotionSuperseded, champion_version, promote

    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/a"), lake=lake, client=registry)
    real_claim = reg._claim

    def claim_then_superseded(lake_: Any, entry: LedgerEntry) -> str | None:
        path = real_claim(lake_, entry)
        newer = entry.model_copy(update={"seq": entry.seq + 1, "to": "3", "who": "newer"})
        assert real_claim(lake_, newer) is not None
        return path

    def claim_then_stall(lake_: Any, entry: LedgerEntry) -> str | None:
        path = real_claim(lake_, entry)
        _age(lake_, entry.seq, 200)  # the promoter stalled 200 s after claiming (TTL 300)
        return path

    monkeypatch.setattr(reg, "_claim", claim_then_stall)
    with pytest.raises(PromotionConflict, match=r"more than half .*nothing moved"):
        promote(Move(NAME, "4", expected_current="1", decision_ref="runs/d"), lake=lake, client=registry)
    assert champion_version(NAME, client=registry) == "1"
    _age(lake, 2, 400)  # that claim is stale now: the next promoter supersedes it with #3

    monkeypatch.setattr(reg, "_claim", claim_then_superseded)
    with pytest.raises(PromotionSuperseded, match=r"superseded by #4 .*nothing moved"):
        promote(Move(NAME, "2", expected_current="1", decision_ref="runs/b"), lake=lake, client=registry)
    assert champion_version(NAME, client=registry) == "1"


def test_a_move_superseded_in_flight_is_put_back(registry: Any, lake: Any, tmp_path: Path) -> None:
    """The alias move lands after a newer claim moved the alias: the loser puts it back and fails."""
    from mlflow import MlflowClient

    from flightdeck.model.documents import LedgerEntry
    from flightdeck.model.registry import (
        Move,
        PromotionSuperseded,
        _claim,
        champion_version,
        ledger_entries,
        promote,
    )

    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/a"), lake=lake, client=registry)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    class Late(MlflowClient):  # type: ignore[misc]
        def set_registered_model_alias(self, name: str, alias: str, version: Any) -> None:
            if str(version) == "2":  # meanwhile the newer promoter claimed #3 and moved the alias
                newer = {"action": "promote", "alias": "champion", "model_name": NAME, "seq": 3, "from": "1",
                         "to": "3", "who": "newer", "at": "x", "why": "y"}  # fmt: skip
                assert _claim(lake, LedgerEntry.model_validate(newer)) is not None
                super().set_registered_model_alias(name, alias, "3")
            super().set_registered_model_alias(name, alias, version)  # the late write

    with pytest.raises(PromotionSuperseded, match=r"superseded by #3 .*champion is v3.*did NOT happen"):
        promote(Move(NAME, "2", expected_current="1", decision_ref="runs/b"), lake=lake,
                client=Late(tracking_uri=uri, registry_uri=uri))  # fmt: skip
    assert champion_version(NAME, client=registry) == "3"
    assert [m.seq for m in ledger_entries(NAME, alias="champion", lake=lake)] == [1, 2, 3]
    assert "promoted_from" not in registry.get_model_version(NAME, "2").tags


def test_a_retried_rollback_is_a_noop(registry: Any, lake: Any) -> None:
    from flightdeck.model.registry import Move, champion_version, ledger_entries, promote, rollback

    for version, expected in (("1", None), ("2", "1"), ("3", "2")):
        promote(Move(NAME, version, expected_current=expected, decision_ref=f"runs/{version}"), lake=lake,
                client=registry)  # fmt: skip
    first = rollback(NAME, lake=lake, client=registry, op_id="dag/run-1")
    assert (first["from"], first["to"], first["op_id"]) == ("3", "2", "dag/run-1") and not first.get("noop")
    retry = rollback(NAME, lake=lake, client=registry, op_id="dag/run-1")
    assert retry["noop"] and retry["seq"] == first["seq"] and champion_version(NAME, client=registry) == "2"
    assert len(ledger_entries(NAME, alias="champion", lake=lake)) == 4
    other = rollback(NAME, lake=lake, client=registry, op_id="dag/run-2")
    assert (other["from"], other["to"]) == ("2", "1")


def test_bounded_http_sets_and_restores_mlflow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from flightdeck.model.registry import bounded_http

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the caller's stricter setting wins
    with bounded_http(), bounded_http():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    monkeypatch.setenv("FLIGHTDECK_PROMOTION_HTTP_TIMEOUT", "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    with bounded_http():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"


def test_claims_on_s3_are_aged_by_the_stores_clock(s3_bucket: str) -> None:
    """On S3 a claim's age is its LastModified against a probe's, both stamped by the store."""
    import boto3

    from flightdeck.core.lake import Lake, list_docs
    from flightdeck.model.documents import LedgerEntry
    from flightdeck.model.registry import _claim, _claim_age

    lake = Lake(f"s3a://{s3_bucket}/lake")
    entry = LedgerEntry.model_validate({"action": "promote", "alias": "champion", "model_name": NAME, "seq": 1,
                                        "from": None, "to": "1", "who": "x", "at": "2000-01-01T00:00:00+00:00",
                                        "why": "y"})  # fmt: skip
    assert _claim(lake, entry) is not None and _claim(lake, entry) is None
    age = _claim_age(lake, entry)
    assert -2 <= age < 30, age  # seconds, not the 20+ years its "at" says
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 1 and len(list_docs(lake.promotions())) == 1  # the clock probe is gone
