"""A promoter in its own OS process, for tests/reliability/test_fenced_promotion.py.

Run as ``python fencing_child.py '<json spec>'``. It promotes ``version`` over ``expected``
through :func:`flightdeck.model.registry.promote` with a real MLflow client at ``tracking_uri``
and writes its outcome (``won``, ``superseded``, ``conflict`` or ``error``, with the message)
as JSON to ``result``. Faults it can inject, from the spec:

* ``pause_at_move``: a folder; just before its first alias move the child writes ``at_move``
  there and waits for ``go`` (the test's barrier at the worst moment).
* ``clock_offset``: seconds added to the child's clock (``datetime.now`` as the registry sees
  it, and ``time.time``), a host whose clock is wrong.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import types
from pathlib import Path
from typing import Any


def skewed_datetime(offset: float) -> Any:
    """A stand-in for the ``datetime`` module whose ``datetime.now`` is ``offset`` seconds off."""
    real_now = dt.datetime.now

    class SkewedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:  # type: ignore[override]
            return real_now(tz) + dt.timedelta(seconds=offset)

    shim = types.SimpleNamespace(**{k: getattr(dt, k) for k in dir(dt) if not k.startswith("__")})
    shim.datetime = SkewedDatetime
    return shim


def _skew_clock(offset: float) -> None:
    """Shift this process's wall clock by ``offset`` seconds, as the registry reads it."""
    from flightdeck.model import registry

    real_time = time.time
    registry.dt = skewed_datetime(offset)  # type: ignore[assignment]
    time.time = lambda: real_time() + offset


def _client(uri: str, pause: Path | None) -> Any:
    from mlflow import MlflowClient

    class Pausing(MlflowClient):  # type: ignore[misc]
        paused = False

        def set_registered_model_alias(self, name: str, alias: str, version: Any) -> None:
            if pause is not None and not self.paused:
                self.paused = True
                (pause / "at_move").write_text(str(time.monotonic()))
                deadline = time.monotonic() + 120
                while not (pause / "go").exists():
                    if time.monotonic() > deadline:
                        raise TimeoutError("the test never said go")
                    time.sleep(0.02)
            super().set_registered_model_alias(name, alias, version)

    return Pausing(tracking_uri=uri, registry_uri=uri)


def main(spec: dict[str, Any]) -> int:
    from flightdeck.core.lake import Lake
    from flightdeck.model.registry import Move, PromotionConflict, PromotionSuperseded, promote

    if spec.get("clock_offset"):
        _skew_clock(float(spec["clock_offset"]))
    pause = Path(spec["pause_at_move"]) if spec.get("pause_at_move") else None
    client = _client(spec["tracking_uri"], pause)
    move = Move(spec["name"], spec["version"], spec["expected"], decision_ref=spec["decision_ref"], who=spec["who"])
    try:
        record = promote(move, lake=Lake(spec["lake"]), client=client)
        outcome: dict[str, Any] = {"outcome": "won", "record": record}
    except PromotionSuperseded as err:
        outcome = {"outcome": "superseded", "error": str(err)}
    except PromotionConflict as err:
        outcome = {"outcome": "conflict", "error": str(err)}
    except Exception as err:  # the test reads it; a crash is an outcome too
        outcome = {"outcome": "error", "error": f"{type(err).__name__}: {err}"}
    Path(spec["result"]).write_text(json.dumps(outcome, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
