"""The promotion gate: may a candidate model replace the champion?

Pure: plain numbers in (metrics of candidate and champion on the same frozen holdout,
per-slice AUCs, a bootstrap interval of the AUC difference), a :class:`Decision` with
human-readable reasons out. The gate is tested without Spark or MLflow, and its verdict
is stored as tags on the candidate's model version and returned by the Airflow task.

Checks (each one recorded under ``checks`` with its numbers):

* ``min_auc`` — candidate ROC AUC >= ``gate.min_auc`` (always);
* ``max_auc_regression`` — candidate AUC >= champion AUC - ``gate.max_auc_regression``;
* ``slices`` — the same per slice value (e.g. each carrier, origin, month) with at least
  ``gate.min_slice_rows`` rows and both classes, against ``gate.max_slice_regression``;
* ``auc_diff_ci`` — the paired bootstrap interval of AUC(candidate) - AUC(champion) must
  reach ``-gate.max_auc_regression`` (an interval wholly below it means the candidate is
  worse beyond the tolerance with that confidence).

A first model (no champion) is judged on ``min_auc`` only.

A regression model (``model.task: regression``, :func:`decide_regression`) is judged on
holdout RMSE instead, with the same shape:

* ``max_rmse`` — candidate RMSE <= ``gate.max_rmse`` (only when set: RMSE has no
  task-independent floor, so a first regression model passes unless a ceiling is configured);
* ``max_rmse_regression`` — candidate RMSE <= champion RMSE x (1 + ``gate.max_rmse_regression``);
* ``slices`` — per slice value with at least ``gate.min_slice_rows`` rows: fails when the whole
  paired bootstrap interval of the slice's relative RMSE difference lies above
  ``gate.max_slice_rmse_regression`` (default ``max_rmse_regression``); without an interval,
  when the point estimate does;
* ``rmse_diff_ci`` — the paired bootstrap interval of RMSE(candidate) / RMSE(champion) - 1
  must reach ``gate.max_rmse_regression`` (an interval wholly above it fails).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flightdeck.core.config import Gate
from flightdeck.core.errors import FlightdeckError

METRIC = "roc_auc"
REGRESSION_METRIC = "rmse"
METRICS = {"binary": METRIC, "regression": REGRESSION_METRIC}


class GateThresholdError(FlightdeckError):
    """The gate lacks a threshold its task needs (the message names the key)."""


# slice column -> slice value -> {"n": rows, "candidate": auc, "champion": auc}
SliceAucs = Mapping[str, Mapping[str, Mapping[str, float | int | None]]]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: passed or not, why (sentences with numbers), and each check's data."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _valid(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _metric(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    if metrics is None:
        return None
    return _valid(metrics.get(name))


def _check_slices(slices: SliceAucs, thresholds: Gate) -> tuple[bool, dict[str, Any], list[str]]:
    """Judge every slice value with enough rows; report the ones that regress too much."""
    failed: list[dict[str, Any]] = []
    judged = skipped = 0
    worst: dict[str, Any] | None = None
    for column in sorted(slices):
        for value in sorted(slices[column], key=str):
            entry = slices[column][value]
            n = int(entry.get("n") or 0)
            cand, champ = _valid(entry.get("candidate")), _valid(entry.get("champion"))
            if n < thresholds.min_slice_rows or cand is None or champ is None:
                skipped += 1
                continue
            judged += 1
            delta = cand - champ
            row = {"slice": f"{column}={value}", "n": n, "candidate": cand, "champion": champ, "delta": delta}
            if worst is None or delta < worst["delta"]:
                worst = row
            if delta < -thresholds.max_slice_regression:
                failed.append(row)
    passed = not failed
    check = {
        "passed": passed,
        "threshold": thresholds.max_slice_regression,
        "min_rows": thresholds.min_slice_rows,
        "judged": judged,
        "skipped": skipped,
        "worst": worst,
        "failed": failed,
    }
    reasons: list[str] = []
    if failed:
        shown = ", ".join(
            f"{f['slice']} {f['candidate']:.4f} vs {f['champion']:.4f} ({f['delta']:+.4f}, n={f['n']})"
            for f in sorted(failed, key=lambda f: f["delta"])[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        reasons.append(
            f"{len(failed)} of {judged} slices regress by more than {thresholds.max_slice_regression:.4f} AUC: "
            f"{shown}{more}"
        )
    elif worst is not None:
        reasons.append(
            f"all {judged} slices with >= {thresholds.min_slice_rows} rows within "
            f"{thresholds.max_slice_regression:.4f} AUC of the champion "
            f"(worst {worst['slice']} {worst['delta']:+.4f}; {skipped} small slices not judged)"
        )
    else:
        reasons.append(f"no slice has >= {thresholds.min_slice_rows} rows with both classes: slices not judged")
    return passed, check, reasons


def decide(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    thresholds: Gate,
    *,
    slices: SliceAucs | None = None,
    auc_diff_ci: Sequence[float] | None = None,
    task: str = "binary",
    rmse_diff_ci: Sequence[float] | None = None,
) -> Decision:
    """Decide whether ``candidate`` may become champion (see the module docstring for the checks).

    Args:
        candidate: the candidate's holdout metrics (needs ``roc_auc``; regression: ``rmse``).
        champion: the champion's metrics on the same holdout, or None when there is no champion.
        thresholds: the ``gate`` section of the config.
        slices: per-slice AUCs of both models (``{column: {value: {n, candidate, champion}}}``);
            regression: per-slice RMSEs, with ``low``/``high`` of the relative difference.
        auc_diff_ci: ``(low, high)`` bootstrap interval of AUC(candidate) - AUC(champion).
        task: ``model.task``; ``regression`` is judged by :func:`decide_regression`.
        rmse_diff_ci: regression: ``(low, high)`` interval of RMSE(candidate) / RMSE(champion) - 1.

    Raises:
        GateThresholdError: a binary gate without ``min_auc`` or ``max_auc_regression``.
    """
    if task == "regression":
        return decide_regression(candidate, champion, thresholds, slices=slices, rmse_diff_ci=rmse_diff_ci)
    min_auc, max_regression = thresholds.min_auc, thresholds.max_auc_regression
    if min_auc is None or max_regression is None:
        missing = ", ".join(thresholds.missing_for("binary"))
        raise GateThresholdError(f"{missing} must be set to gate a binary model (model.task: binary)")
    return _decide_binary(
        candidate, champion, thresholds, min_auc, max_regression, slices=slices, auc_diff_ci=auc_diff_ci
    )


def _decide_binary(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    thresholds: Gate,
    min_auc: float,
    max_auc_regression: float,
    *,
    slices: SliceAucs | None,
    auc_diff_ci: Sequence[float] | None,
) -> Decision:
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    cand_auc = _metric(candidate, METRIC)

    if cand_auc is None:
        reasons.append(f"candidate has no valid {METRIC} metric (got {dict(candidate)!r}); cannot judge it")
        checks["min_auc"] = {"value": None, "threshold": min_auc, "passed": False}
        return Decision(passed=False, reasons=reasons, checks=checks)

    ok_abs = cand_auc >= min_auc
    checks["min_auc"] = {"value": cand_auc, "threshold": min_auc, "passed": ok_abs}
    relation = ">=" if ok_abs else "<"
    reasons.append(f"candidate ROC AUC {cand_auc:.4f} {relation} minimum {min_auc:.4f}")

    champ_auc = _metric(champion, METRIC)
    if champion is None or champ_auc is None:
        why = "no current champion" if champion is None else f"champion has no valid {METRIC} metric"
        reasons.append(f"{why}: judged on absolute thresholds only")
        checks["max_auc_regression"] = {"value": None, "threshold": max_auc_regression, "passed": True}
        return Decision(passed=ok_abs, reasons=reasons, checks=checks)

    floor = champ_auc - max_auc_regression
    ok_rel = cand_auc >= floor
    delta = cand_auc - champ_auc
    checks["max_auc_regression"] = {
        "value": delta,
        "champion": champ_auc,
        "floor": floor,
        "threshold": max_auc_regression,
        "passed": ok_rel,
    }
    relation = ">=" if ok_rel else "<"
    reasons.append(
        f"candidate ROC AUC {cand_auc:.4f} vs champion {champ_auc:.4f} (change {delta:+.4f}): "
        f"{relation} floor {floor:.4f} (champion minus allowed regression {max_auc_regression:.4f})"
    )

    ok_slices = True
    if slices:
        ok_slices, checks["slices"], slice_reasons = _check_slices(slices, thresholds)
        reasons.extend(slice_reasons)

    ok_ci = True
    if auc_diff_ci is not None:
        low, high = (_valid(v) for v in auc_diff_ci)
        if low is None or high is None:
            reasons.append("bootstrap interval of the AUC difference is undefined: not judged")
            checks["auc_diff_ci"] = {"low": None, "high": None, "passed": True}
        else:
            ok_ci = high >= -max_auc_regression
            checks["auc_diff_ci"] = {
                "low": low,
                "high": high,
                "confidence": thresholds.bootstrap_confidence,
                "threshold": -max_auc_regression,
                "passed": ok_ci,
            }
            relation = "reaches" if ok_ci else "lies wholly below"
            reasons.append(
                f"{thresholds.bootstrap_confidence:.0%} bootstrap interval of the AUC difference "
                f"[{low:+.4f}, {high:+.4f}] {relation} {-max_auc_regression:+.4f}"
            )
    return Decision(passed=ok_abs and ok_rel and ok_slices and ok_ci, reasons=reasons, checks=checks)


# --- regression: RMSE -----------------------------------------------------------------------------


def _relative(candidate: float, champion: float) -> float:
    """RMSE(candidate) / RMSE(champion) - 1 (a perfect champion: 0 when both are, else infinity)."""
    if champion > 0:
        return candidate / champion - 1
    return 0.0 if candidate <= 0 else math.inf


def _check_rmse_slices(slices: SliceAucs, thresholds: Gate) -> tuple[bool, dict[str, Any], list[str]]:
    """Judge every slice value with enough rows on its relative RMSE difference (its interval when given)."""
    limit = (
        thresholds.max_slice_rmse_regression
        if thresholds.max_slice_rmse_regression is not None
        else thresholds.max_rmse_regression
    )
    failed: list[dict[str, Any]] = []
    judged = skipped = 0
    worst: dict[str, Any] | None = None
    for column in sorted(slices):
        for value in sorted(slices[column], key=str):
            entry = slices[column][value]
            n = int(entry.get("n") or 0)
            cand, champ = _valid(entry.get("candidate")), _valid(entry.get("champion"))
            if n < thresholds.min_slice_rows or cand is None or champ is None:
                skipped += 1
                continue
            judged += 1
            change = _relative(cand, champ)
            low, high = _valid(entry.get("low")), _valid(entry.get("high"))
            row = {"slice": f"{column}={value}", "n": n, "candidate": cand, "champion": champ, "change": change,
                   "low": low, "high": high}  # fmt: skip
            if worst is None or change > worst["change"]:
                worst = row
            if (low > limit) if low is not None else (change > limit):
                failed.append(row)
    check = {
        "passed": not failed,
        "threshold": limit,
        "min_rows": thresholds.min_slice_rows,
        "judged": judged,
        "skipped": skipped,
        "worst": worst,
        "failed": failed,
    }
    reasons: list[str] = []
    if failed:
        shown = ", ".join(
            f"{f['slice']} RMSE {f['candidate']:.4g} vs {f['champion']:.4g} ({f['change']:+.1%}"
            + (f", interval [{f['low']:+.1%}, {f['high']:+.1%}]" if f["low"] is not None else "")
            + f", n={f['n']})"
            for f in sorted(failed, key=lambda f: -f["change"])[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        reasons.append(f"{len(failed)} of {judged} slices have an RMSE worse than the champion's by more than "
                       f"{limit:.1%}: {shown}{more}")  # fmt: skip
    elif worst is not None:
        reasons.append(
            f"all {judged} slices with >= {thresholds.min_slice_rows} rows within {limit:.1%} of the champion's "
            f"RMSE (worst {worst['slice']} {worst['change']:+.1%}; {skipped} small slices not judged)"
        )
    else:
        reasons.append(f"no slice has >= {thresholds.min_slice_rows} rows: slices not judged")
    return not failed, check, reasons


def decide_regression(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    thresholds: Gate,
    *,
    slices: SliceAucs | None = None,
    rmse_diff_ci: Sequence[float] | None = None,
) -> Decision:
    """Decide whether a regression ``candidate`` may become champion, on holdout RMSE.

    Args:
        candidate: the candidate's holdout metrics (needs ``rmse``).
        champion: the champion's metrics on the same holdout, or None when there is no champion.
        thresholds: the ``gate`` section of the config (``max_rmse``, ``max_rmse_regression``,
            ``max_slice_rmse_regression``, ``min_slice_rows``).
        slices: per-slice RMSEs (``{column: {value: {n, candidate, champion, low, high}}}``).
        rmse_diff_ci: ``(low, high)`` bootstrap interval of RMSE(candidate) / RMSE(champion) - 1.
    """
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    cand = _metric(candidate, REGRESSION_METRIC)
    ceiling = thresholds.max_rmse
    if cand is None:
        reasons.append(f"candidate has no valid {REGRESSION_METRIC} metric (got {dict(candidate)!r}); cannot judge it")
        checks["max_rmse"] = {"value": None, "threshold": ceiling, "passed": False}
        return Decision(passed=False, reasons=reasons, checks=checks)

    ok_abs = ceiling is None or cand <= ceiling
    checks["max_rmse"] = {"value": cand, "threshold": ceiling, "passed": ok_abs}
    if ceiling is None:
        reasons.append(f"candidate RMSE {cand:.4g} (no absolute ceiling: gate.max_rmse is not set)")
    else:
        reasons.append(f"candidate RMSE {cand:.4g} {'<=' if ok_abs else '>'} ceiling {ceiling:.4g}")

    limit = thresholds.max_rmse_regression
    champ = _metric(champion, REGRESSION_METRIC)
    if champion is None or champ is None:
        why = "no current champion" if champion is None else f"champion has no valid {REGRESSION_METRIC} metric"
        reasons.append(f"{why}: judged on absolute thresholds only")
        checks["max_rmse_regression"] = {"value": None, "threshold": limit, "passed": True}
        return Decision(passed=ok_abs, reasons=reasons, checks=checks)

    allowed = champ * (1 + limit)
    change = _relative(cand, champ)
    ok_rel = cand <= allowed
    checks["max_rmse_regression"] = {
        "value": change,
        "candidate": cand,
        "champion": champ,
        "ceiling": allowed,
        "threshold": limit,
        "passed": ok_rel,
    }
    reasons.append(
        f"candidate RMSE {cand:.4g} vs champion {champ:.4g} (change {change:+.1%}): "
        f"{'<=' if ok_rel else '>'} ceiling {allowed:.4g} (champion plus allowed worsening {limit:.1%})"
    )

    ok_slices = True
    if slices:
        ok_slices, checks["slices"], slice_reasons = _check_rmse_slices(slices, thresholds)
        reasons.extend(slice_reasons)

    ok_ci = True
    if rmse_diff_ci is not None:
        low, high = (_valid(v) for v in rmse_diff_ci)
        if low is None or high is None:
            reasons.append("bootstrap interval of the relative RMSE difference is undefined: not judged")
            checks["rmse_diff_ci"] = {"low": None, "high": None, "passed": True}
        else:
            ok_ci = low <= limit
            checks["rmse_diff_ci"] = {
                "low": low,
                "high": high,
                "confidence": thresholds.bootstrap_confidence,
                "threshold": limit,
                "passed": ok_ci,
            }
            relation = "reaches" if ok_ci else "lies wholly above"
            reasons.append(
                f"{thresholds.bootstrap_confidence:.0%} bootstrap interval of the relative RMSE difference "
                f"(candidate / champion - 1) [{low:+.1%}, {high:+.1%}] {relation} {limit:+.1%}"
            )
    return Decision(passed=ok_abs and ok_rel and ok_slices and ok_ci, reasons=reasons, checks=checks)
