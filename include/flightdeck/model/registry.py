"""MLflow model registry helpers: aliases ``champion`` / ``challenger`` (never stages), every move recorded.

Every alias move is a record in the lake's alias ledger
(``monitoring/promotions/<model>-<alias>-<seq>.json``: who, when, from, to, why) and is
summarised as tags on the model version and on the registered model.

Compare-and-set. MLflow has no atomic compare-and-set on aliases, so the ledger provides
it: moving ``champion`` from version A to B claims the next ledger entry
(``<model>-champion-<seq+1>.json``) with an exclusive create (``O_EXCL`` hard link on a
local folder; ``If-None-Match: *`` on S3), after checking that both the alias and the
ledger's last entry still say A. Of two racing promoters exactly one creates the entry
and moves the alias; the other gets :class:`PromotionConflict` and nothing moves. A
claim whose alias move never happened (the promoter died in between) blocks further
moves for :data:`STALE_CLAIM_SECONDS`, then is superseded.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, list_docs, read_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
NO_VERSION = "none"
ACTOR_ENV = "FLIGHTDECK_ACTOR"
STALE_CLAIM_SECONDS = 300
_TAG_LIMIT = 5000
_CLAIM_ATTEMPTS = 20


class RegistryError(FlightdeckError):
    """A registry operation cannot be done as asked (the message says why)."""


class PromotionConflict(RegistryError):
    """The champion changed (or is being changed) since the caller looked; nothing was moved."""


def _client(client: MlflowClient | None) -> MlflowClient:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def _lake(lake: Lake | None) -> Lake:
    if lake is not None:
        return lake
    from flightdeck.core.config import load_config

    return Lake(load_config().lake.root)


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def default_actor() -> str:
    """Who moves an alias when the caller does not say: $FLIGHTDECK_ACTOR, else the OS user."""
    if os.environ.get(ACTOR_ENV):
        return os.environ[ACTOR_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


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


def resolve_version(name: str, spec: str | int, *, client: MlflowClient | None = None) -> str:
    """A concrete version for ``spec``: a version number as it is, an alias (``champion``) resolved once.

    The one alias resolution of the platform: scoring, drift and the DAGs call it once per run
    and use the version they got for every row.

    Raises:
        RegistryError: the alias points at no version (train and promote a model first).
    """
    text = str(spec).strip()
    if text.isdigit():
        return text
    version = alias_version(name, text, client=client)
    if version is None:
        raise RegistryError(f"model {name} has no version with alias {text!r}; train and promote a model first")
    return version


# --- the alias ledger -------------------------------------------------------------------------------


def _prefix(name: str, alias: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.=-]', '_', name)}-{alias}-"


def ledger(name: str, *, alias: str | None = None, lake: Lake | None = None) -> list[dict[str, Any]]:
    """The recorded alias moves of a model (one alias, or all), oldest first."""
    the_lake = _lake(lake)
    aliases = [alias] if alias else [CHAMPION, CHALLENGER]
    records = []
    for path in list_docs(the_lake.promotions()):
        base = path.rsplit("/", 1)[-1]
        if any(base.startswith(_prefix(name, a)) for a in aliases):
            records.append(dict(read_json(path)))
    return sorted(records, key=lambda r: (str(r.get("at")), r.get("alias", ""), int(r.get("seq", 0))))


def _head(name: str, alias: str, lake: Lake) -> dict[str, Any] | None:
    entries = ledger(name, alias=alias, lake=lake)
    return max(entries, key=lambda r: int(r.get("seq", 0))) if entries else None


def _create_exclusive(path: str, doc: Mapping[str, Any]) -> bool:
    """Create a JSON document only if ``path`` does not exist yet; False when it does (atomic)."""
    from flightdeck.core import lake as lake_mod

    body = json.dumps(doc, indent=2, sort_keys=True, default=str).encode()
    if re.match(r"^s3a?://", path):
        bucket, key = lake_mod._s3_split(path)
        try:
            lake_mod._s3_client().put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except Exception as err:  # botocore ClientError, built at run time
            code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise
        return True
    target = lake_mod._local(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, target)  # atomic, fails if the target exists: whole document or nothing
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _ledger_path(lake: Lake, name: str, alias: str, seq: int) -> str:
    return lake.promotion(f"{_prefix(name, alias)}{seq:06d}.json")


def _claim(lake: Lake, record: dict[str, Any]) -> str | None:
    path = _ledger_path(lake, record["model_name"], record["alias"], int(record["seq"]))
    return path if _create_exclusive(path, record) else None


def _record_tags(c: MlflowClient, name: str, record: Mapping[str, Any]) -> None:
    summary = (
        f"#{record['seq']} v{record['from'] or NO_VERSION} -> v{record['to']} by {record['who']} "
        f"at {record['at']}: {record['why']}"
    )
    c.set_registered_model_tag(name, f"ledger.{record['alias']}.seq", str(record["seq"]))
    c.set_registered_model_tag(name, f"ledger.{record['alias']}.last", summary[:_TAG_LIMIT])


def _move_champion(
    name: str,
    version: str,
    *,
    expected_current: str | None,
    action: str,
    why: str,
    who: str,
    at: dt.datetime,
    lake: Lake,
    c: MlflowClient,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare-and-set of ``champion``: expected_current -> version, claimed in the ledger first.

    A retry of the same move (same action, from, to and decision reference: an Airflow task
    retried after the MLflow server dropped out mid-way) finishes its own ledger claim instead
    of tripping over it, so a move is never left half done.
    """
    current = champion_version(name, client=c)
    head = _head(name, CHAMPION, lake)
    own = (
        head is not None
        and extra is not None
        and head.get("action") == action
        and head.get("from") == expected_current
        and head.get("to") == version
        and head.get("decision_ref") == extra.get("decision_ref")
    )
    if own and head is not None and current in {expected_current, version}:
        log.warning(
            "model %s: finishing this run's own unfinished champion move #%s (v%s -> v%s)",
            name,
            head["seq"],
            expected_current,
            version,
        )
        if current != version:
            c.set_registered_model_alias(name, CHAMPION, version)
        resumed: dict[str, Any] = {**head, "ledger": _ledger_path(lake, name, CHAMPION, int(head["seq"]))}
        _record_tags(c, name, resumed)
        return resumed
    if current != expected_current:
        raise PromotionConflict(
            f"model {name}: champion is v{current or NO_VERSION} but the caller expected "
            f"v{expected_current or NO_VERSION}; another run moved it. "
            "Re-run evaluation against the new champion before promoting"
        )
    c.get_model_version(name, version)  # fails clearly if the version does not exist
    superseded = None
    if head is not None and head.get("to") != expected_current:
        age = (at - dt.datetime.fromisoformat(str(head["at"]))).total_seconds()
        if age < STALE_CLAIM_SECONDS:
            raise PromotionConflict(
                f"model {name}: the ledger's last champion move (#{head['seq']}, v{head.get('from')} -> "
                f"v{head.get('to')} by {head.get('who')}) is in progress or unfinished while the alias is still "
                f"v{expected_current or NO_VERSION}; nothing moved. Retry in a few minutes"
            )
        superseded = int(head["seq"])
        log.warning("model %s: superseding unfinished ledger claim #%s (%.0fs old)", name, head["seq"], age)
    record: dict[str, Any] = {
        "action": action,
        "alias": CHAMPION,
        "model_name": name,
        "seq": (int(head["seq"]) + 1) if head else 1,
        "from": expected_current,
        "to": version,
        "who": who,
        "at": at.isoformat(),
        "why": why,
        # kept for readers of the first ledger format
        "version": version,
        "previous": expected_current,
        **(extra or {}),
    }
    if superseded is not None:
        record["supersedes_unfinished"] = superseded
    path = _claim(lake, record)
    if path is None:
        raise PromotionConflict(
            f"model {name}: another run claimed champion move #{record['seq']} first; nothing moved. "
            "Re-run evaluation against the new champion before promoting"
        )
    c.set_registered_model_alias(name, CHAMPION, version)
    after = champion_version(name, client=c)
    if after != version:  # only a move outside flightdeck (no ledger claim) can land here
        raise PromotionConflict(f"model {name}: moved champion to v{version} but it now points at v{after}")
    record["ledger"] = path
    _record_tags(c, name, record)
    return record


