"""Where drift becomes a retrain: the policy, the request records and their consumption.

The monitoring DAG calls :func:`decide_retrain` (the pure :func:`should_retrain` over the drift
reports and the requests so far) and :func:`record_retrain_request` (the request document, its
alert; its content becomes the ``retrain_request`` asset event). The training DAG turns a
request into its window (:func:`training_window`) and marks it consumed
(:func:`consume_retrain_request`), so the policy may ask again.

Asset-triggered runs do not arrive in day order, so a decision reads only days before its own
(within :func:`decision_horizon`) and waits, in the DAG's ``wait_for_earlier_decisions`` sensor
(:func:`poke_decisions`), until those days have their decision (``RetrainDecision``): the same
days then give the same decisions whatever order they are processed in.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flightdeck.core import alerts
from flightdeck.core.config import Drift, PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, configured, list_docs, parse_date, read_json
from flightdeck.data.documents import read_feature_status
from flightdeck.monitoring.documents import (
    DriftSummary,
    RetrainDecision,
    RetrainRequest,
    read_retrain_decision,
    read_retrain_request,
    read_retrain_requests,
    write_retrain_decision,
    write_retrain_request,
)
from flightdeck.monitoring.drift import (
    STAT_CHI2,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    TASK_REGRESSION,
    prediction_threshold,
)

log = logging.getLogger(__name__)


class RetrainError(FlightdeckError):
    """A training window or retrain request that cannot be honoured (e.g. end before start)."""


def _drifted_features(report: Mapping[str, Any]) -> dict[str, float]:
    psis: Mapping[str, float | None] = report.get("psi", {})
    names = sorted(report.get("drifted", []), key=lambda n: -float(psis.get(n) or 0.0))
    return {n: float(psis.get(n) or 0.0) for n in names}


def _tested(stat: Mapping[str, Any] | None) -> bool:
    return stat is not None and stat.get("statistic") == STAT_CHI2


def _p_text(stat: Mapping[str, Any]) -> str:
    p_value = stat.get("p_value_adjusted", stat.get("p_value"))
    return "p n/a" if p_value is None else f"p {p_value:.2g}"


def feature_summary(report: Mapping[str, Any], policy: Drift) -> str:
    """``"5 of 20 features drifted (share 0.25 >= 0.20): a PSI 1.93, ..."``.

    When a chi-square test judged the day (a small day), the rule and each feature's
    corrected p-value are named: ``"... (chi-square test, p < 0.01 holm-corrected, 110 rows
    < 500): carrier p 3e-08 (PSI 0.93), ..."``.
    """
    drifted = _drifted_features(report)
    statistics: Mapping[str, Mapping[str, Any]] = report.get("statistics") or {}
    by_test = report.get("feature_statistic") == STAT_CHI2
    if by_test:
        drifted = {n: drifted[n] for n in report.get("drifted", [])}  # most significant first
    share = float(report.get("drifted_share", 0.0))
    n_features = int(report.get("n_features", len(report.get("psi", {}))))
    op = ">=" if share >= policy.drifted_share else "<"
    text = f"{len(drifted)} of {n_features} features drifted (share {share:.2f} {op} {policy.drifted_share:.2f})"
    if by_test:
        text += (
            f" (chi-square test, p < {report.get('p_value_threshold', policy.p_value):g} "
            f"{report.get('p_value_correction', policy.p_value_correction)}-corrected, "
            f"{report.get('n_rows')} rows < {report.get('large_sample_rows', policy.large_sample_rows)})"
        )
    listing = ", ".join(
        f"{n} {_p_text(statistics[n])} (PSI {v:.2f})" if _tested(statistics.get(n)) else f"{n} PSI {v:.2f}"
        for n, v in drifted.items()
    )
    return text + (f": {listing}" if listing else "")


def _prediction_verdict(report: Mapping[str, Any], policy: Drift) -> tuple[bool, str] | None:
    """Whether the score distribution breached, with its sentence; None when not measured.

    Reports written before issue 17 have no ``prediction_statistic``: their PSI is compared
    with the threshold, as then.
    """
    pred = report.get("prediction_psi")
    if pred is None:
        return None
    stat: Mapping[str, Any] = report.get("prediction_statistic") or {}
    if _tested(stat):
        breached = bool(report.get("prediction_drifted"))
        op = "<" if breached else ">="
        p_value = stat.get("p_value")
        p_text = "n/a (too few predictions)" if p_value is None else f"{p_value:.2g}"
        limit_p = float(stat.get("threshold") or policy.p_value)
        return breached, (
            f"prediction chi-square p {p_text} {op} {limit_p:g} (PSI {pred:.2f}, {stat.get('n_rows')} predictions)"
        )
    limit = prediction_threshold(policy)
    if pred >= limit:
        return True, f"prediction PSI {pred:.2f} >= {limit:.2f}"
    return False, f"prediction PSI {pred:.2f} < {limit:.2f}"


def _interval_text(perf: Mapping[str, Any], key: str) -> str:
    interval = perf.get(f"{key}_interval")
    if not interval:
        return ""
    return f", {float(perf.get('confidence', 0.95)):.0%} interval {interval[0]:.3f}..{interval[1]:.3f}"


def _regression_verdict(perf: Mapping[str, Any], policy: Drift) -> tuple[list[str], list[str]]:
    """Breach and note sentences of a judged labelled day of a regression model (relative RMSE rise)."""
    ref = perf.get("reference", {})
    on = f"labels of {perf.get('date')}"
    rmse_text = f"RMSE {perf['rmse']:.4g} vs holdout {float(ref.get('rmse', float('nan'))):.4g}"
    mae_text = f"MAE {perf['mae']:.4g} vs holdout {float(ref.get('mae', float('nan'))):.4g}"
    if perf.get("rmse_breach"):
        rise = f"rise {perf['rmse_rise']:+.1%}"
        interval = perf.get("rmse_rise_interval")
        if interval:
            rise += f", {float(perf.get('confidence', 0.95)):.0%} interval {interval[0]:+.1%}..{interval[1]:+.1%}"
        return [f"{rmse_text} ({rise} >= {policy.max_rmse_rise:.1%}, {on})"], []
    held = f"performance holds on {on}: {rmse_text}, {mae_text}"
    interval = perf.get("rmse_rise_interval")
    if interval:
        held += (
            f" (RMSE rise {float(perf.get('confidence', 0.95)):.0%} interval {interval[0]:+.1%}..{interval[1]:+.1%}, "
            f"breach only when all of it >= {policy.max_rmse_rise:.1%})"
        )
    return [], [held]


def _performance_verdict(perf: Mapping[str, Any], policy: Drift) -> tuple[list[str], list[str]]:
    """Breach and note sentences of a judged labelled day (status ``ok``)."""
    if perf.get("task") == TASK_REGRESSION:
        return _regression_verdict(perf, policy)
    breaches: list[str] = []
    notes: list[str] = []
    ref = perf.get("reference", {})
    on = f"labels of {perf.get('date')}"
    auc_text = f"AUC {perf['roc_auc']:.3f} vs holdout {float(ref.get('roc_auc', float('nan'))):.3f}"
    ll_text = f"log loss {perf['log_loss']:.3f} vs holdout {float(ref.get('log_loss', float('nan'))):.3f}"
    if perf.get("auc_breach"):
        breaches.append(
            f"{auc_text} (drop {perf['auc_drop']:.3f}{_interval_text(perf, 'auc_drop')} "
            f">= {policy.max_auc_drop:.3f}, {on})"
        )
    if perf.get("log_loss_breach"):
        breaches.append(
            f"{ll_text} (rise {perf['log_loss_rise']:.3f}{_interval_text(perf, 'log_loss_rise')} "
            f">= {policy.max_log_loss_rise:.3f}, {on})"
        )
    if not breaches:
        held = f"performance holds on {on}: {auc_text}, {ll_text}"
        interval = perf.get("auc_drop_interval")
        if interval:
            held += (
                f" (AUC drop {float(perf.get('confidence', 0.95)):.0%} interval "
                f"{interval[0]:.3f}..{interval[1]:.3f}, breach only when all of it >= {policy.max_auc_drop:.3f})"
            )
        notes.append(held)
    return breaches, notes


def window_breaches(report: Mapping[str, Any], policy: Drift) -> dict[str, Any]:
    """Which statistics of one monitored window breached their thresholds, each with a sentence.

    Returns ``{"judged": bool, "breaches": [sentences], "notes": [sentences]}``: ``judged`` is
    False when no statistic had enough data (such a window is not counted among the last n).
    """
    breaches: list[str] = []
    notes: list[str] = []
    judged = False
    if report.get("status") == STATUS_INSUFFICIENT:
        notes.append(
            f"insufficient rows for drift on {report.get('date', 'this day')}: "
            f"{report.get('n_rows')} < minimum {report.get('min_rows')}"
        )
    else:
        judged = True
        summary = feature_summary(report, policy)
        (breaches if float(report.get("drifted_share", 0.0)) >= policy.drifted_share else notes).append(summary)
        verdict = _prediction_verdict(report, policy)
        if verdict is not None:
            (breaches if verdict[0] else notes).append(verdict[1])
    perf = report.get("performance") or {}
    if perf.get("status") == STATUS_OK:
        judged = True
        perf_breaches, perf_notes = _performance_verdict(perf, policy)
        breaches += perf_breaches
        notes += perf_notes
    elif perf:
        why = perf.get("reason") or f"{perf.get('n_rows', 0)} labelled rows"
        notes.append(f"performance not judged on labels of {perf.get('date')}: {perf.get('status')} ({why})")
    return {"judged": judged, "breaches": breaches, "notes": notes}


@dataclass(frozen=True)
class History:
    """What the policy looks at: the monitored windows (drift reports) and the retrain requests.

    ``windows`` are drift reports (each with a ``date``); ``requests`` are retrain request docs
    (``partition``; ``consumed_by`` once a training run took them); ``day`` is the window being
    decided. Plain mappings, so the policy is tested without a lake.
    """

    day: dt.date
    windows: Sequence[Mapping[str, Any]]
    requests: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Decision:
    """The drift policy's verdict for one window: retrain or not, why, and the evidence."""

    retrain: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decision_horizon(policy: Drift) -> int:
    """How many days before D the policy reads: the k-of-n windows, the cooldown, an open request.

    A window or request older than this cannot change D's decision (the last ``windows``
    windows are looked for only within it), so D waits for no earlier day than this.
    """
    return max(policy.windows, policy.cooldown_days, policy.request_ttl_days) - 1


