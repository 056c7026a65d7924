"""Evaluation: holdout metrics (scikit-learn on label + score only), diagnostic plots, and the
candidate-against-champion comparison on the same holdout rows that the gate judges.

``model.task: binary`` scores are positive-class probabilities (ROC/PR AUC, log loss, Brier,
calibration; per-slice AUCs; a bootstrap interval of the AUC difference); ``model.task:
regression`` scores are predicted values (RMSE, MAE, R²; per-slice RMSEs; a bootstrap interval
of the relative RMSE difference, overall and per slice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake
from flightdeck.model.documents import Comparison, Evaluation, ScoredModel, TrainResult
from flightdeck.model.inference import feature_names

if TYPE_CHECKING:
    import numpy as np
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class EvaluationError(FlightdeckError):
    """The holdout cannot be evaluated (e.g. empty, or only one class)."""


def metrics(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, rows and positive rate."""
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=float)
    if y_arr.size == 0:
        raise EvaluationError("the holdout is empty; nothing to evaluate")
    if len(np.unique(y_arr)) < 2:
        raise EvaluationError(
            f"the holdout has only label {int(y_arr[0])} ({y_arr.size} rows); AUC needs both classes. "
            "Widen the window or raise model.holdout_days"
        )
    return {
        "roc_auc": float(roc_auc_score(y_arr, p_arr)),
        "pr_auc": float(average_precision_score(y_arr, p_arr)),
        "log_loss": float(log_loss(y_arr, np.clip(p_arr, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y_arr, p_arr)),
        "calibration_error": calibration_error(y_arr, p_arr),
        "mean_prediction": float(p_arr.mean()),
        "n_rows": float(y_arr.size),
        "positive_rate": float(y_arr.mean()),
    }


def regression_metrics(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R², mean error (prediction - label), rows, mean label and mean prediction."""
    import numpy as np

    y_arr = np.asarray(y, dtype=float)
    p_arr = np.asarray(p, dtype=float)
    if y_arr.size == 0:
        raise EvaluationError("the holdout is empty; nothing to evaluate")
    if np.isnan(y_arr).any():
        raise EvaluationError(
            f"{int(np.isnan(y_arr).sum())} of {y_arr.size} holdout labels are null; a regression label must "
            "be a number on every row (check label.expression)"
        )
    error = p_arr - y_arr
    spread = float(((y_arr - y_arr.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        # R² is undefined on a constant label: NaN, never a misleading 0 or 1
        "r2": float(1 - (error**2).sum() / spread) if spread > 0 else float("nan"),
        "mean_error": float(error.mean()),
        "n_rows": float(y_arr.size),
        "mean_label": float(y_arr.mean()),
        "mean_prediction": float(p_arr.mean()),
    }


def task_metrics(task: str, y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> dict[str, float]:
    """The holdout metrics of ``task``: :func:`metrics` (binary) or :func:`regression_metrics`."""
    import numpy as np

    return regression_metrics(y, p) if task == "regression" else metrics(np.asarray(y), p)


def calibration_error(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: row-weighted mean |observed late share - mean prediction| over
    ``bins`` equal-width probability bins."""
    import numpy as np

    y_arr = np.asarray(y, dtype=float)
    p_arr = np.asarray(p, dtype=float)
    idx = np.minimum((p_arr * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        mask = idx == b
        total += mask.sum() * abs(y_arr[mask].mean() - p_arr[mask].mean())
    return float(total / max(y_arr.size, 1))


def auc_or_none(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC, or None when ``y`` holds a single class (AUC undefined)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if y.size == 0 or len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, p))


def slice_aucs(
    y: np.ndarray, p_candidate: np.ndarray, p_champion: np.ndarray | None, columns: Mapping[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per slice value (``columns``: name -> value per row): rows and both models' ROC AUC."""
    import numpy as np

    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name, values in columns.items():
        keys = np.asarray(values).astype(str)
        out[name] = {}
        for value in sorted(set(keys.tolist())):
            mask = keys == value
            out[name][value] = {
                "n": int(mask.sum()),
                "candidate": auc_or_none(y[mask], p_candidate[mask]),
                "champion": None if p_champion is None else auc_or_none(y[mask], p_champion[mask]),
            }
    return out


def bootstrap_auc_diff(
    y: np.ndarray, p_candidate: np.ndarray, p_champion: np.ndarray, *, samples: int, confidence: float, seed: int
) -> dict[str, float]:
    """Paired bootstrap (rows resampled together) of AUC(candidate) - AUC(champion): percentile interval."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = y.size
    diffs: list[float] = []
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        diffs.append(float(roc_auc_score(yb, p_candidate[idx]) - roc_auc_score(yb, p_champion[idx])))
    if not diffs:
        return {"low": float("nan"), "high": float("nan"), "mean": float("nan"), "samples": 0.0}
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.asarray(diffs), [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "mean": float(np.mean(diffs)), "samples": float(len(diffs))}


_BOOTSTRAP_CELLS = 2_000_000  # resamples x rows held in memory at once


def _relative_rmse_diffs(
    e_candidate: np.ndarray, e_champion: np.ndarray, *, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """RMSE(candidate) / RMSE(champion) - 1 on ``samples`` paired resamples of the squared errors."""
    import numpy as np

    n = e_candidate.size
    out: list[np.ndarray] = []
    chunk = max(1, _BOOTSTRAP_CELLS // max(n, 1))
    for first in range(0, samples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, samples - first), n))
        mse_cand, mse_champ = e_candidate[idx].mean(axis=1), e_champion[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.sqrt(mse_cand / mse_champ) - 1)
    diffs = np.concatenate(out) if out else np.array([])
    return diffs[np.isfinite(diffs)]


def _interval(diffs: np.ndarray, confidence: float) -> dict[str, float]:
    import numpy as np

    if diffs.size == 0:
        return {"low": float("nan"), "high": float("nan"), "mean": float("nan"), "samples": 0.0}
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "mean": float(np.mean(diffs)), "samples": float(diffs.size)}


def bootstrap_rmse_diff(
    y: np.ndarray, p_candidate: np.ndarray, p_champion: np.ndarray, *, samples: int, confidence: float, seed: int
) -> dict[str, float]:
    """Paired bootstrap (rows resampled together) of the relative RMSE difference
    RMSE(candidate) / RMSE(champion) - 1: percentile interval (0.05 means 5% worse)."""
    import numpy as np

    y = np.asarray(y, dtype=float)
    e_cand = (np.asarray(p_candidate, dtype=float) - y) ** 2
    e_champ = (np.asarray(p_champion, dtype=float) - y) ** 2
    diffs = _relative_rmse_diffs(e_cand, e_champ, samples=samples, rng=np.random.default_rng(seed))
    return _interval(diffs, confidence)


def _rmse(y: np.ndarray, p: np.ndarray) -> float | None:
    import numpy as np

    return float(np.sqrt(np.mean((p - y) ** 2))) if y.size else None


@dataclass(frozen=True)
class Resampling:
    """A paired bootstrap: how many resamples, the interval's confidence, the seed."""

    samples: int
    confidence: float = 0.95
    seed: int = 0


def slice_rmses(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_champion: np.ndarray | None,
    columns: Mapping[str, np.ndarray],
    *,
    min_rows: int = 1,
    resampling: Resampling | None = None,
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per slice value: rows, both models' RMSE and, for slices of at least ``min_rows`` rows with a
    champion and a ``resampling`` of at least one sample, the paired bootstrap interval (``low``,
    ``high``) of the relative RMSE difference on that slice's rows."""
    import numpy as np

    boot = resampling if resampling is not None and resampling.samples > 0 else None
    rng = np.random.default_rng(boot.seed if boot else 0)
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name, values in columns.items():
        keys = np.asarray(values).astype(str)
        out[name] = {}
        for value in sorted(set(keys.tolist())):
            mask = keys == value
            entry: dict[str, float | int | None] = {
                "n": int(mask.sum()),
                "candidate": _rmse(y[mask], p_candidate[mask]),
                "champion": None if p_champion is None else _rmse(y[mask], p_champion[mask]),
            }
            if p_champion is not None and boot is not None and int(mask.sum()) >= min_rows:
                e_cand = (p_candidate[mask] - y[mask]) ** 2
                e_champ = (p_champion[mask] - y[mask]) ** 2
                ci = _interval(_relative_rmse_diffs(e_cand, e_champ, samples=boot.samples, rng=rng), boot.confidence)
                entry["low"], entry["high"] = ci["low"], ci["high"]
            out[name][value] = entry
    return out


def feature_importance(model: PipelineModel, importance_type: str = "gain") -> dict[str, float]:
    """Booster importance per config feature name (0.0 for features the trees never split on)."""

    names = feature_names(model)
    classifier: Any = model.stages[-1]
    raw = classifier.get_booster().get_score(importance_type=importance_type)
    result = dict.fromkeys(names, 0.0)
    for key, value in raw.items():
        if key in result:
            result[key] = float(value)
        elif key.startswith("f") and key[1:].isdigit() and int(key[1:]) < len(names):
            result[names[int(key[1:])]] = float(value)
    return result


def write_plots(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    importance: Mapping[str, float] | None,
    out_dir: str | Path,
) -> list[str]:
    """ROC, precision-recall, calibration and feature-importance PNGs into ``out_dir``; returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(str(out / name))

    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (holdout)")
    ax.legend(loc="lower right")
    save(fig, "roc_curve.png")

    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"AP {average_precision_score(y, p):.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)")
    ax.legend(loc="upper right")
    save(fig, "precision_recall_curve.png")

    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(mean_pred, frac_pos, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed late share", title="Calibration (holdout)")
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    if importance:
        top = sorted(importance.items(), key=lambda kv: kv[1])[-25:]
        fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * len(top) + 1)))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(xlabel="gain", title="Feature importance (gain)")
        save(fig, "feature_importance.png")
    return paths


def write_regression_plots(
    y: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    importance: Mapping[str, float] | None,
    out_dir: str | Path,
) -> list[str]:
    """Predicted vs actual, residuals by predicted decile and feature-importance PNGs; returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(str(out / name))

    m = regression_metrics(y_arr, p_arr)
    low, high = float(min(y_arr.min(), p_arr.min())), float(max(y_arr.max(), p_arr.max()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_arr, p_arr, s=4, alpha=0.3, label=f"RMSE {m['rmse']:.3g}, R² {m['r2']:.3f}")
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (holdout)")
    ax.legend(loc="upper left")
    save(fig, "predicted_vs_actual.png")

    residual = y_arr - p_arr
    cuts = np.unique(np.quantile(p_arr, [i / 10 for i in range(1, 10)]))
    decile = np.searchsorted(cuts, p_arr, side="right")
    groups = [residual[decile == d] for d in range(len(cuts) + 1) if (decile == d).any()]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot(groups, showfliers=False)
    ax.axhline(0.0, linestyle="--", color="grey")
    ax.set(
        xlabel="predicted decile (low to high)", ylabel="residual (actual - predicted)",
        title="Residuals by predicted decile (holdout)",
    )  # fmt: skip
    save(fig, "residuals_by_decile.png")

    if importance:
        top = sorted(importance.items(), key=lambda kv: kv[1])[-25:]
        fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * len(top) + 1)))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(xlabel="gain", title="Feature importance (gain)")
        save(fig, "feature_importance.png")
    return paths


def write_task_plots(
    task: str,
    y: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    importance: Mapping[str, float] | None,
    out_dir: str | Path,
) -> list[str]:
    """The task's diagnostic plots: :func:`write_plots` (binary) or :func:`write_regression_plots`."""
    import numpy as np

    if task == "regression":
        return write_regression_plots(y, p, importance, out_dir)
    return write_plots(np.asarray(y), p, importance, out_dir)


# --- the candidate against the champion ------------------------------------------------------------

ROW_ID = "_holdout_row"  # lines up two models' scores on the same holdout rows (evaluation, reproduce)


def _compare_binary(
    cfg: PipelineConfig,
    y: np.ndarray,
    p_cand: np.ndarray,
    p_champ: np.ndarray | None,
    columns: Mapping[str, np.ndarray],
    *,
    candidate: ScoredModel,
    champion: ScoredModel | None,
) -> Comparison:
    """Per-slice AUCs; against a champion also the AUC delta and the bootstrap interval of the difference."""
    if p_champ is None or champion is None:
        return Comparison(slices=slice_aucs(y, p_cand, None, columns))
    ci = bootstrap_auc_diff(
        y, p_cand, p_champ,
        samples=cfg.gate.bootstrap_samples, confidence=cfg.gate.bootstrap_confidence, seed=cfg.model.seed,
    ) if cfg.gate.bootstrap_samples else None  # fmt: skip
    return Comparison(
        roc_auc_delta=candidate.metrics["roc_auc"] - champion.metrics["roc_auc"],
        auc_diff_ci=ci,
        slices=slice_aucs(y, p_cand, p_champ, columns),
    )


def _compare_regression(
    cfg: PipelineConfig,
    y: np.ndarray,
    p_cand: np.ndarray,
    p_champ: np.ndarray | None,
    columns: Mapping[str, np.ndarray],
    *,
    candidate: ScoredModel,
    champion: ScoredModel | None,
) -> Comparison:
    """Per-slice RMSEs; against a champion also the RMSE delta (absolute and relative), the bootstrap
    interval of the relative difference, overall and per judged slice (``gate.min_slice_rows``)."""
    gate = cfg.gate
    if p_champ is None or champion is None:
        return Comparison(metric="rmse", slices=slice_rmses(y, p_cand, None, columns))
    cand_rmse, champ_rmse = candidate.metrics["rmse"], champion.metrics["rmse"]
    ci = bootstrap_rmse_diff(
        y, p_cand, p_champ, samples=gate.bootstrap_samples, confidence=gate.bootstrap_confidence, seed=cfg.model.seed
    ) if gate.bootstrap_samples else None  # fmt: skip
    resampling = Resampling(gate.bootstrap_samples, gate.bootstrap_confidence, cfg.model.seed)
    slices = slice_rmses(y, p_cand, p_champ, columns, min_rows=gate.min_slice_rows, resampling=resampling)
    return Comparison(
        metric="rmse",
        rmse_delta=cand_rmse - champ_rmse,
        rmse_relative_delta=cand_rmse / champ_rmse - 1 if champ_rmse > 0 else None,
        rmse_diff_ci=ci,
        slices=slices,
    )


def holdout_with_arrived_labels(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, rows: DataFrame, train: TrainResult
) -> DataFrame:
    """The holdout rows labelled as training saw them: outcomes arrived by the training window's end.

    A training document without ``labels_known_by`` (trained before delayed labels) falls back
    to the last holdout partition.
    """
    import datetime as dt

    from flightdeck.data.labels import arrived_labels

    known_by = dt.date.fromisoformat(train.labels_known_by or train.holdout_partitions[-1])
    first = dt.date.fromisoformat(train.holdout_partitions[0])
    labelled, unlabelled = arrived_labels(spark, cfg, lake, rows, first, known_by)
    if sum(unlabelled.values()) and train.labels_known_by:
        log.info("holdout: %d rows without an outcome by %s left out", sum(unlabelled.values()), known_by)
    return labelled


def evaluate_candidate(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, train: TrainResult, champion: str | None
) -> Evaluation:
    """Score the candidate and the champion (resolved once by the caller) on the candidate's frozen holdout.

    Both models score the same rows, lined up by a row id; the result holds both models' metrics,
    the per-slice AUCs (``gate.slices``) and a paired bootstrap interval of the AUC difference;
    for ``model.task: regression`` the per-slice RMSEs with their intervals and the interval of
    the relative RMSE difference (:func:`_compare_regression`).

    Raises:
        ModelInputError: the champion was trained for another task than ``model.task``.
    """
    import numpy as np
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.inference import check_task, collect_keyed_scores
    from flightdeck.model.saved import load_scorer

    rows = read_partitions(spark, lake, "features", cfg.dataset.entity.name, train.holdout_partitions)
    if cfg.dataset.labels is not None:
        rows = holdout_with_arrived_labels(spark, cfg, lake, rows, train)
    holdout = rows.withColumn(ROW_ID, F.monotonically_increasing_id()).persist()
    n_rows = holdout.count()
    slices = [c for c in cfg.gate.slices if c in holdout.columns]
    missing = sorted(set(cfg.gate.slices) - set(slices))
    if missing:
        log.warning("gate slices %s are not columns of the features; not judged", missing)
    regression = cfg.model.task == "regression"
    candidate_model = load_scorer(train.model_name, train.version)
    check_task(candidate_model, cfg, f"the candidate {train.model_name} v{train.version}")
    cand = collect_keyed_scores(candidate_model, holdout, cfg, ROW_ID, slices)
    y = cand["y"].to_numpy(dtype=np.float64 if regression else np.int64)
    p_cand = cand["p"].to_numpy(dtype=np.float64)
    columns = {c: cand[c].to_numpy() for c in slices}
    candidate = ScoredModel(version=train.version, metrics=task_metrics(cfg.model.task, y, p_cand))
    champion_doc: ScoredModel | None = None
    p_champ: np.ndarray | None = None
    if champion is not None:
        if champion == train.version:
            log.info("candidate v%s is already the champion; comparing it with itself", train.version)
        champion_model = load_scorer(train.model_name, champion)
        check_task(champion_model, cfg, f"the champion {train.model_name} v{champion}")
        champ = collect_keyed_scores(champion_model, holdout, cfg, ROW_ID)
        if not np.array_equal(champ[ROW_ID].to_numpy(), cand[ROW_ID].to_numpy()):
            raise RuntimeError("candidate and champion were not scored on the same holdout rows")
        p_champ = champ["p"].to_numpy(dtype=np.float64)
        champion_doc = ScoredModel(version=champion, metrics=task_metrics(cfg.model.task, y, p_champ))
    compare = _compare_regression if regression else _compare_binary
    comparison = compare(cfg, y, p_cand, p_champ, columns, candidate=candidate, champion=champion_doc)
    holdout.unpersist()
    return Evaluation(
        model_name=train.model_name,
        candidate=candidate,
        champion=champion_doc,
        holdout_partitions=train.holdout_partitions,
        n_rows=n_rows,
        comparison=comparison,
    )


def evaluation_metrics(evaluation: Evaluation) -> dict[str, float]:
    """The metrics an evaluation adds to the candidate's training run: ``eval_*``, and ``champion_*`` when compared."""
    out = {f"eval_{k}": v for k, v in evaluation.candidate.metrics.items()}
    if evaluation.champion is not None:
        out.update({f"champion_{k}": v for k, v in evaluation.champion.metrics.items()})
        comparison = evaluation.comparison
        if comparison.roc_auc_delta is not None:
            out["champion_roc_auc_delta"] = comparison.roc_auc_delta
        if comparison.auc_diff_ci:
            out["champion_roc_auc_delta_ci_low"] = comparison.auc_diff_ci["low"]
            out["champion_roc_auc_delta_ci_high"] = comparison.auc_diff_ci["high"]
        if comparison.rmse_delta is not None:
            out["champion_rmse_delta"] = comparison.rmse_delta
        if comparison.rmse_relative_delta is not None:
            out["champion_rmse_relative_delta"] = comparison.rmse_relative_delta
        if comparison.rmse_diff_ci:
            out["champion_rmse_relative_delta_ci_low"] = comparison.rmse_diff_ci["low"]
            out["champion_rmse_relative_delta_ci_high"] = comparison.rmse_diff_ci["high"]
    return out
