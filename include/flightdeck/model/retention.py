"""Model retention: which registered versions are kept, deprecated, then deleted, and the run that applies it.

:func:`plan` is the policy, pure: it takes the registry's versions (with the day each was
deprecated), the aliases, which versions each predictions partition names, the day the
retention window ends and the ``retention`` settings, and returns one step per version with
its reason. Always kept: every aliased version (``champion``, ``challenger``), the
``keep_last`` newest versions and any version named by a predictions partition within the
window (``window_days`` before its end, or later). Any other version is deprecated (the
version tag ``flightdeck.deprecated=<day>``); once deprecated for ``grace_days`` its model
artifacts and registry entry are deleted. A deprecated version that is kept again (a rollback
made it champion) has its tag removed (``restore``).

:func:`run_retention` applies a plan through :mod:`flightdeck.core.tracking` and records the
run, step by step, in the alias ledger (``monitoring/promotions/<model>-retention-<seq>.json``):
it claims the record (exclusive create) before acting and rewrites it with each step's outcome
after. A dry run writes the record with nothing applied.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flightdeck.core import tracking
from flightdeck.core.columns import MODEL_VERSION
from flightdeck.core.config import PipelineConfig, Retention
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, committed_files, list_docs, read_bytes, read_json, write_json
from flightdeck.model import registry
from flightdeck.model.documents import RetentionRecord, RetentionStep

if TYPE_CHECKING:
    from flightdeck.core.tracking import Client

log = logging.getLogger(__name__)

DEPRECATED_TAG = "flightdeck.deprecated"
LEDGER_KIND = "retention"
KEEP, DEPRECATE, RESTORE, WAIT, DELETE = "keep", "deprecate", "restore", "wait", "delete"
_CLAIM_ATTEMPTS = 20


class RetentionError(FlightdeckError):
    """A retention step failed (the ledger record names which and why)."""


@dataclass(frozen=True)
class VersionState:
    """A registered version as the policy sees it: its number and the day it was deprecated, if it was."""

    version: str
    deprecated_on: dt.date | None = None


@dataclass(frozen=True)
class VersionPlan:
    """The policy's step for one version, with its reason."""

    version: str
    action: str
    reason: str
    deprecated_on: dt.date | None = None


@dataclass(frozen=True)
class RetentionPlan:
    """The policy's steps (newest version first) for a window ending on ``day``."""

    day: dt.date
    steps: tuple[VersionPlan, ...] = field(default_factory=tuple)

    def versions(self, action: str) -> list[str]:
        """The versions whose step is ``action``, newest first."""
        return [s.version for s in self.steps if s.action == action]


def plan(
    versions: Sequence[VersionState],
    aliases: Mapping[str, str],
    scored_by_partition: Mapping[dt.date, Iterable[str]],
    today: dt.date,
    policy: Retention,
) -> RetentionPlan:
    """The retention steps of every version (newest first), each with the reason for it.

    ``aliases`` maps alias -> version; ``scored_by_partition`` maps a predictions partition's day
    to the versions its rows name; ``today`` is the day the retention window ends.
    """
    window_start = today - dt.timedelta(days=policy.window_days)
    ordered = sorted(versions, key=lambda v: -int(v.version))
    newest = {v.version for v in ordered[: policy.keep_last]}
    named: dict[str, list[dt.date]] = {}
    for day, scored in scored_by_partition.items():
        if day >= window_start:
            for version in set(scored):
                named.setdefault(str(version), []).append(day)
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    steps = []
    for v in ordered:
        keep = [f"alias {a}" for a in sorted(by_version.get(v.version, []))]
        if v.version in newest:
            keep.append(f"one of the {policy.keep_last} newest versions")
        if v.version in named:
            days = sorted(named[v.version])
            keep.append(f"scored {len(days)} partition(s) up to {days[-1]} (window from {window_start})")
        if keep:
            action = RESTORE if v.deprecated_on is not None else KEEP
            steps.append(VersionPlan(v.version, action, "kept: " + "; ".join(keep), v.deprecated_on))
        elif v.deprecated_on is None:
            reason = f"not aliased, not among the {policy.keep_last} newest, no partition since {window_start}"
            steps.append(VersionPlan(v.version, DEPRECATE, reason, today))
        else:
            ends = v.deprecated_on + dt.timedelta(days=policy.grace_days)
            if today >= ends:
                steps.append(
                    VersionPlan(
                        v.version, DELETE, f"deprecated on {v.deprecated_on}; grace ended {ends}", v.deprecated_on
                    )
                )
            else:
                steps.append(
                    VersionPlan(
                        v.version, WAIT, f"deprecated on {v.deprecated_on}; deleted from {ends}", v.deprecated_on
                    )
                )
    return RetentionPlan(today, tuple(steps))


