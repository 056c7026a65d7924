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

A champion move is asked for as a :class:`Move`; ledger entries are
:class:`flightdeck.model.documents.LedgerEntry` documents. Every function that touches the
ledger takes the caller's lake (no configuration is loaded here).
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
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import TYPE_CHECKING, Any

from flightdeck.core import tracking
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, list_docs, read_json
from flightdeck.model.documents import LedgerEntry

if TYPE_CHECKING:
    from flightdeck.core.tracking import Client

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
NO_VERSION = "none"
ACTOR_ENV = "FLIGHTDECK_ACTOR"
STALE_CLAIM_SECONDS = 300
_CLAIM_ATTEMPTS = 20


class RegistryError(FlightdeckError):
    """A registry operation cannot be done as asked (the message says why)."""


class PromotionConflict(RegistryError):
    """The champion changed (or is being changed) since the caller looked; nothing was moved."""


@dataclass(frozen=True)
class Move:
    """A move of ``champion`` asked for: to ``version`` if the champion is still ``expected_current``.

    ``decision_ref`` names what justified it (the gate's run key, or the rolled-back version);
    ``why`` and ``who`` go to the ledger (defaults: the decision and :func:`default_actor`).
    """

    name: str
    version: str
    expected_current: str | None
    decision_ref: str
    why: str | None = None
    who: str | None = None
    action: str = "promote"


def _client(client: Client | None) -> Client:
    return client if client is not None else tracking.client()


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


def alias_version(name: str, alias: str, *, client: Client | None = None) -> str | None:
    """The version an alias points at; None when the model or the alias does not exist."""
    return (tracking.model_aliases(name, c=_client(client)) or {}).get(alias)


def champion_version(name: str, *, client: Client | None = None) -> str | None:
    """The current champion version, or None (no model or no champion yet)."""
    return alias_version(name, CHAMPION, client=client)


def resolve_version(name: str, spec: str | int, *, client: Client | None = None) -> str:
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


def ledger_entries(name: str, *, lake: Lake, alias: str | None = None) -> list[LedgerEntry]:
    """The recorded alias moves of a model (one alias, or all), oldest first."""
    aliases = [alias] if alias else [CHAMPION, CHALLENGER]
    entries = []
    for path in list_docs(lake.promotions()):
        base = path.rsplit("/", 1)[-1]
        if any(base.startswith(_prefix(name, a)) for a in aliases):
            entries.append(LedgerEntry.model_validate(read_json(path)))
    return sorted(entries, key=lambda e: (e.at, e.alias, e.seq))


def _head(name: str, alias: str, lake: Lake) -> LedgerEntry | None:
    entries = ledger_entries(name, alias=alias, lake=lake)
    return max(entries, key=lambda e: e.seq) if entries else None


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


def _claim(lake: Lake, entry: LedgerEntry) -> str | None:
    path = _ledger_path(lake, entry.model_name, entry.alias, entry.seq)
    return path if _create_exclusive(path, entry.to_json()) else None


def _record_tags(c: Client, name: str, entry: LedgerEntry) -> None:
    summary = f"#{entry.seq} v{entry.from_ or NO_VERSION} -> v{entry.to} by {entry.who} at {entry.at}: {entry.why}"
    c.set_registered_model_tag(name, f"ledger.{entry.alias}.seq", str(entry.seq))
    c.set_registered_model_tag(name, f"ledger.{entry.alias}.last", summary[: tracking.TAG_LIMIT])


def _finish_own_move(
    move: Move, head: LedgerEntry | None, current: str | None, lake: Lake, c: Client
) -> dict[str, Any] | None:
    """Finish this move's own unfinished ledger claim (a retried task), or None when it is not ours.

    A retry of the same move (same action, from, to and decision reference: an Airflow task
    retried after the MLflow server dropped out mid-way) finishes its own ledger claim instead
    of tripping over it, so a move is never left half done.
    """
    own = (
        head is not None
        and head.action == move.action
        and head.from_ == move.expected_current
        and head.to == move.version
        and head.decision_ref == move.decision_ref
    )
    if not own or head is None or current not in {move.expected_current, move.version}:
        return None
    log.warning(
        "model %s: finishing this run's own unfinished champion move #%s (v%s -> v%s)",
        move.name,
        head.seq,
        move.expected_current,
        move.version,
    )
    if current != move.version:
        c.set_registered_model_alias(move.name, CHAMPION, move.version)
    _record_tags(c, move.name, head)
    return {**head.to_json(), "ledger": _ledger_path(lake, move.name, CHAMPION, head.seq)}


def _superseded(move: Move, head: LedgerEntry | None, at: dt.datetime) -> int | None:
    """The ledger's unfinished last claim that this move supersedes (older than the stale limit), if any.

    Raises:
        PromotionConflict: the last claim is recent: another move is in progress or just died.
    """
    if head is None or head.to == move.expected_current:
        return None
    age = (at - dt.datetime.fromisoformat(head.at)).total_seconds()
    if age < STALE_CLAIM_SECONDS:
        raise PromotionConflict(
            f"model {move.name}: the ledger's last champion move (#{head.seq}, v{head.from_} -> "
            f"v{head.to} by {head.who}) is in progress or unfinished while the alias is still "
            f"v{move.expected_current or NO_VERSION}; nothing moved. Retry in a few minutes"
        )
    log.warning("model %s: superseding unfinished ledger claim #%s (%.0fs old)", move.name, head.seq, age)
    return head.seq


