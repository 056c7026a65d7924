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
moves for :func:`claim_ttl` seconds (:data:`STALE_CLAIM_SECONDS` by default), then is
superseded. A claim's age is measured by the lake's clock (the claim's stored time
against a probe written now, :func:`flightdeck.core.lake.store_now`), never by comparing
one host's clock with another's.

Fencing. The claim's ``seq`` is the move's fencing token. Immediately before moving the
alias the promoter checks that its claim is still the ledger's newest and young enough
(under half the TTL) for the move to land before anyone may supersede it; immediately
after, it checks again: if it was superseded meanwhile it puts the alias back on the
newest claim's version and raises :class:`PromotionSuperseded`, and if its claim is still
the newest but the alias says otherwise (a superseded promoter's late write) it moves it
back. MLflow calls of a move run under :func:`bounded_http` (short timeout, few retries),
so a held connection gives up long before the claim could be superseded.

Retries. A move carries an ``op_id`` (the Airflow run that made it); a rollback retried
with the same ``op_id`` finds its own ledger entry and does not move again.

A champion move is asked for as a :class:`Move`; ledger entries are
:class:`flightdeck.model.documents.LedgerEntry` documents. Every function that touches the
ledger takes the caller's lake (no configuration is loaded here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import TYPE_CHECKING, Any

from flightdeck.core import tracking
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, list_docs, read_json, store_now, stored_at
from flightdeck.model.documents import LedgerEntry

if TYPE_CHECKING:
    from flightdeck.core.tracking import Client

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
NO_VERSION = "none"
ACTOR_ENV = "FLIGHTDECK_ACTOR"
STALE_CLAIM_SECONDS = 300
CLAIM_TTL_ENV = "FLIGHTDECK_PROMOTION_CLAIM_TTL"
HTTP_TIMEOUT_ENV = "FLIGHTDECK_PROMOTION_HTTP_TIMEOUT"
HTTP_RETRIES_ENV = "FLIGHTDECK_PROMOTION_HTTP_RETRIES"
PROMOTION_HTTP_TIMEOUT = 15  # seconds per MLflow request during a move (MLflow's default: 120)
PROMOTION_HTTP_RETRIES = 2  # (MLflow's default: 7, with backoff)
_CLAIM_ATTEMPTS = 20
_REPAIR_ATTEMPTS = 5
_MLFLOW_HTTP_ENV = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)


class RegistryError(FlightdeckError):
    """A registry operation cannot be done as asked (the message says why)."""


class PromotionConflict(RegistryError):
    """The champion changed (or is being changed) since the caller looked; nothing was moved."""


class PromotionSuperseded(PromotionConflict):
    """A newer claim superseded this move; the alias was left on (or put back to) the newest claim's version."""


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
    op_id: str | None = None


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise RegistryError(f"${name} is {raw!r}; expected a number of seconds (or retries), e.g. {default:g}") from err
    if value < 0:
        raise RegistryError(f"${name} is {raw!r}; expected a number >= 0")
    return value


def claim_ttl() -> float:
    """Seconds after which an unfinished champion claim may be superseded (``$FLIGHTDECK_PROMOTION_CLAIM_TTL``)."""
    return _env_number(CLAIM_TTL_ENV, STALE_CLAIM_SECONDS)


class _HttpBounds:
    """The MLflow HTTP settings saved by the outermost :func:`bounded_http` (process-wide, shared by threads)."""

    lock = threading.Lock()
    depth = 0
    saved: dict[str, str | None] = {}


