"""Gate and promotion as the DAG's tasks see them: apply the gate, move the alias, roll it back.

The decision itself is pure (:func:`flightdeck.model.gate.decide`); the alias moves and the
ledger live in :mod:`flightdeck.model.registry`. These functions join the two with the run's
hand-off documents and the alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flightdeck.core import alerts
from flightdeck.core.lake import configured
from flightdeck.model import gate, registry
from flightdeck.model.documents import Evaluation, GateResult, PromoteResult

log = logging.getLogger(__name__)


def resolve_champion() -> str | None:
    """The current champion version, resolved once per run (None before the first promotion)."""
    cfg, _ = configured()
    return registry.champion_version(cfg.model.name)


def gate_candidate(run_key: str) -> dict[str, Any]:
    """Apply the evaluation gate to this run's candidate and record the decision on its version.

    The evaluation document holds both models' metrics on the same frozen holdout, the
    per-slice AUCs (regression: RMSEs) and the bootstrap interval of the AUC (relative RMSE)
    difference; the decision is pure and judged on ``model.task``'s metric, which the gate
    document names.
    """
    cfg, lake = configured()
    task = cfg.model.task
    evaluation = Evaluation.read(lake, run_key)
    candidate, champion, comparison = evaluation.candidate, evaluation.champion, evaluation.comparison
    ci = comparison.auc_diff_ci
    rmse_ci = comparison.rmse_diff_ci
    decision = gate.decide(
        candidate.metrics,
        champion.metrics if champion else None,
        cfg.gate,
        slices=comparison.slices if champion else None,
        auc_diff_ci=(ci["low"], ci["high"]) if champion and ci else None,
        task=task,
        rmse_diff_ci=(rmse_ci["low"], rmse_ci["high"]) if champion and rmse_ci else None,
    )
    registry.tag_decision(cfg.model.name, candidate.version, decision)
    result = GateResult(
        candidate_version=candidate.version,
        champion_version=champion.version if champion else None,
        candidate_roc_auc=candidate.metrics.get("roc_auc"),
        champion_roc_auc=champion.metrics.get("roc_auc") if champion else None,
        task=task,
        metric=gate.METRICS[task],
        candidate_rmse=candidate.metrics.get("rmse"),
        champion_rmse=champion.metrics.get("rmse") if champion else None,
        **decision.to_dict(),
    )
    result.write(lake, run_key)
    log.info(
        "gate for version %s (champion %s) on %s: %s",
        candidate.version,
        result.champion_version or "none",
        result.metric,
        "PASS" if decision.passed else "FAIL",
    )
    for reason in decision.reasons:
        log.info("  %s", reason)
    return result.to_json()


def promote_candidate(run_key: str, decision: GateResult | Mapping[str, Any], who: str | None = None) -> dict[str, Any]:
    """Move the ``champion`` alias to the candidate, if the champion is still the one it was compared with.

    Raises:
        registry.RegistryError: the gate did not pass for this candidate (nothing moved).
        registry.PromotionConflict: another run moved the champion since evaluation (nothing moved).
        registry.PromotionSuperseded: a newer claim superseded this move while it was in flight
            (the alias is on the newer claim's version; this promotion did not happen).
    """
    cfg, lake = configured()
    verdict = GateResult.of(decision)
    if not verdict.passed:
        raise registry.RegistryError(f"gate did not pass for version {verdict.candidate_version}; refusing to promote")
    move = registry.Move(
        cfg.model.name,
        verdict.candidate_version,
        expected_current=verdict.champion_version,
        decision_ref=run_key,
        why="gate passed: " + "; ".join(verdict.reasons),
        who=who,
    )
    record = registry.promote(move, lake=lake)
    PromoteResult.model_validate(record).write(lake, run_key)
    if not record.get("noop"):
        summary = f"{cfg.model.name} champion v{record.get('previous')} -> v{record['version']}"
        alerts.notify(alerts.PROMOTION, summary, record, cfg=cfg)
    return dict(record)


def rollback_champion(
    to_version: str | None = None, reason: str = "", who: str | None = None, op_id: str | None = None
) -> dict[str, Any]:
    """Restore the previous champion, or the named version.

    ``op_id`` names the operation independently of its try (the Airflow run): a retry after
    the first attempt's alias move returns that move (``noop``) instead of rolling back again.
    """
    cfg, lake = configured()
    record = dict(
        registry.rollback(
            cfg.model.name, to_version=to_version or None, why=reason or None, who=who, lake=lake, op_id=op_id
        )
    )
    if record.get("noop"):
        log.info("rollback %s was already made: %s", op_id, record.get("ledger"))
        return record
    summary = f"{cfg.model.name} champion rolled back v{record.get('previous')} -> v{record.get('version')}"
    alerts.notify(alerts.ROLLBACK, summary, record, cfg=cfg)
    return record