def is_open(request: Mapping[str, Any], day: dt.date, policy: Drift) -> bool:
    """A request is open until a training run consumed it, or until it is ``request_ttl_days`` old."""
    if request.get("consumed_by"):
        return False
    return (day - parse_date(request["partition"])).days < policy.request_ttl_days


def _request_block(
    requests_in: Sequence[Mapping[str, Any]], day: dt.date, pol: Drift, details: dict[str, Any]
) -> str | None:
    """Why the request history forbids a new request for ``day`` (rules 3-5), or None."""
    requests = [r for r in requests_in if "partition" in r]
    same = [r for r in requests if parse_date(r["partition"]) == day]
    if same:
        details["existing_request"] = dict(same[0])
        return f"a retrain request for {day} exists already"
    # Only requests of earlier days: a later day's request (processed first) changes nothing here.
    earlier = [r for r in requests if parse_date(r["partition"]) < day]
    open_ = [r for r in earlier if is_open(r, day, pol)]
    if open_:
        details["open_request"] = dict(open_[-1])
        return (
            f"the retrain request for {open_[-1]['partition']} is still open "
            f"(no training run consumed it yet; it expires after {pol.request_ttl_days} days)"
        )
    previous = sorted((parse_date(r["partition"]) for r in earlier), reverse=True)
    if previous and pol.cooldown_days > 0 and (day - previous[0]).days < pol.cooldown_days:
        details["cooldown_from"] = previous[0].isoformat()
        return (
            f"in cooldown: last retrain request was for {previous[0]}, "
            f"{(day - previous[0]).days} day(s) before {day} (cooldown {pol.cooldown_days} days)"
        )
    return None