def set_challenger(
    name: str,
    version: str | int,
    *,
    why: str = "new candidate",
    who: str | None = None,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Point ``challenger`` at ``version`` (a freshly trained candidate) and record the move."""
    c = _client(client)
    the_lake = _lake(lake)
    version = str(version)
    previous = alias_version(name, CHALLENGER, client=c)
    at = _now(now)
    for _ in range(_CLAIM_ATTEMPTS):  # no compare-and-set needed: just the next free ledger slot
        head = _head(name, CHALLENGER, the_lake)
        record: dict[str, Any] = {
            "action": "register",
            "alias": CHALLENGER,
            "model_name": name,
            "seq": (int(head["seq"]) + 1) if head else 1,
            "from": previous,
            "to": version,
            "who": who or default_actor(),
            "at": at.isoformat(),
            "why": why[:_TAG_LIMIT],
        }
        path = _claim(the_lake, record)
        if path is not None:
            break
    else:
        raise RegistryError(f"model {name}: could not record the challenger move after {_CLAIM_ATTEMPTS} attempts")
    c.set_registered_model_alias(name, CHALLENGER, version)
    record["ledger"] = path
    _record_tags(c, name, record)
    log.info("model %s: alias %s v%s -> v%s", name, CHALLENGER, previous, version)
    return record


def tag_decision(name: str, version: str | int, decision: Any, *, client: MlflowClient | None = None) -> None:
    """Record a gate decision (a :class:`flightdeck.model.gate.Decision` or a mapping) as version tags."""
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
    for check, result in (data.get("checks") or {}).items():
        if isinstance(result, Mapping) and "passed" in result:
            c.set_model_version_tag(name, str(version), f"gate.{check}", str(bool(result["passed"])).lower())


def promote(
    name: str,
    version: str | int,
    *,
    expected_current: str | None,
    decision_ref: str,
    why: str | None = None,
    who: str | None = None,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` if the champion is still ``expected_current``; record the move.

    Raises:
        PromotionConflict: the champion is no longer ``expected_current``, or another promoter
            won the race for the ledger entry (nothing moved in either case).
    """
    c = _client(client)
    version = str(version)
    expected = None if expected_current is None else str(expected_current)
    at = _now(now)
    if expected == version and champion_version(name, client=c) == version:
        log.info("model %s: v%s is already champion; nothing to do", name, version)
        return {"action": "promote", "model_name": name, "version": version, "previous": expected, "noop": True}
    who = who or default_actor()
    record = _move_champion(
        name,
        version,
        expected_current=expected,
        action="promote",
        why=why or f"gate passed ({decision_ref})",
        who=who,
        at=at,
        lake=_lake(lake),
        c=c,
        extra={"decision_ref": decision_ref},
    )
    c.set_model_version_tag(name, version, "promoted_from", expected or NO_VERSION)
    c.set_model_version_tag(name, version, "promoted_at", at.isoformat())
    c.set_model_version_tag(name, version, "promoted_by", who)
    c.set_model_version_tag(name, version, "gate_decision", decision_ref[:_TAG_LIMIT])
    if alias_version(name, CHALLENGER, client=c) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    log.info("model %s: champion v%s -> v%s by %s (%s)", name, expected, version, who, decision_ref)
    return record


def rollback(
    name: str,
    *,
    to_version: str | int | None = None,
    why: str | None = None,
    who: str | None = None,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Restore a previous champion: ``to_version``, else the one the current champion replaced.

    Without ``to_version`` the target is the current champion's ``promoted_from`` tag, so
    repeated rollbacks walk further back (a restored version keeps its own tag).

    Raises:
        RegistryError: there is no champion, no predecessor, or ``to_version`` is already champion.
        PromotionConflict: the champion moved while rolling back (nothing moved).
    """
    named = str(to_version).strip().removeprefix("v") if to_version is not None else ""
    if named and not named.isdigit():  # it comes from a trigger form: accept a version number only
        raise RegistryError(f"model {name}: {to_version!r} is not a model version number (e.g. 3 or v3)")
    c = _client(client)
    current = champion_version(name, client=c)
    if current is None:
        raise RegistryError(f"model {name} has no champion; nothing to roll back")
    if named:
        target = named
    else:
        target = (c.get_model_version(name, current).tags or {}).get("promoted_from", NO_VERSION)
        if target == NO_VERSION:
            raise RegistryError(
                f"model {name}: champion v{current} has no previous champion to roll back to "
                "(no promoted_from tag); name a version to restore, or see monitoring/promotions in the lake"
            )
    if target == current:
        raise RegistryError(f"model {name}: v{target} is already the champion; nothing to roll back")
    at = _now(now)
    who = who or default_actor()
    record = _move_champion(
        name,
        target,
        expected_current=current,
        action="rollback",
        why=why or f"rollback of v{current}",
        who=who,
        at=at,
        lake=_lake(lake),
        c=c,
        extra={"decision_ref": f"rollback of v{current}"},
    )
    c.set_model_version_tag(name, target, "rolled_back_from", current)
    c.set_model_version_tag(name, target, "rolled_back_at", at.isoformat())
    c.set_model_version_tag(name, current, "demoted_at", at.isoformat())
    log.info("model %s: rolled back champion v%s -> v%s by %s", name, current, target, who)
    return record
