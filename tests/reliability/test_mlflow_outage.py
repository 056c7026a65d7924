"""The MLflow server drops out during promotion: the task fails, its retry finishes the move,
and the registry is never left half promoted.

A real MLflow server (the embedded runtime's, with its backend store on the machine's
PostgreSQL, as in production) is cut off from its client at three points of a promotion:
before it starts, between the ledger claim and the alias move, and after the alias move but
before the version tags. The outage is a loopback TCP proxy that refuses and drops
connections (``testkit.TcpProxy``), so one server start serves the whole test.
Each time the promotion raises, the champion is either the old version or the new one
(never anything else), the ledger is a chain with no lost or duplicate move, and the retry of
the same task (same decision reference, as an Airflow retry has) completes it. PostgreSQL
must be at 127.0.0.1:5432: without it the test fails, it never skips.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit import PostgresUnavailable, TcpProxy, drop_database, free_port, fresh_database, pg_uri

from flightdeck.core.lake import Lake
from flightdeck.model.registry import Move, PromotionConflict, champion_version, ledger_entries, promote
from flightdeck.ops.runtime import Runtime

NAME = "flightdeck-outage-model"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpProxy]:
    """The MLflow server, reached through a proxy that the test cuts and restores."""
    try:
        db = fresh_database("flightdeck_reliability_mlflow")
    except PostgresUnavailable as err:
        pytest.fail(str(err))
    rt = Runtime(state=tmp_path_factory.mktemp("outage-state"), mlflow_port=free_port(), mlflow_db=pg_uri(db))
    rt.start(services=("mlflow",))
    proxy = TcpProxy(rt.mlflow_port)
    user, password = rt.mlflow_credentials() or ("", "")
    mp = pytest.MonkeyPatch()  # the server runs MLflow's basic-auth app: the clients log in
    mp.setenv("MLFLOW_TRACKING_USERNAME", user)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", password)
    try:
        yield proxy
    finally:
        mp.undo()
        proxy.cut()
        rt.stop()
        drop_database(db)


@pytest.fixture()
def fast_failing_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable server fails a call at once (MLflow's default is minutes of retries):
    retrying is the orchestrator's job (every flightdeck task has retries)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _client(server: TcpProxy, cls: type[Any] | None = None) -> Any:
    from mlflow import MlflowClient

    return (cls or MlflowClient)(tracking_uri=server.url, registry_uri=server.url)


def _versions(server: TcpProxy, n: int) -> None:
    """Register ``n`` model versions (a run's artifact folder as each one's source)."""
    c = _client(server)
    c.create_registered_model(NAME)
    exp = c.create_experiment("outage")
    for _ in range(n):
        run = c.create_run(exp)
        c.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
        c.set_terminated(run.info.run_id)
        c.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)


def _stopping_client(server: TcpProxy, method: str) -> Any:
    """A real client whose call of ``method`` finds the server gone: the connection is cut just
    before the call goes out, as a crash of the tracking server at that moment would."""
    from mlflow import MlflowClient

    class Stopping(MlflowClient):  # type: ignore[misc]
        pass

    def stop_then_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        server.cut()
        return getattr(MlflowClient, method)(self, *args, **kwargs)

    setattr(Stopping, method, stop_then_call)
    return _client(server, Stopping)


def _assert_chain(lake: Lake, champion: str | None) -> list[dict[str, Any]]:
    moves = [entry.to_json() for entry in ledger_entries(NAME, alias="champion", lake=lake)]
    assert [m["seq"] for m in moves] == list(range(1, len(moves) + 1)), moves
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(moves)), moves
    if champion is not None:
        assert moves[-1]["to"] == champion
    return moves


def test_promotion_survives_the_server_dropping_out(
    server: TcpProxy, fast_failing_client: None, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    _versions(server, 4)
    promote(Move(NAME, "1", expected_current=None, decision_ref="runs/first"), lake=lake, client=_client(server))

    # 1. The server is down when the promote task starts: it fails, nothing is claimed or moved.
    server.cut()
    with pytest.raises(Exception, match=r"(?i)connect|max retries|refused"):
        promote(Move(NAME, "2", expected_current="1", decision_ref="runs/a"), lake=lake, client=_client(server))
    server.restore()
    assert champion_version(NAME, client=_client(server)) == "1"
    assert len(_assert_chain(lake, "1")) == 1

    # 2. The server dies between the ledger claim and the alias move.
    with pytest.raises(Exception, match=r"(?i)connect|max retries|refused"):
        promote(Move(NAME, "2", expected_current="1", decision_ref="runs/a"), lake=lake,
                client=_stopping_client(server, "set_registered_model_alias"))  # fmt: skip
    server.restore()
    client = _client(server)
    assert champion_version(NAME, client=client) == "1", "the alias did not move"
    assert ledger_entries(NAME, alias="champion", lake=lake)[-1].to == "2"  # the claim is there, unfinished
    # Another run cannot slip in while the claim is fresh ...
    with pytest.raises(PromotionConflict, match="nothing moved"):
        promote(Move(NAME, "3", expected_current="1", decision_ref="runs/other"), lake=lake, client=client)
    # ... and the retry of the interrupted task finishes its own move, without a second claim.
    done = promote(Move(NAME, "2", expected_current="1", decision_ref="runs/a"), lake=lake, client=client)
    assert done["seq"] == 2 and "supersedes_unfinished" not in done
    assert champion_version(NAME, client=client) == "2"
    assert client.get_model_version(NAME, "2").tags["promoted_from"] == "1"
    assert len(_assert_chain(lake, "2")) == 2

    # 3. The server dies after the alias moved, before the version's tags were written.
    with pytest.raises(Exception, match=r"(?i)connect|max retries|refused"):
        promote(Move(NAME, "3", expected_current="2", decision_ref="runs/b"), lake=lake,
                client=_stopping_client(server, "set_model_version_tag"))  # fmt: skip
    server.restore()
    client = _client(server)
    assert champion_version(NAME, client=client) == "3"
    assert "promoted_from" not in client.get_model_version(NAME, "3").tags
    # The retry recognises its own finished move: no conflict, the tags are completed.
    again = promote(Move(NAME, "3", expected_current="2", decision_ref="runs/b"), lake=lake, client=client)
    assert again["seq"] == 3
    assert client.get_model_version(NAME, "3").tags["promoted_from"] == "2"
    moves = _assert_chain(lake, "3")
    assert [(m["from"], m["to"]) for m in moves] == [(None, "1"), ("1", "2"), ("2", "3")]
    summary = client.get_registered_model(NAME).tags
    assert summary["ledger.champion.seq"] == "3"