def should_retrain(history: History, pol: Drift) -> Decision:
    """Ask for a retrain when k of the last n windows breached, nothing is open, no cooldown.

    Rules, in order (the first that says no wins, and its sentence is the reason):

    1. the current window (``history.day``) must itself breach a threshold: share of drifted
       features, prediction PSI, or (once labels arrived) AUC drop / log-loss rise (a
       regression model: the relative RMSE rise);
    2. at least ``policy.breaches`` of the last ``policy.windows`` judged windows up to the
       current one breached (windows without enough data are skipped, not counted);
    3. no request for this partition exists already (a rerun never asks twice);
    4. no request of an earlier partition is open (at most one open request; see :func:`is_open`);
    5. no request for a partition P with P < day < P + ``cooldown_days`` (cooldown after a
       retrain; requests for later partitions, e.g. a backfill, do not count).

    Only windows of the :func:`decision_horizon` days up to ``day`` are read, and no request of
    a later day: the decision of a day does not depend on the order days are processed in.
    """
    day = history.day
    oldest = day - dt.timedelta(days=decision_horizon(pol))
    by_date: dict[dt.date, Mapping[str, Any]] = {}
    for w in history.windows:
        d = parse_date(w["date"])
        if oldest <= d <= day:
            by_date[d] = w
    current = by_date.get(day)
    if current is None:
        return Decision(False, f"no drift report for {day}", {"day": day.isoformat()})
    verdict = window_breaches(current, pol)
    features = _drifted_features(current)
    details: dict[str, Any] = {
        "day": day.isoformat(),
        "breaches": verdict["breaches"],
        "notes": verdict["notes"],
        "prediction_psi": current.get("prediction_psi"),
        "performance": current.get("performance"),
        "k": pol.breaches,
        "n": pol.windows,
    }
    if not verdict["breaches"]:
        reason = "; ".join(verdict["notes"]) or f"nothing measured on {day}"
        return Decision(False, f"no threshold breached on {day}: {reason}" if verdict["judged"] else reason,
                        details, features)  # fmt: skip
    judged = []
    for d in sorted(by_date, reverse=True):
        v = window_breaches(by_date[d], pol) if d != day else verdict
        if v["judged"]:
            judged.append((d, bool(v["breaches"])))
        if len(judged) == pol.windows:
            break
    hits = sum(1 for _, b in judged if b)
    details["windows"] = [{"date": d.isoformat(), "breached": b} for d, b in reversed(judged)]
    details["breached_windows"] = hits
    evidence = "; ".join(verdict["breaches"])
    k_of_n = f"{hits} of the last {len(judged)} windows breached, need {pol.breaches} of {pol.windows}"
    if hits < pol.breaches:
        return Decision(False, f"{evidence} but only {k_of_n}", details, features)

    blocked = _request_block(history.requests, day, pol, details)
    if blocked:
        return Decision(False, f"{evidence} but {blocked}", details, features)
    suffix = f" ({k_of_n})" if pol.windows > 1 else ""
    return Decision(True, evidence + suffix, details, features)