# --- reading the state: registry and predictions -------------------------------------------------


def _deprecated_on(version: str, tags: Mapping[str, str]) -> dt.date | None:
    value = tags.get(DEPRECATED_TAG)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        log.warning("version %s: unreadable %s tag %r; treated as not deprecated", version, DEPRECATED_TAG, value)
        return None


def version_states(name: str, *, client: Client | None = None) -> list[VersionState]:
    """The registered versions of a model with the day each was deprecated (from its tag)."""
    return [
        VersionState(v["version"], _deprecated_on(v["version"], v["tags"]))
        for v in tracking.list_versions(name, c=client)
    ]


def prediction_tables(cfg: PipelineConfig) -> list[str]:
    """The predictions tables whose rows name model versions: the served one and the shadow one."""
    from flightdeck.model.inference import shadow_table

    entity = cfg.dataset.entity.name
    return [entity, shadow_table(entity)]


def newest_scored(lake: Lake, tables: Sequence[str]) -> dt.date | None:
    """The newest committed predictions partition over ``tables`` (None before any scoring)."""
    days = [d for t in tables for d in lake.committed_partitions("predictions", t)]
    return max(days) if days else None


def scored_versions(lake: Lake, tables: Sequence[str], since: dt.date) -> dict[dt.date, set[str]]:
    """The model versions named by each committed predictions partition from ``since`` on (pyarrow, no Spark)."""
    import pyarrow.parquet as pq

    out: dict[dt.date, set[str]] = {}
    for table in tables:
        for day in lake.committed_partitions("predictions", table):
            if day < since:
                continue
            found = out.setdefault(day, set())
            for path in committed_files(lake.partition("predictions", table, day)):
                if path.endswith(".parquet"):
                    column = pq.read_table(io.BytesIO(read_bytes(path)), columns=[MODEL_VERSION]).column(0)
                    found.update(str(v) for v in column.unique().to_pylist() if v is not None)
    return out


def window_end(run_day: dt.date, newest: dt.date | None) -> dt.date:
    """The day the retention window ends: the run's day, or the newest scored partition when that is
    earlier (a backfilled or replayed history is judged on its own days, never emptied by the clock)."""
    return min(run_day, newest) if newest is not None else run_day


# --- the ledger record -----------------------------------------------------------------------------


def _ledger_prefix(name: str) -> str:
    return registry._prefix(name, LEDGER_KIND)


def retention_records(name: str, *, lake: Lake) -> list[RetentionRecord]:
    """The retention runs of a model recorded in the alias ledger, oldest first."""
    prefix = _ledger_prefix(name)
    records = [
        RetentionRecord.model_validate(read_json(path))
        for path in list_docs(lake.promotions())
        if path.rsplit("/", 1)[-1].startswith(prefix)
    ]
    return sorted(records, key=lambda r: r.seq)


