"""Evaluation: holdout metrics (scikit-learn on label + probability only), diagnostic plots, and the
candidate-against-champion comparison on the same holdout rows that the gate judges."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
    from pyspark.sql import SparkSession

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


# --- the candidate against the champion ------------------------------------------------------------

ROW_ID = "_holdout_row"  # lines up two models' scores on the same holdout rows (evaluation, reproduce)


def evaluate_candidate(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, train: TrainResult, champion: str | None
) -> Evaluation:
    """Score the candidate and the champion (resolved once by the caller) on the candidate's frozen holdout.

    Both models score the same rows, lined up by a row id; the result holds both models' metrics,
    the per-slice AUCs (``gate.slices``) and a paired bootstrap interval of the AUC difference.
    """
    import numpy as np
    from pyspark.sql import functions as F

    from flightdeck.core.tracking import load_model
    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.inference import collect_keyed_scores

    holdout = (
        read_partitions(spark, lake, "features", cfg.dataset.entity.name, train.holdout_partitions)
        .withColumn(ROW_ID, F.monotonically_increasing_id())
        .persist()
    )
    n_rows = holdout.count()
    slices = [c for c in cfg.gate.slices if c in holdout.columns]
    missing = sorted(set(cfg.gate.slices) - set(slices))
    if missing:
        log.warning("gate slices %s are not columns of the features; not judged", missing)
    cand = collect_keyed_scores(load_model(train.model_name, train.version), holdout, cfg, ROW_ID, slices)
    y = cand["y"].to_numpy(dtype=np.int64)
    p_cand = cand["p"].to_numpy(dtype=np.float64)
    columns = {c: cand[c].to_numpy() for c in slices}
    candidate = ScoredModel(version=train.version, metrics=metrics(y, p_cand))
    champion_doc: ScoredModel | None = None
    if champion is None:
        comparison = Comparison(slices=slice_aucs(y, p_cand, None, columns))
    else:
        if champion == train.version:
            log.info("candidate v%s is already the champion; comparing it with itself", train.version)
        champ = collect_keyed_scores(load_model(train.model_name, champion), holdout, cfg, ROW_ID)
        if not np.array_equal(champ[ROW_ID].to_numpy(), cand[ROW_ID].to_numpy()):
            raise RuntimeError("candidate and champion were not scored on the same holdout rows")
        p_champ = champ["p"].to_numpy(dtype=np.float64)
        champion_doc = ScoredModel(version=champion, metrics=metrics(y, p_champ))
        ci = bootstrap_auc_diff(
            y, p_cand, p_champ,
            samples=cfg.gate.bootstrap_samples, confidence=cfg.gate.bootstrap_confidence, seed=cfg.model.seed,
        ) if cfg.gate.bootstrap_samples else None  # fmt: skip
        comparison = Comparison(
            roc_auc_delta=candidate.metrics["roc_auc"] - champion_doc.metrics["roc_auc"],
            auc_diff_ci=ci,
            slices=slice_aucs(y, p_cand, p_champ, columns),
        )
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
    return out