@contextlib.contextmanager
def bounded_http() -> Iterator[None]:
    """Run MLflow calls with a short per-request timeout and few retries (restored afterwards).

    MLflow's defaults (120 s per attempt, 7 retries with backoff) let a held connection outlive a
    promotion claim; a move's calls get ``$FLIGHTDECK_PROMOTION_HTTP_TIMEOUT`` seconds
    (default 15) and ``$FLIGHTDECK_PROMOTION_HTTP_RETRIES`` retries (default 2), or the
    caller's own MLflow settings when those are stricter. Nested and concurrent uses share
    one setting; the outermost restores the environment.
    """
    timeout = int(_env_number(HTTP_TIMEOUT_ENV, PROMOTION_HTTP_TIMEOUT)) or 1
    retries = int(_env_number(HTTP_RETRIES_ENV, PROMOTION_HTTP_RETRIES))
    with _HttpBounds.lock:
        if _HttpBounds.depth == 0:
            _HttpBounds.saved = {k: os.environ.get(k) for k in _MLFLOW_HTTP_ENV}
            timeout_var, retries_var, backoff_var = _MLFLOW_HTTP_ENV
            for var, ours in ((timeout_var, timeout), (retries_var, retries), (backoff_var, 1)):
                theirs = _HttpBounds.saved[var]
                keep = theirs is not None and theirs.strip().isdigit() and int(theirs) < ours
                os.environ[var] = str(int(theirs) if keep and theirs is not None else ours)
        _HttpBounds.depth += 1
    try:
        yield
    finally:
        with _HttpBounds.lock:
            _HttpBounds.depth -= 1
            if _HttpBounds.depth == 0:
                for var, value in _HttpBounds.saved.items():
                    if value is None:
                        os.environ.pop(var, None)
                    else:
                        os.environ[var] = value


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
    if alias:  # one alias: its sequence is the order (``at`` is the writer's clock, which may be off)
        return sorted(entries, key=lambda e: e.seq)
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


def _claim_age(lake: Lake, entry: LedgerEntry) -> float:
    """Seconds since the store wrote the claim, by the store's clock (no host clock involved)."""
    path = _ledger_path(lake, entry.model_name, entry.alias, entry.seq)
    return (store_now(lake.promotions()) - stored_at(path)).total_seconds()


def _describe(entry: LedgerEntry) -> str:
    return f"#{entry.seq} (v{entry.from_ or NO_VERSION} -> v{entry.to} by {entry.who})"


def _check_token(name: str, entry: LedgerEntry, lake: Lake) -> None:
    """The fencing check before the alias move: this claim is the newest and young enough to land in time.

    Raises:
        PromotionSuperseded: a newer claim exists (nothing moved).
        PromotionConflict: the claim is older than half the TTL by the lake's clock, so the move
            could land after another promoter superseded it (nothing moved).
    """
    head = _head(name, CHAMPION, lake)
    if head is None or head.seq != entry.seq:
        newer = _describe(head) if head else "none (the ledger entry is gone)"
        raise PromotionSuperseded(
            f"model {name}: champion move {_describe(entry)} was superseded by {newer} before its alias "
            "move; nothing moved. Re-run evaluation against the new champion before promoting"
        )
    age, ttl = _claim_age(lake, entry), claim_ttl()
    if age > ttl / 2:
        raise PromotionConflict(
            f"model {name}: champion claim {_describe(entry)} is {age:.0f}s old by the lake's clock (more "
            f"than half of ${CLAIM_TTL_ENV}={ttl:g}s), so its move could land after another run superseded "
            "it; nothing moved. Retry the task: it supersedes its own claim once the claim is stale"
        )


def _restore_after_superseded(name: str, mine: LedgerEntry, lake: Lake, c: Client) -> str | None:
    """Put the alias back on the newest claim's version if this (superseded) move's write is what it shows.

    Repeated until the newest claim did not change across the write, so a claim made meanwhile
    is never overwritten by a stale restore (its own promoter verifies after its move).
    """
    for _ in range(_REPAIR_ATTEMPTS):
        head = _head(name, CHAMPION, lake)
        current = champion_version(name, client=c)
        if head is None or current != mine.to or head.to == mine.to:
            return current  # our write is not (or no longer) what the alias shows
        log.warning("model %s: superseded move %s: putting champion back on v%s", name, _describe(mine), head.to)
        c.set_registered_model_alias(name, CHAMPION, head.to)
        newest = _head(name, CHAMPION, lake)
        if newest is not None and newest.seq == head.seq:
            return head.to
    return champion_version(name, client=c)