def training_window(
    partition_key: str | None, params: Mapping[str, Any], request: Mapping[str, Any] | None, cfg: PipelineConfig
) -> dict[str, str]:
    """The training window of a run: from a retrain request's partition, else from the Params.

    A retrain request for partition D trains on the ``retrain_window_days`` days ending at D
    (day D's outcomes are known once it has been scored). A manual run uses the Params,
    which default to the config's first training window.
    """
    if partition_key:
        end = parse_date(partition_key)
        start = end - dt.timedelta(days=cfg.model.retrain_window_days - 1)
        reason = str((request or {}).get("reason") or f"retrain requested for {end}")
        return {"train_start": start.isoformat(), "train_end": end.isoformat(), "reason": reason}
    start = parse_date(str(params.get("train_start") or cfg.model.train_start))
    end = parse_date(str(params.get("train_end") or cfg.model.train_end))
    if end < start:
        raise RetrainError(f"train_end {end} is before train_start {start}")
    reason = str(params.get("reason") or "manual training run")
    return {"train_start": start.isoformat(), "train_end": end.isoformat(), "reason": reason}


def retrain_history(lake: Lake) -> list[dict[str, Any]]:
    """Every retrain request recorded so far, oldest first (as the policy's plain documents)."""
    return [request.to_doc() for request in read_retrain_requests(lake)]


def drift_windows(lake: Lake) -> list[dict[str, Any]]:
    """Every monitored window so far (the drift reports ``monitoring/drift_reports/D.json``)."""
    return [dict(read_json(path)) for path in list_docs(lake.drift_reports())]


def undecided_days(lake: Lake, cfg: PipelineConfig, day: dt.date | str) -> list[str]:
    """Earlier days within the policy's horizon whose decision D must wait for.

    A day blocks while it has no ``RetrainDecision`` (or one saying retrain whose request is not
    recorded yet) and is on its way through the daily chain:
    its bronze is committed and its features are either not built yet or were built by the
    features DAG (which records a feature status before it builds). A day before
    ``calendar.start``, never ingested, or history loaded by the bootstrap (features without a
    feature status: never scored) does not block.
    """
    date = parse_date(day)
    first = max(date - dt.timedelta(days=decision_horizon(cfg.drift)), cfg.calendar.start)
    entity = cfg.dataset.entity.name
    ingested = set(lake.committed_partitions("bronze", entity))
    built = set(lake.committed_partitions("features", entity))
    out = []
    for i in range((date - first).days):
        earlier = first + dt.timedelta(days=i)
        if earlier not in ingested:
            continue
        decided = read_retrain_decision(lake, earlier.isoformat())
        if decided is not None:
            # A retrain decision counts once its request is recorded (the next task writes it).
            if not decided.retrain or read_retrain_request(lake, earlier.isoformat()) is not None:
                continue
            out.append(earlier.isoformat())
            continue
        if earlier in built and read_feature_status(lake, earlier.isoformat()) is None:
            continue  # history of the bootstrap: never scored nor monitored
        out.append(earlier.isoformat())
    return out


