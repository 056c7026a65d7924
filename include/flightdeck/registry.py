"""MLflow model registry helpers: aliases ``champion`` / ``challenger`` (never stages), every move recorded.

Every champion move (promotion or rollback) is recorded twice: as tags on the version
that became champion and as a JSON document in the lake's promotions ledger
(``monitoring/promotions/<timestamp>-v<version>.json``).

Concurrency: MLflow has no compare-and-set on aliases. :func:`promote` re-reads the
champion just before moving it and refuses when it is not ``expected_current`` (another
run moved it since the gate looked), then re-reads after the move and raises if someone
else's move landed in between. The residual race is the few milliseconds between the
re-read and the alias write: two promoters can both pass the check, and the last write
wins (the post-move check then tells the loser). Serialise promotions (an Airflow pool
of size 1 or ``max_active_runs=1`` on the training DAG) to close it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from flightdeck.lake import Lake, write_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTIONS = ("monitoring", "promotions")
NO_VERSION = "none"
_TAG_LIMIT = 5000


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (the message says why)."""


class PromotionConflict(RegistryError):
    """The champion changed since the caller looked; nothing was moved."""


def _client(client: MlflowClient | None) -> MlflowClient:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def _lake(lake: Lake | None) -> Lake:
    if lake is not None:
        return lake
    from flightdeck.config import load_config

    return Lake(load_config().lake.root)


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def alias_version(name: str, alias: str, *, client: MlflowClient | None = None) -> str | None:
    """The version an alias points at; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = _client(client).get_registered_model(name)
    except MlflowException as err:
        if getattr(err, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return None
        raise
    version = (model.aliases or {}).get(alias)
    return str(version) if version is not None else None


def champion_version(name: str, *, client: MlflowClient | None = None) -> str | None:
    """The current champion version, or None (no model or no champion yet)."""
    return alias_version(name, CHAMPION, client=client)


def set_challenger(name: str, version: str | int, *, client: MlflowClient | None = None) -> None:
    """Point ``challenger`` at ``version`` (a freshly trained candidate)."""
    _client(client).set_registered_model_alias(name, CHALLENGER, str(version))
    log.info("model %s: alias %s -> v%s", name, CHALLENGER, version)


def tag_decision(name: str, version: str | int, decision: Any, *, client: MlflowClient | None = None) -> None:
    """Record a gate decision (a :class:`flightdeck.gate.Decision` or a mapping) as version tags."""
    data: Mapping[str, Any]
    if is_dataclass(decision) and not isinstance(decision, type):
        data = asdict(decision)
    elif isinstance(decision, Mapping):
        data = decision
    else:
        raise TypeError(f"tag_decision needs a Decision or a mapping, got {type(decision).__name__}")
    c = _client(client)
    c.set_model_version_tag(name, str(version), "gate_passed", str(bool(data.get("passed"))).lower())
    c.set_model_version_tag(name, str(version), "gate_reasons", " | ".join(data.get("reasons", []))[:_TAG_LIMIT])
    checks = json.dumps(data.get("checks", {}), sort_keys=True, default=str)
    c.set_model_version_tag(name, str(version), "gate_checks", checks[:_TAG_LIMIT])


def _record(lake: Lake, record: dict[str, Any], at: dt.datetime) -> str:
    stamp = at.strftime("%Y%m%dT%H%M%S%fZ")
    path = lake.path(*PROMOTIONS, f"{stamp}-v{record['version']}.json")
    write_json(path, record)
    return path


def _move_champion(
    name: str,
    version: str,
    *,
    expected_current: str | None,
    c: MlflowClient,
) -> None:
    current = champion_version(name, client=c)
    if current != expected_current:
        raise PromotionConflict(
            f"model {name}: champion is v{current} but the caller expected v{expected_current}; another run moved it. "
            "Re-run evaluation against the new champion before promoting"
        )
    c.get_model_version(name, version)  # fails clearly if the version does not exist
    c.set_registered_model_alias(name, CHAMPION, version)
    after = champion_version(name, client=c)
    if after != version:
        raise PromotionConflict(f"model {name}: moved champion to v{version} but it now points at v{after}")


def promote(
    name: str,
    version: str | int,
    *,
    expected_current: str | None,
    decision_ref: str,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` if the champion is still ``expected_current``; record the move.

    Raises:
        PromotionConflict: the champion is no longer ``expected_current`` (nothing moved).
    """
    c = _client(client)
    version = str(version)
    expected = None if expected_current is None else str(expected_current)
    at = _now(now)
    record: dict[str, Any] = {
        "action": "promote",
        "model_name": name,
        "version": version,
        "previous": expected,
        "decision_ref": decision_ref,
        "at": at.isoformat(),
    }
    if expected == version and champion_version(name, client=c) == version:
        log.info("model %s: v%s is already champion; nothing to do", name, version)
        return {**record, "noop": True}
    _move_champion(name, version, expected_current=expected, c=c)
    c.set_model_version_tag(name, version, "promoted_from", expected or NO_VERSION)
    c.set_model_version_tag(name, version, "promoted_at", at.isoformat())
    c.set_model_version_tag(name, version, "gate_decision", decision_ref[:_TAG_LIMIT])
    if alias_version(name, CHALLENGER, client=c) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    record["ledger"] = _record(_lake(lake), record, at)
    log.info("model %s: champion v%s -> v%s (%s)", name, expected, version, decision_ref)
    return record


def rollback(
    name: str,
    *,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Restore the champion that the current one replaced (its ``promoted_from`` tag).

    Repeated rollbacks walk further back: the restored version keeps its own ``promoted_from``.

    Raises:
        RegistryError: there is no champion, or it has no predecessor.
    """
    c = _client(client)
    the_lake = _lake(lake)
    current = champion_version(name, client=c)
    if current is None:
        raise RegistryError(f"model {name} has no champion; nothing to roll back")
    tags = c.get_model_version(name, current).tags or {}
    previous = tags.get("promoted_from")
    if previous is None or previous == NO_VERSION:
        raise RegistryError(
            f"model {name}: champion v{current} has no previous champion to roll back to "
            "(no promoted_from tag; see monitoring/promotions in the lake for the full history)"
        )
    at = _now(now)
    _move_champion(name, previous, expected_current=current, c=c)
    c.set_model_version_tag(name, previous, "rolled_back_from", current)
    c.set_model_version_tag(name, previous, "rolled_back_at", at.isoformat())
    c.set_model_version_tag(name, current, "demoted_at", at.isoformat())
    record: dict[str, Any] = {
        "action": "rollback",
        "model_name": name,
        "version": previous,
        "previous": current,
        "decision_ref": f"rollback of v{current}",
        "at": at.isoformat(),
    }
    record["ledger"] = _record(the_lake, record, at)
    log.info("model %s: rolled back champion v%s -> v%s", name, current, previous)
    return record