def _fenced_move(name: str, entry: LedgerEntry, lake: Lake, c: Client) -> None:
    """Move ``champion`` to the claim's version, fenced by its ``seq`` before and after the move.

    Raises:
        PromotionSuperseded: a newer claim superseded this one (before the move: nothing moved;
            after: the alias was put back on the newest claim's version).
        PromotionConflict: the claim is too old to move safely, or the alias keeps moving away.
    """
    _check_token(name, entry, lake)
    c.set_registered_model_alias(name, CHAMPION, entry.to)
    for _ in range(_REPAIR_ATTEMPTS):
        head = _head(name, CHAMPION, lake)
        if head is None or head.seq != entry.seq:
            now_on = _restore_after_superseded(name, entry, lake, c)
            raise PromotionSuperseded(
                f"model {name}: champion move {_describe(entry)} was superseded by "
                f"{_describe(head) if head else 'none'} while its alias move was in flight (a slow server "
                f"or a stall past the claim's TTL); champion is v{now_on or NO_VERSION}, this promotion "
                "did NOT happen. Re-run evaluation against the new champion before promoting"
            )
        after = champion_version(name, client=c)
        if after == entry.to:
            return
        # The newest claim is ours, yet the alias shows something else: a superseded promoter's late write.
        log.warning("model %s: champion shows v%s under claim %s; moving it back", name, after, _describe(entry))
        c.set_registered_model_alias(name, CHAMPION, entry.to)
    raise PromotionConflict(
        f"model {name}: moved champion to v{entry.to} but it keeps pointing elsewhere (now "
        f"v{champion_version(name, client=c)}): something outside flightdeck is moving it"
    )