def _move_champion(move: Move, *, at: dt.datetime, lake: Lake, c: Client) -> dict[str, Any]:
    """Compare-and-set of ``champion``: expected_current -> version, claimed in the ledger first."""
    name, version, expected_current = move.name, move.version, move.expected_current
    current = champion_version(name, client=c)
    head = _head(name, CHAMPION, lake)
    resumed = _finish_own_move(move, head, current, lake, c)
    if resumed is not None:
        return resumed
    if current != expected_current:
        raise PromotionConflict(
            f"model {name}: champion is v{current or NO_VERSION} but the caller expected "
            f"v{expected_current or NO_VERSION}; another run moved it. "
            "Re-run evaluation against the new champion before promoting"
        )
    c.get_model_version(name, version)  # fails clearly if the version does not exist
    superseded = _superseded(move, head, at)
    entry = LedgerEntry(
        action=move.action,
        alias=CHAMPION,
        model_name=name,
        seq=(head.seq + 1) if head else 1,
        from_=expected_current,
        to=version,
        who=move.who or default_actor(),
        at=at.isoformat(),
        why=move.why or "",
        version=version,
        previous=expected_current,
        decision_ref=move.decision_ref,
    )
    if superseded is not None:
        entry.supersedes_unfinished = superseded
    path = _claim(lake, entry)
    if path is None:
        raise PromotionConflict(
            f"model {name}: another run claimed champion move #{entry.seq} first; nothing moved. "
            "Re-run evaluation against the new champion before promoting"
        )
    c.set_registered_model_alias(name, CHAMPION, version)
    after = champion_version(name, client=c)
    if after != version:  # only a move outside flightdeck (no ledger claim) can land here
        raise PromotionConflict(f"model {name}: moved champion to v{version} but it now points at v{after}")
    _record_tags(c, name, entry)
    return {**entry.to_json(), "ledger": path}


def set_challenger(
    name: str,
    version: str | int,
    *,
    lake: Lake,
    why: str = "new candidate",
    who: str | None = None,
    client: Client | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Point ``challenger`` at ``version`` (a freshly trained candidate) and record the move."""
    c = _client(client)
    version = str(version)
    previous = alias_version(name, CHALLENGER, client=c)
    at = _now(now)
    for _ in range(_CLAIM_ATTEMPTS):  # no compare-and-set needed: just the next free ledger slot
        head = _head(name, CHALLENGER, lake)
        entry = LedgerEntry(
            action="register",
            alias=CHALLENGER,
            model_name=name,
            seq=(head.seq + 1) if head else 1,
            from_=previous,
            to=version,
            who=who or default_actor(),
            at=at.isoformat(),
            why=why[: tracking.TAG_LIMIT],
        )
        path = _claim(lake, entry)
        if path is not None:
            break
    else:
        # contention, not a user error: keep the traceback
        raise RuntimeError(f"model {name}: could not record the challenger move after {_CLAIM_ATTEMPTS} attempts")
    c.set_registered_model_alias(name, CHALLENGER, version)
    _record_tags(c, name, entry)
    log.info("model %s: alias %s v%s -> v%s", name, CHALLENGER, previous, version)
    return {**entry.to_json(), "ledger": path}


def tag_decision(name: str, version: str | int, decision: Any, *, client: Client | None = None) -> None:
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
    c.set_model_version_tag(
        name, str(version), "gate_reasons", " | ".join(data.get("reasons", []))[: tracking.TAG_LIMIT]
    )
    checks = json.dumps(data.get("checks", {}), sort_keys=True, default=str)
    c.set_model_version_tag(name, str(version), "gate_checks", checks[: tracking.TAG_LIMIT])
    for check, result in (data.get("checks") or {}).items():
        if isinstance(result, Mapping) and "passed" in result:
            c.set_model_version_tag(name, str(version), f"gate.{check}", str(bool(result["passed"])).lower())


def promote(move: Move, *, lake: Lake, client: Client | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Move ``champion`` to ``move.version`` if the champion is still ``move.expected_current``; record the move.

    Raises:
        PromotionConflict: the champion is no longer ``expected_current``, or another promoter
            won the race for the ledger entry (nothing moved in either case).
    """
    c = _client(client)
    name, version, expected = move.name, str(move.version), move.expected_current
    expected = None if expected is None else str(expected)
    at = _now(now)
    if expected == version and champion_version(name, client=c) == version:
        log.info("model %s: v%s is already champion; nothing to do", name, version)
        return {"action": "promote", "model_name": name, "version": version, "previous": expected, "noop": True}
    move = replace(
        move,
        version=version,
        expected_current=expected,
        action="promote",
        why=move.why or f"gate passed ({move.decision_ref})",
        who=move.who or default_actor(),
    )
    record = _move_champion(move, at=at, lake=lake, c=c)
    c.set_model_version_tag(name, version, "promoted_from", expected or NO_VERSION)
    c.set_model_version_tag(name, version, "promoted_at", at.isoformat())
    c.set_model_version_tag(name, version, "promoted_by", str(move.who))
    c.set_model_version_tag(name, version, "gate_decision", move.decision_ref[: tracking.TAG_LIMIT])
    if alias_version(name, CHALLENGER, client=c) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    log.info("model %s: champion v%s -> v%s by %s (%s)", name, expected, version, move.who, move.decision_ref)
    return record


def rollback(
    name: str,
    *,
    lake: Lake,
    to_version: str | int | None = None,
    why: str | None = None,
    who: str | None = None,
    client: Client | None = None,
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
    move = Move(
        name,
        target,
        expected_current=current,
        decision_ref=f"rollback of v{current}",
        why=why or f"rollback of v{current}",
        who=who,
        action="rollback",
    )
    record = _move_champion(move, at=at, lake=lake, c=c)
    c.set_model_version_tag(name, target, "rolled_back_from", current)
    c.set_model_version_tag(name, target, "rolled_back_at", at.isoformat())
    c.set_model_version_tag(name, current, "demoted_at", at.isoformat())
    log.info("model %s: rolled back champion v%s -> v%s by %s", name, current, target, who)
    return record
