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


def test_unfinished_claim_blocks_then_expires(registry: Any, lake: Any) -> None:
    """A promoter that claimed the ledger entry but died before moving the alias blocks moves for a while."""
    import datetime as dt

    from flightdeck.model.documents import LedgerEntry
    from flightdeck.model.registry import Move, PromotionConflict, _claim, champion_version, promote

    t0 = dt.datetime(2013, 7, 1, 12, 0, tzinfo=dt.UTC)
    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/a"), lake=lake, client=registry, now=t0)
    claim = {"action": "promote", "alias": "champion", "model_name": NAME, "seq": 2, "from": "1", "to": "2",
             "who": "crashed", "at": t0.isoformat(), "why": "x"}  # fmt: skip
    assert _claim(lake, LedgerEntry.model_validate(claim)) is not None
    assert _claim(lake, LedgerEntry.model_validate(claim)) is None  # exclusive
    with pytest.raises(PromotionConflict, match="in progress or unfinished"):
        promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry,
                now=t0 + dt.timedelta(seconds=10))  # fmt: skip
    late = promote(Move(NAME, "3", expected_current="1", decision_ref="runs/c"), lake=lake, client=registry,
                   now=t0 + dt.timedelta(hours=1))  # fmt: skip
    assert late["seq"] == 3 and late["supersedes_unfinished"] == 2
    assert champion_version(NAME, client=registry) == "3"