def _finish_own_move(
    move: Move, head: LedgerEntry | None, current: str | None, lake: Lake, c: Client
) -> dict[str, Any] | None:
    """Finish this move's own unfinished ledger claim (a retried task), or None when it is not ours.

    A retry of the same move (same action, from, to and decision reference: an Airflow task
    retried after the MLflow server dropped out mid-way) finishes its own ledger claim instead
    of tripping over it, so a move is never left half done. The finishing move is fenced like
    any other.
    """
    own = (
        head is not None
        and head.action == move.action
        and head.from_ == move.expected_current
        and head.to == move.version
        and head.decision_ref == move.decision_ref
        and (move.op_id is None or head.op_id in {None, move.op_id})
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
        _fenced_move(move.name, head, lake, c)
    _record_tags(c, move.name, head)
    return {**head.to_json(), "ledger": _ledger_path(lake, move.name, CHAMPION, head.seq)}


def _superseded(move: Move, head: LedgerEntry | None, lake: Lake) -> int | None:
    """The ledger's unfinished last claim that this move supersedes (older than the TTL), if any.

    The claim's age is measured by the lake's clock, so a promoter whose own clock is skewed
    neither supersedes a live claim early nor waits for ever on a dead one.

    Raises:
        PromotionConflict: the last claim is recent: another move is in progress or just died.
    """
    if head is None or head.to == move.expected_current:
        return None
    age, ttl = _claim_age(lake, head), claim_ttl()
    if age < ttl:
        raise PromotionConflict(
            f"model {move.name}: the ledger's last champion move {_describe(head)} is in progress or "
            f"unfinished while the alias is still v{move.expected_current or NO_VERSION} ({age:.0f}s old by "
            f"the lake's clock; superseded after {ttl:g}s); nothing moved. Retry in a few minutes"
        )
    log.warning("model %s: superseding unfinished ledger claim #%s (%.0fs old)", move.name, head.seq, age)
    return head.seq


def _move_champion(move: Move, *, at: dt.datetime, lake: Lake, c: Client) -> dict[str, Any]:
    """Compare-and-set of ``champion``: expected_current -> version, claimed in the ledger first, fenced."""
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
    superseded = _superseded(move, head, lake)
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
    if move.op_id:
        entry.op_id = move.op_id
    path = _claim(lake, entry)
    if path is None:
        raise PromotionConflict(
            f"model {name}: another run claimed champion move #{entry.seq} first; nothing moved. "
            "Re-run evaluation against the new champion before promoting"
        )
    _fenced_move(name, entry, lake, c)
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

    The MLflow calls run under :func:`bounded_http`; ``now`` is only the time recorded in the ledger.

    Raises:
        PromotionConflict: the champion is no longer ``expected_current``, or another promoter
            won the race for the ledger entry (nothing moved in either case).
        PromotionSuperseded: a newer claim superseded this move (the alias is on the newest claim's version).
    """
    with bounded_http():
        return _promote(move, lake=lake, c=_client(client), at=_now(now))


def _promote(move: Move, *, lake: Lake, c: Client, at: dt.datetime) -> dict[str, Any]:
    name, version, expected = move.name, str(move.version), move.expected_current
    expected = None if expected is None else str(expected)
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


def _tag_rollback(c: Client, name: str, entry: LedgerEntry) -> None:
    """The version tags of a rollback (idempotent: a retry writes the same values)."""
    frm = entry.from_ or NO_VERSION
    c.set_model_version_tag(name, entry.to, "rolled_back_from", frm)
    c.set_model_version_tag(name, entry.to, "rolled_back_at", entry.at)
    if entry.from_:
        c.set_model_version_tag(name, entry.from_, "demoted_at", entry.at)


def _own_rollback(name: str, op_id: str, lake: Lake, c: Client) -> dict[str, Any] | None:
    """The result of this operation's earlier rollback (a retried task), or None when it made none.

    A retry must not compute its target again: the champion is now the version the first
    attempt restored, and a fresh rollback would walk one more version back.
    """
    entries = ledger_entries(name, alias=CHAMPION, lake=lake)
    own = [e for e in entries if e.op_id == op_id]
    if not own:
        return None
    entry = max(own, key=lambda e: e.seq)
    superseding = [e for e in entries if e.supersedes_unfinished == entry.seq]
    if superseding:
        raise PromotionSuperseded(
            f"model {name}: rollback {op_id} claimed {_describe(entry)} but never moved the alias, and "
            f"{_describe(superseding[0])} superseded it; nothing moved. Trigger a new rollback if still wanted"
        )
    path = _ledger_path(lake, name, CHAMPION, entry.seq)
    current = champion_version(name, client=c)
    head = _head(name, CHAMPION, lake)
    if current != entry.to and head is not None and head.seq == entry.seq and current == entry.from_:
        # its claim is there but the alias never moved: finish that same move (fenced)
        move = Move(name, entry.to, entry.from_, entry.decision_ref or "", entry.why, entry.who, "rollback", op_id)
        record = _move_champion(move, at=dt.datetime.fromisoformat(entry.at), lake=lake, c=c)
        _tag_rollback(c, name, entry)
        return record
    if current == entry.to:
        _tag_rollback(c, name, entry)  # the first attempt may have stopped before its tags
        log.info("model %s: rollback %s already made (%s); nothing to do", name, op_id, _describe(entry))
    else:
        log.warning(
            "model %s: rollback %s was made (%s) and the champion has moved on since (now v%s); nothing to do",
            name,
            op_id,
            _describe(entry),
            current,
        )
    return {**entry.to_json(), "ledger": path, "noop": True}


def rollback(
    name: str,
    *,
    lake: Lake,
    to_version: str | int | None = None,
    why: str | None = None,
    who: str | None = None,
    client: Client | None = None,
    op_id: str | None = None,
) -> dict[str, Any]:
    """Restore a previous champion: ``to_version``, else the one the current champion replaced.

    Without ``to_version`` the target is the current champion's ``promoted_from`` tag, so
    repeated rollbacks walk further back (a restored version keeps its own tag). ``op_id``
    names the operation (e.g. the Airflow run): a retry with the same ``op_id`` after its move
    finds its own ledger entry and returns it (``noop``) instead of rolling back again.

    Raises:
        RegistryError: there is no champion, no predecessor, or ``to_version`` is already champion.
        PromotionConflict: the champion moved while rolling back (nothing moved).
    """
    named = str(to_version).strip().removeprefix("v") if to_version is not None else ""
    if named and not named.isdigit():  # it comes from a trigger form: accept a version number only
        raise RegistryError(f"model {name}: {to_version!r} is not a model version number (e.g. 3 or v3)")
    with bounded_http():
        c = _client(client)
        if op_id:
            done = _own_rollback(name, op_id, lake, c)
            if done is not None:
                return done
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
        at = _now(None)
        who = who or default_actor()
        move = Move(
            name,
            target,
            expected_current=current,
            decision_ref=f"rollback of v{current}",
            why=why or f"rollback of v{current}",
            who=who,
            action="rollback",
            op_id=op_id,
        )
        record = _move_champion(move, at=at, lake=lake, c=c)
        _tag_rollback(c, name, LedgerEntry.model_validate(record))
        log.info("model %s: rolled back champion v%s -> v%s by %s", name, current, target, who)
        return record
