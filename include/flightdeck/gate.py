"""The promotion gate: may a candidate model replace the champion?

Pure: plain metrics in, a :class:`Decision` with human-readable reasons out, so the
gate is tested without Spark or MLflow and its verdict can be stored as a tag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from flightdeck.config import Gate

METRIC = "roc_auc"


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: passed or not, why (sentences with numbers), and each check's data."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric(metrics: Mapping[str, float] | None, name: str) -> float | None:
    if metrics is None or name not in metrics or metrics[name] is None:
        return None
    value = float(metrics[name])
    return None if math.isnan(value) else value


def decide(candidate: Mapping[str, float], champion: Mapping[str, float] | None, thresholds: Gate) -> Decision:
    """Decide whether ``candidate`` may become champion.

    Checks: candidate ROC AUC >= ``thresholds.min_auc``; and, when there is a champion,
    candidate ROC AUC >= champion ROC AUC - ``thresholds.max_auc_regression`` (both measured
    on the same holdout by the caller). A first model (no champion) is judged on the
    absolute threshold only.
    """
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    cand_auc = _metric(candidate, METRIC)

    if cand_auc is None:
        reasons.append(f"candidate has no valid {METRIC} metric (got {dict(candidate)!r}); cannot judge it")
        checks["min_auc"] = {"value": None, "threshold": thresholds.min_auc, "passed": False}
        return Decision(passed=False, reasons=reasons, checks=checks)

    ok_abs = cand_auc >= thresholds.min_auc
    checks["min_auc"] = {"value": cand_auc, "threshold": thresholds.min_auc, "passed": ok_abs}
    relation = ">=" if ok_abs else "<"
    reasons.append(f"candidate ROC AUC {cand_auc:.4f} {relation} minimum {thresholds.min_auc:.4f}")

    ok_rel = True
    champ_auc = _metric(champion, METRIC)
    if champion is None:
        reasons.append("no current champion: judged on absolute thresholds only")
        checks["max_auc_regression"] = {"value": None, "threshold": thresholds.max_auc_regression, "passed": True}
    elif champ_auc is None:
        reasons.append(f"champion has no valid {METRIC} metric: judged on absolute thresholds only")
        checks["max_auc_regression"] = {"value": None, "threshold": thresholds.max_auc_regression, "passed": True}
    else:
        floor = champ_auc - thresholds.max_auc_regression
        ok_rel = cand_auc >= floor
        delta = cand_auc - champ_auc
        checks["max_auc_regression"] = {
            "value": delta,
            "champion": champ_auc,
            "floor": floor,
            "threshold": thresholds.max_auc_regression,
            "passed": ok_rel,
        }
        relation = ">=" if ok_rel else "<"
        reasons.append(
            f"candidate ROC AUC {cand_auc:.4f} vs champion {champ_auc:.4f} (change {delta:+.4f}): "
            f"{relation} floor {floor:.4f} (champion minus allowed regression {thresholds.max_auc_regression:.4f})"
        )
    return Decision(passed=ok_abs and ok_rel, reasons=reasons, checks=checks)
