"""Fenced promotion: a promoter whose claim was superseded never leaves the alias moved, whatever
its clock says, and a retried rollback does not move twice.

Real parts and real faults: a real MLflow server (SQLite backend) on a free loopback port,
promoters in their own OS processes (``fencing_child.py``) with a barrier just before their
alias move (the worst moment: the fencing check passed, the move not yet made), and a
loopback proxy (``testkit.TcpProxy``) that *holds* the stalled promoter's connection (a slow
server, not a cut) while another promoter supersedes its claim. Claims go stale after a few
seconds here (``FLIGHTDECK_PROMOTION_CLAIM_TTL``) so the test waits seconds, not minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fencing_child
import pytest
from testkit import TcpProxy, free_port

from flightdeck.core.lake import Lake
from flightdeck.model import registry
from flightdeck.model.registry import Move, PromotionConflict, champion_version, ledger_entries, promote, rollback

CHILD = Path(__file__).with_name("fencing_child.py")
RUN = uuid.uuid4().hex[:8]  # model names unique per run


class Server:
    """The MLflow server: ``url`` direct, ``proxy`` the path a test can hold or cut."""

    def __init__(self, url: str, proxy: TcpProxy) -> None:
        self.url = url
        self.proxy = proxy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    state = tmp_path_factory.mktemp("fenced-mlflow")
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
           "--artifacts-destination", str(state / "artifacts"),
           # a held request must find its connection open: no idle cut-off while the proxy holds it
           "--uvicorn-opts", "--timeout-keep-alive 600"]  # fmt: skip
    with (state / "mlflow.log").open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=state, start_new_session=True,
            env=os.environ | {"NO_PROXY": "*", "no_proxy": "*"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a loaded CI machine imports slowly
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"MLflow server did not start; see {state / 'mlflow.log'}")
                time.sleep(0.5)
        proxy = TcpProxy(port)
        yield Server(url, proxy)
        proxy.release()
        proxy.cut()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # uvicorn waits for idle keep-alive connections; no need to
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _client(url: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _model(server: Server, name: str, n: int) -> Any:
    """Register ``n`` versions of ``name`` and make v1 champion; returns a direct client."""
    c = _client(server.url)
    c.create_registered_model(name)
    exp = c.create_experiment(f"exp-{name}")
    for _ in range(n):
        run = c.create_run(exp)
        c.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
        c.set_terminated(run.info.run_id)
        c.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return c


class Promoter:
    """A promoter in its own OS process (``fencing_child.py``)."""

    def __init__(self, tmp: Path, tag: str, env: dict[str, str], **spec: Any) -> None:
        self.dir = tmp / tag
        self.dir.mkdir()
        self.result = self.dir / "result.json"
        spec = {**spec, "result": str(self.result), "who": tag}
        self.log = (self.dir / "log.txt").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(spec)],
            stdout=self.log, stderr=subprocess.STDOUT, env=os.environ | {"NO_PROXY": "*", "no_proxy": "*"} | env,
        )  # fmt: skip

    def wait_file(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.dir / name).exists():
            assert self.proc.poll() is None, f"promoter ended early; see {self.dir / 'log.txt'}"
            assert time.monotonic() < deadline, f"promoter never reached {name}; see {self.dir / 'log.txt'}"
            time.sleep(0.02)

    def go(self) -> None:
        (self.dir / "go").write_text("")

    def outcome(self, timeout: float = 90) -> dict[str, Any]:
        try:
            assert self.proc.wait(timeout=timeout) == 0, f"see {self.dir / 'log.txt'}"
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        out: dict[str, Any] = json.loads(self.result.read_text())
        return out


def _chain(lake: Lake, name: str) -> list[dict[str, Any]]:
    """The champion ledger, checked: consecutive seqs, each move from where the alias was."""
    moves = [e.to_json() for e in ledger_entries(name, alias="champion", lake=lake)]
    assert [m["seq"] for m in moves] == list(range(1, len(moves) + 1)), moves
    return moves


def test_a_promoter_stalled_past_its_claim_never_leaves_the_alias_moved(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"fenced-stall-{RUN}"
    lake = Lake(str(tmp_path / "lake"))
    c = _model(server, name, 3)
    promote(Move(name, "1", expected_current=None, decision_ref="runs/first"), lake=lake, client=c)
    ttl = {"FLIGHTDECK_PROMOTION_CLAIM_TTL": "3"}
    # The first promoter's server is slow: its request waits in the proxy, it waits for the answer.
    first = Promoter(tmp_path, "first", ttl | {"FLIGHTDECK_PROMOTION_HTTP_TIMEOUT": "300",
                     "FLIGHTDECK_PROMOTION_HTTP_RETRIES": "0"}, tracking_uri=server.proxy.url, lake=lake.root,
                     name=name, version="2", expected="1", decision_ref="runs/first-promoter",
                     pause_at_move=str(tmp_path / "first"))  # fmt: skip
    first.wait_file("at_move")  # claimed #2 and passed its fencing check; the move is next
    server.proxy.hold()
    first.go()
    time.sleep(3.5)  # the claim is now stale by the lake's clock, and the first promoter is still alive
    assert first.proc.poll() is None
    assert champion_version(name, client=c) == "1"
    # The second promoter (this test's process) finds the claim stale and supersedes it.
    for var, value in ttl.items():
        monkeypatch.setenv(var, value)
    record = promote(Move(name, "3", expected_current="1", decision_ref="runs/second-promoter", who="second"),
                     lake=lake, client=_client(server.url))  # fmt: skip
    assert record["seq"] == 3 and record["supersedes_unfinished"] == 2
    assert champion_version(name, client=c) == "3"
    assert first.proc.poll() is None, "the first promoter is still waiting for its held request"

    server.proxy.release()  # the slow server now applies the stale move: champion -> v2, for a moment
    lost = first.outcome()
    assert lost["outcome"] == "superseded", lost
    assert "superseded by #3" in lost["error"] and "did NOT happen" in lost["error"]
    # its late move did land (the slow server applied it), and the loser itself put the alias back
    assert "putting champion back on v3" in (tmp_path / "first" / "log.txt").read_text()
    assert champion_version(name, client=c) == "3"
    moves = _chain(lake, name)
    assert [(m["from"], m["to"], m["who"]) for m in moves] == [
        (None, "1", moves[0]["who"]), ("1", "2", "first"), ("1", "3", "second")
    ]  # fmt: skip
    assert moves[-1]["supersedes_unfinished"] == 2
    assert "promoted_from" not in c.get_model_version(name, "2").tags  # the loser wrote no promotion tags
    assert c.get_model_version(name, "3").tags["promoted_from"] == "1"
    assert c.get_registered_model(name).tags["ledger.champion.seq"] == "3"


def test_a_held_connection_gives_up_within_the_bound(server: Server, tmp_path: Path) -> None:
    """With the promotion's bounded HTTP settings a held alias move fails in seconds, not MLflow's minutes."""
    name = f"fenced-bounded-{RUN}"
    lake = Lake(str(tmp_path / "lake"))
    c = _model(server, name, 2)
    promote(Move(name, "1", expected_current=None, decision_ref="runs/first"), lake=lake, client=c)
    p = Promoter(tmp_path, "held", {"FLIGHTDECK_PROMOTION_HTTP_TIMEOUT": "2", "FLIGHTDECK_PROMOTION_HTTP_RETRIES": "1"},
                 tracking_uri=server.proxy.url, lake=lake.root, name=name, version="2", expected="1",
                 decision_ref="runs/held", pause_at_move=str(tmp_path / "held"))  # fmt: skip
    p.wait_file("at_move")
    server.proxy.hold()
    started = time.monotonic()
    p.go()
    try:
        out = p.outcome(timeout=60)
        took = time.monotonic() - started
    finally:
        server.proxy.cut()  # drop what was held: it is never delivered
        server.proxy.release()
        server.proxy.restore()
    assert out["outcome"] == "error", out
    assert took < 20, f"the held move took {took:.0f}s to give up"
    assert champion_version(name, client=c) == "1"
    assert _chain(lake, name)[-1]["to"] == "2"  # its claim stays, unfinished, until it goes stale


def test_a_promoter_with_a_skewed_clock_neither_supersedes_a_live_claim_nor_loses_its_own(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claim ages come from the lake's clock: an hour of skew either way changes nothing."""
    name = f"fenced-skew-{RUN}"
    lake = Lake(str(tmp_path / "lake"))
    c = _model(server, name, 3)
    promote(Move(name, "1", expected_current=None, decision_ref="runs/first"), lake=lake, client=c)
    # A promoter an hour behind claims (its claim's "at" looks an hour old) and is paused at its move.
    behind = Promoter(tmp_path, "behind", {"FLIGHTDECK_PROMOTION_CLAIM_TTL": "300"}, tracking_uri=server.url,
                      lake=lake.root, name=name, version="2", expected="1", decision_ref="runs/behind",
                      pause_at_move=str(tmp_path / "behind"), clock_offset=-3600)  # fmt: skip
    behind.wait_file("at_move")
    # A promoter an hour ahead (this test's process, its clock skewed) sees that claim as two hours
    # old by its own clock: it must not supersede it.
    monkeypatch.setattr(registry, "dt", fencing_child.skewed_datetime(3600))
    with pytest.raises(PromotionConflict, match=r"in progress or unfinished.*nothing moved"):
        promote(Move(name, "3", expected_current="1", decision_ref="runs/ahead", who="ahead"), lake=lake,
                client=_client(server.url))  # fmt: skip
    monkeypatch.undo()
    assert champion_version(name, client=c) == "1"
    behind.go()
    won = behind.outcome()
    assert won["outcome"] == "won", won
    assert champion_version(name, client=c) == "2"
    moves = _chain(lake, name)
    assert [(m["from"], m["to"]) for m in moves] == [(None, "1"), ("1", "2")]
    assert moves[-1]["at"] < moves[0]["at"]  # recorded by a clock an hour behind, judged by the lake's