def _claim(lake: Lake, record: RetentionRecord) -> str:
    for _ in range(_CLAIM_ATTEMPTS):
        records = retention_records(record.model_name, lake=lake)
        record.seq = (records[-1].seq + 1) if records else 1
        path = lake.promotion(f"{_ledger_prefix(record.model_name)}{record.seq:06d}.json")
        if registry._create_exclusive(path, record.to_json()):
            return path
    raise RuntimeError(f"model {record.model_name}: could not claim a retention ledger entry")


# --- the run ---------------------------------------------------------------------------------------


def _apply(name: str, step: RetentionStep, day: dt.date, c: Client) -> None:
    if step.action == DEPRECATE:
        tracking.tag_version(name, step.version, {DEPRECATED_TAG: day.isoformat()}, c=c)
    elif step.action == RESTORE:
        tracking.delete_version_tag(name, step.version, DEPRECATED_TAG, c=c)
    elif step.action == DELETE:
        # an alias may have moved onto it since the plan (a rollback): never delete an aliased version
        aliases = tracking.model_aliases(name, c=c) or {}
        if step.version in aliases.values():
            raise RetentionError(f"v{step.version} is aliased again ({aliases}); not deleted")
        step.deleted_uri = tracking.delete_version(name, step.version, c=c)


def run_retention(
    cfg: PipelineConfig,
    lake: Lake,
    *,
    run_day: dt.date,
    dry_run: bool | None = None,
    who: str | None = None,
    client: Client | None = None,
    now: dt.datetime | None = None,
) -> RetentionRecord:
    """Plan retention for the configured model and apply it (unless dry), recording the run in the ledger.

    ``run_day`` is the run's day (the DAG's data interval end); ``dry_run`` None takes
    ``retention.dry_run``. Each step's failure is recorded and the others still run.

    Raises:
        RetentionError: a step failed (after the record was written).
    """
    policy = cfg.retention
    dry = policy.dry_run if dry_run is None else dry_run
    name = cfg.model.name
    c = client if client is not None else tracking.client()
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    aliases = tracking.model_aliases(name, c=c)
    tables = prediction_tables(cfg)
    day = window_end(run_day, newest_scored(lake, tables))
    record = RetentionRecord(
        model_name=name,
        seq=0,
        who=who or registry.default_actor(),
        at=at.isoformat(),
        day=day.isoformat(),
        dry_run=dry,
        policy=policy.model_dump(mode="json"),
    )
    if aliases is None:
        log.info("model %s is not registered yet; nothing to retain", name)
        return record
    scored = scored_versions(lake, tables, day - dt.timedelta(days=policy.window_days))
    steps = plan(version_states(name, client=c), aliases, scored, day, policy)
    record.steps = [
        RetentionStep(
            version=s.version,
            action=s.action,
            reason=s.reason,
            deprecated_on=None if s.deprecated_on is None else s.deprecated_on.isoformat(),
        )
        for s in steps.steps
    ]
    path = _claim(lake, record)
    failed = []
    if not dry:
        for step in record.steps:
            if step.action not in {DEPRECATE, RESTORE, DELETE}:
                continue
            try:
                _apply(name, step, day, c)
                step.done = True
                log.info("model %s: retention %s v%s (%s)", name, step.action, step.version, step.reason)
            except Exception as err:  # record it and go on with the other versions
                step.error = f"{type(err).__name__}: {err}"[: tracking.TAG_LIMIT]
                failed.append(step)
                log.warning("model %s: retention %s v%s failed: %s", name, step.action, step.version, err)
        write_json(path, record.to_json())
    log.info(
        "model %s: retention %s on %s: keep %s, deprecate %s, delete %s (ledger %s)",
        name,
        "planned (dry run)" if dry else "applied",
        day,
        steps.versions(KEEP) + steps.versions(RESTORE),
        steps.versions(DEPRECATE),
        steps.versions(DELETE),
        path,
    )
    if failed:
        raise RetentionError(
            f"model {name}: retention steps failed for {[f'v{s.version} {s.action}' for s in failed]}; "
            f"see {path}, fix the cause and run the maintenance again"
        )
    return record
