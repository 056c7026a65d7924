"""Explanations of a model version, logged with its evaluation: a global SHAP summary and the per-slice table.

At evaluation time every candidate version gets, on its training run in MLflow (under
``evaluation/``):

* ``shap_summary.png``: a beeswarm-like plot of XGBoost's own SHAP values (``pred_contribs``) on
  a sample of the holdout (one row of dots per feature, the features with the largest mean
  |contribution| on top, coloured by the feature's value), beside the mean |contribution| bars;
* ``shap_importance.json``: the mean |contribution| per feature (margin units) and the rows used;
* ``slices.csv`` and ``slices.png``: the gate's slices (``gate.slices``): per slice value the rows
  and the candidate's and champion's metric (AUC, or RMSE for a regression model).

The per-prediction explanations of scoring are :func:`flightdeck.model.inference.with_explained_score`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.core import tracking
from flightdeck.core.config import PipelineConfig
from flightdeck.core.lake import Lake

if TYPE_CHECKING:
    import numpy as np
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from flightdeck.core.tracking import Client
    from flightdeck.model.documents import Comparison, Evaluation, TrainResult
    from flightdeck.model.saved import Scorer

log = logging.getLogger(__name__)

ARTIFACT_DIR = "evaluation"
SHAP_SUMMARY = "shap_summary.png"
SHAP_IMPORTANCE = "shap_importance.json"
SLICES_CSV = "slices.csv"
SLICES_PNG = "slices.png"
SAMPLE_ROWS = 1000
TOP_FEATURES = 20


def holdout_contributions(
    model: PipelineModel | Scorer, rows: DataFrame, cfg: PipelineConfig, *, max_rows: int = SAMPLE_ROWS
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """SHAP values of up to ``max_rows`` rows: (feature names, contributions with the base value as the
    last column, the model's input values), the rows' inputs collected to the driver."""
    import numpy as np
    from pyspark.sql import functions as F

    from flightdeck.model.inference import ModelInputError, feature_names, model_input_frame, scorer
    from flightdeck.model.predict import contributions, tree_range

    parts = scorer(model)
    if parts is None:
        raise ModelInputError("SHAP values need a pipeline trained by flightdeck (indexers, assembler, XGBoost)")
    frame = model_input_frame(rows, cfg, require_label=False).limit(max_rows)
    pdf: Any = parts.indexed(frame).select(*[F.col(c).cast("double").alias(c) for c in parts.inputs]).toPandas()
    x = pdf.to_numpy(dtype=np.float64)
    booster = parts.booster
    iteration_range = tree_range(booster)
    return feature_names(model), np.asarray(contributions(booster, x, iteration_range)), x


def mean_abs(names: list[str], contribs: np.ndarray) -> dict[str, float]:
    """Mean |SHAP contribution| per feature (margin units), largest first."""
    import numpy as np

    means = np.abs(contribs[:, :-1]).mean(axis=0) if len(contribs) else np.zeros(len(names))
    return dict(sorted(((n, float(m)) for n, m in zip(names, means, strict=True)), key=lambda kv: -kv[1]))


def write_shap_summary(names: list[str], contribs: np.ndarray, x: np.ndarray, out_dir: Path) -> Path:
    """The beeswarm-like SHAP summary with the mean |contribution| bars, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    importance = mean_abs(names, contribs)
    top = list(importance)[:TOP_FEATURES][::-1]  # largest at the top of the plot
    rng = np.random.default_rng(0)
    fig, (swarm, bars) = plt.subplots(
        1, 2, figsize=(11, 0.35 * len(top) + 1.6), gridspec_kw={"width_ratios": [3, 1]}, sharey=True
    )
    for row, feature in enumerate(top):
        j = names.index(feature)
        values = x[:, j]
        finite = np.isfinite(values)
        colour = np.full(len(values), 0.5)
        if finite.sum() > 1:  # colour by the value's rank: comparable across features, NaN grey
            ranks = values[finite].argsort().argsort()
            colour[finite] = ranks / max(len(ranks) - 1, 1)
        jitter = rng.uniform(-0.3, 0.3, len(values))
        swarm.scatter(contribs[:, j], row + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6, linewidths=0)
    swarm.axvline(0, color="grey", linewidth=0.8)
    swarm.set(yticks=range(len(top)), yticklabels=top, xlabel="SHAP value (margin)", title="SHAP summary")
    bars.barh(range(len(top)), [importance[f] for f in top], color="#1f77b4")
    bars.set(xlabel="mean |SHAP|", title=f"{len(contribs)} holdout rows")
    fig.tight_layout()
    target = out_dir / SHAP_SUMMARY
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def slice_rows(slices: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str) -> list[dict[str, Any]]:
    """The gate's per-slice comparison as table rows: slice, value, rows, candidate and champion metric."""
    rows = []
    for name, by_value in slices.items():
        for value, entry in by_value.items():
            rows.append(
                {
                    "slice": name,
                    "value": value,
                    "rows": entry.get("n"),
                    "metric": metric,
                    "candidate": entry.get("candidate"),
                    "champion": entry.get("champion"),
                    "low": entry.get("low"),
                    "high": entry.get("high"),
                }
            )
    return rows


def slices_csv(rows: list[dict[str, Any]]) -> str:
    """The per-slice table as CSV text (empty cells for missing values)."""
    out = io.StringIO()
    fields = ["slice", "value", "rows", "metric", "candidate", "champion", "low", "high"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
    return out.getvalue()


def write_slices_plot(rows: list[dict[str, Any]], out_dir: Path, max_values: int = 30) -> Path | None:
    """Candidate (and champion) metric per slice value, the biggest slices first; None without slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted((r for r in rows if r["candidate"] is not None), key=lambda r: -int(r["rows"] or 0))[:max_values]
    if not shown:
        return None
    shown = shown[::-1]
    labels = [f"{r['slice']}={r['value']} (n={r['rows']})" for r in shown]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.5))
    ax.scatter([r["candidate"] for r in shown], range(len(shown)), label="candidate", color="#1f77b4")
    champ = [(i, r["champion"]) for i, r in enumerate(shown) if r["champion"] is not None]
    if champ:
        ax.scatter([v for _, v in champ], [i for i, _ in champ], label="champion", color="#d62728", marker="x")
    ax.set(yticks=range(len(shown)), yticklabels=labels, xlabel=shown[0]["metric"], title="Per-slice performance")
    ax.legend(loc="lower right")
    fig.tight_layout()
    target = out_dir / SLICES_PNG
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def log_explanations(
    model: PipelineModel | Scorer,
    holdout: DataFrame,
    cfg: PipelineConfig,
    comparison: Comparison,
    *,
    run_id: str,
    client: Client | None = None,
) -> list[str]:
    """Log a model's SHAP summary (on up to :data:`SAMPLE_ROWS` ``holdout`` rows) and the per-slice table of
    its evaluation (``comparison``) on the run ``run_id`` under ``evaluation/``; the artifact paths logged."""
    names, contribs, x = holdout_contributions(model, holdout, cfg)
    metric = comparison.metric or ("rmse" if cfg.model.task == "regression" else "roc_auc")
    rows = slice_rows(comparison.slices, metric)
    written: list[str] = []

    def write(folder: Path) -> None:
        written.append(write_shap_summary(names, contribs, x, folder).name)
        importance = {"rows": len(contribs), "mean_abs_shap": mean_abs(names, contribs)}
        (folder / SHAP_IMPORTANCE).write_text(json.dumps(importance, indent=2))
        (folder / SLICES_CSV).write_text(slices_csv(rows))
        written.extend([SHAP_IMPORTANCE, SLICES_CSV])
        plot = write_slices_plot(rows, folder)
        if plot is not None:
            written.append(plot.name)

    tracking.log_run_files(run_id, write, ARTIFACT_DIR, c=client)
    log.info("run %s: logged %s under %s/", run_id, written, ARTIFACT_DIR)
    return [f"{ARTIFACT_DIR}/{name}" for name in written]


def log_version_explanations(
    spark: SparkSession,
    cfg: PipelineConfig,
    lake: Lake,
    train: TrainResult,
    evaluation: Evaluation,
    *,
    client: Client | None = None,
) -> list[str]:
    """:func:`log_explanations` of an evaluated candidate: its registered model on its frozen holdout,
    logged on its training run."""
    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.saved import load_scorer

    model = load_scorer(train.model_name, train.version)
    holdout = read_partitions(spark, lake, "features", cfg.dataset.entity.name, train.holdout_partitions)
    return log_explanations(model, holdout, cfg, evaluation.comparison, run_id=train.run_id, client=client)