def test_a_retried_rollback_is_a_noop_after_its_move(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback's first try moves the alias, then the server drops before its tags; the retry
    (same op id) finds its own move and does not roll back one more version."""
    from mlflow import MlflowClient

    monkeypatch.setenv("FLIGHTDECK_PROMOTION_HTTP_RETRIES", "0")
    name = f"fenced-rollback-{RUN}"
    lake = Lake(str(tmp_path / "lake"))
    c = _model(server, name, 3)
    for version, expected in (("1", None), ("2", "1"), ("3", "2")):
        promote(Move(name, version, expected_current=expected, decision_ref=f"runs/{version}"), lake=lake, client=c)

    class Dropping(MlflowClient):  # type: ignore[misc]
        def set_model_version_tag(self, *args: Any, **kwargs: Any) -> Any:
            server.proxy.cut()  # the server is gone right after the alias move
            return super().set_model_version_tag(*args, **kwargs)

    op = "flightdeck_rollback/manual__2013-07-02T00:00:00"
    with pytest.raises(Exception, match=r"(?i)connect|max retries|refused"):
        rollback(name, why="bad scores", lake=lake, op_id=op,
                 client=Dropping(tracking_uri=server.proxy.url, registry_uri=server.proxy.url))  # fmt: skip
    server.proxy.restore()
    assert champion_version(name, client=c) == "2"
    retried = rollback(name, why="bad scores", lake=lake, op_id=op, client=_client(server.proxy.url))
    assert retried["noop"] and (retried["from"], retried["to"], retried["op_id"]) == ("3", "2", op)
    assert champion_version(name, client=c) == "2", "the retry rolled back one more version"
    assert c.get_model_version(name, "2").tags["rolled_back_from"] == "3"  # the retry finished the tags
    again = rollback(name, why="bad scores", lake=lake, op_id=op, client=c)
    assert again["noop"] and champion_version(name, client=c) == "2"
    moves = _chain(lake, name)
    assert [(m["action"], m["from"], m["to"]) for m in moves][-1] == ("rollback", "3", "2")
    assert len(moves) == 4 and all(a["to"] == b["from"] for a, b in itertools.pairwise(moves))
    # A different operation is a new rollback, and walks back as rollbacks do.
    other = rollback(name, why="still bad", lake=lake, op_id="flightdeck_rollback/manual__other", client=c)
    assert not other.get("noop") and (other["from"], other["to"]) == ("2", "1")