def poke_decisions(
    partition: str, waiting_since: dt.datetime, now: dt.datetime | None = None
) -> tuple[bool, dict[str, Any]]:
    """The monitoring DAG's ``wait_for_earlier_decisions``: (decide now?, what it still waits for).

    Done when every earlier day in the horizon is decided or, past ``timeouts.upstream_wait_hours``
    from ``waiting_since`` (the run's start), with the days it goes without (recorded in the
    decision). ``now`` defaults to the wall clock, which measures the wait, not the data.
    """
    cfg, lake = configured()
    undecided = undecided_days(lake, cfg, partition)
    deadline = waiting_since + dt.timedelta(hours=cfg.timeouts.upstream_wait_hours)
    done = not undecided or (now or dt.datetime.now(dt.UTC)) >= deadline
    if undecided:
        log.log(
            logging.WARNING if done else logging.INFO,
            "decision %s: %s for the decisions of %s",
            partition,
            "deadline passed, deciding without" if done else f"waiting until {deadline.isoformat()}",
            ", ".join(undecided),
        )
    return done, {"partition": partition, "undecided": undecided, "deadline": deadline.isoformat()}


def decide_retrain(partition: str, run_key: str, waited: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Apply the drift policy to this window and the earlier history (a pure decision, with a reason).

    The decision is recorded (``monitoring/retrain_decisions/D.json``) for the later days that
    wait for it; ``waited`` is the sensor's last status (earlier days still undecided at its deadline).
    """
    cfg, lake = configured()
    report = DriftSummary.read(lake, run_key).to_json()
    day = parse_date(partition)
    windows = [w for w in drift_windows(lake) if w.get("date") != day.isoformat()] + [report]
    history = History(day=day, windows=windows, requests=retrain_history(lake))
    decision = should_retrain(history, cfg.drift)
    went_without = list((waited or {}).get("undecided") or [])
    result = {"partition": partition, **decision.to_dict()}
    if went_without:
        result["details"]["went_without"] = went_without
    write_retrain_decision(
        lake,
        RetrainDecision(
            partition=day.isoformat(),
            retrain=decision.retrain,
            reason=decision.reason,
            monitoring_run=run_key,
            went_without=went_without,
        ),
    )
    log.info("drift policy for %s: retrain=%s: %s", partition, decision.retrain, decision.reason)
    return result


def record_retrain_request(partition: str, decision: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Write the retrain request to the lake (open until a training run consumes it) and alert.

    Its content becomes the asset event's extra.
    """
    cfg, lake = configured()
    details = decision.get("details") or {}
    request = RetrainRequest(
        partition=partition,
        reason=decision["reason"],
        features=decision.get("features", {}),
        breaches=details.get("breaches", []),
        monitoring_run=run_id,
    )
    write_retrain_request(lake, request)
    doc = request.to_doc()
    alerts.notify(alerts.RETRAIN_REQUESTED, f"retrain requested for {partition}: {request.reason}", doc, cfg=cfg)
    return doc


def consume_retrain_request(partition: str | None, consumer: str) -> dict[str, Any] | None:
    """Mark the retrain request for ``partition`` consumed by a training run (``consumer``: its run id).

    The training DAG calls this once it has taken the request, so the drift policy may ask
    again (at most one request is open at a time). This is the only way a request becomes
    consumed: the policy never guesses it from MLflow runs. Returns the updated request, or None when
    there is none for that partition (a manual run).
    """
    if not partition:
        return None
    _, lake = configured()
    request = read_retrain_request(lake, partition)
    if request is None:
        return None
    consumed = request.model_copy(update={"consumed_by": consumer})
    write_retrain_request(lake, consumed)
    log.info("retrain request for %s consumed by %s", consumed.partition, consumer)
    return consumed.to_doc()
