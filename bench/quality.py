"""Model quality on the real data: a time-based holdout (Oct-Dec 2013, trained on Jan-Sep).

    .venv/bin/python bench/quality.py [--lake DIR] [--skip-build] [--out bench/quality.json]

Builds the features zone for 2013 with the platform's own jobs (landing -> ingest ->
features, one local Spark application), then compares on the same holdout rows:

* logistic regression on the raw flight, weather and plane columns (imputed, scaled, one-hot);
* native XGBoost on the raw columns;
* native XGBoost on every engineered feature (adds the rolling late rates and congestion counts);
* the platform's champion recipe: the Spark pipeline (xgboost.spark) with the bounded search
  and early stopping on the last ``model.validation_days`` of September.

Prints a markdown table (the one in README.md) and writes the numbers as JSON. A benchmark,
not a test: it takes several minutes of CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from flightdeck.core.jobargs import load_job

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
HOLDOUT_START = dt.date(2013, 10, 1)
log = logging.getLogger("flightdeck.bench.quality")


def build(cfg: Any, lake: Any) -> None:
    """Land, ingest and build features for the whole year (skips days already built)."""
    from flightdeck.data import landing

    if len(lake.committed_partitions("features", cfg.dataset.entity.name)) >= 360:
        log.info("features already built in %s", lake.root)
        return
    spec = f"{FIRST.isoformat()}..{LAST.isoformat()}"
    t0 = time.monotonic()
    landing.land_reference(cfg, lake)
    landing.land_range(cfg, lake, FIRST, LAST)
    log.info("landed in %.0fs", time.monotonic() - t0)
    load_job("ingest").main(["--partition", spec])
    log.info("ingested in %.0fs", time.monotonic() - t0)
    load_job("build_features").main(["--partition", spec])
    log.info("features built in %.0fs", time.monotonic() - t0)


def raw_columns(cfg: Any) -> tuple[list[str], list[str]]:
    """Numeric and categorical model inputs that come straight from flight, weather and plane rows."""
    engineered = {c for r in cfg.features.rolling for c in r.outputs} | {c.name for c in cfg.features.counts}
    return [c for c in cfg.features.numeric if c not in engineered], list(cfg.features.categorical)


def logistic_baseline(
    train: Any, hold: Any, numeric: list[str], categorical: list[str], label: str
) -> dict[str, float]:
    """Holdout metrics of a scaled, one-hot logistic regression on the raw columns (the simple baseline)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from flightdeck.model.evaluation import metrics

    logreg = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=50), categorical),
            ]
        ),
        LogisticRegression(max_iter=2000),
    )
    logreg.fit(train[numeric + categorical], train[label].to_numpy())
    return metrics(hold[label].to_numpy(), logreg.predict_proba(hold[numeric + categorical])[:, 1])


def native_xgboost(cfg: Any, train: Any, hold: Any, columns: list[str], label: str) -> dict[str, float]:
    """Holdout metrics of native XGBoost (the config's parameters, 2 threads) on ``columns``."""
    import numpy as np
    import xgboost as xgb

    from flightdeck.model.evaluation import metrics

    params = dict(cfg.model.params)
    native = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": params.get("max_depth", 6),
        "eta": params.get("learning_rate", 0.1),
        "subsample": params.get("subsample", 1.0),
        "colsample_bytree": params.get("colsample_bytree", 1.0),
        "min_child_weight": params.get("min_child_weight", 1),
        "seed": cfg.model.seed,
        "nthread": 2,
    }
    categorical = [c for c in columns if c in cfg.features.categorical]
    x_train, x_hold = train[columns].copy(), hold[columns].copy()
    for c in categorical:  # the same category codes in both
        x_train[c] = x_train[c].astype("category")
        x_hold[c] = x_hold[c].astype("category").cat.set_categories(x_train[c].cat.categories)
    booster = xgb.train(
        native,
        xgb.DMatrix(x_train, label=train[label].to_numpy(), enable_categorical=True, missing=np.nan),
        num_boost_round=int(params.get("n_estimators", 200)),
    )
    return metrics(
        hold[label].to_numpy(), booster.predict(xgb.DMatrix(x_hold, enable_categorical=True, missing=np.nan))
    )


def print_table(report: dict[str, Any]) -> None:
    """The holdout and one Markdown row per model."""
    print(
        f"\nholdout {report['holdout']} ({report['holdout_rows']:,} flights, "
        f"{report['holdout_positive_rate']:.1%} late); "
        f"trained on {report['train']} ({report['train_rows']:,} flights)\n"
    )
    print("| model | ROC AUC | PR AUC | log loss | Brier | calibration error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for title, m in report["results"].items():
        print(
            f"| {title} | {m['roc_auc']:.3f} | {m['pr_auc']:.3f} | {m['log_loss']:.3f} | {m['brier']:.3f} "
            f"| {m['calibration_error']:.3f} |"
        )


def champion_recipe(
    cfg: Any, df: Any, train_keys: list[str], holdout_keys: list[str]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Holdout metrics of flightdeck's own training (xgboost.spark, the search, early stopping), and its trials."""
    from pyspark.sql import functions as F

    from flightdeck.model.evaluation import metrics
    from flightdeck.model.inference import collect_scores
    from flightdeck.model.training import fit_search, search_trials, split_validation

    _, validation = split_validation([dt.date.fromisoformat(k) for k in train_keys], cfg.model.validation_days)
    train_df = df.filter(F.col("date").isin(train_keys)).persist()
    model, trials = fit_search(train_df, cfg, trials=search_trials(cfg), validation_dates=validation)
    y, p = collect_scores(model, df.filter(F.col("date").isin(holdout_keys)), cfg)
    train_df.unpersist()
    return metrics(y, p), trials


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default=str(ROOT / ".flightdeck" / "bench-lake"), help="lake folder for the 2013 build")
    ap.add_argument("--skip-build", action="store_true", help="features are already in --lake")
    ap.add_argument("--out", default=str(ROOT / "bench" / "quality.json"), help="where to write the numbers")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ["FLIGHTDECK__LAKE__ROOT"] = args.lake
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers need this venv (pandas, xgboost)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.data.sparkio import build_session, read_available_partitions

    cfg = load_config()
    lake = Lake(cfg.lake.root)
    spark = build_session("flightdeck-bench-quality", {"spark.master": "local[2]", "spark.driver.memory": "3g"})
    if not args.skip_build:
        build(cfg, lake)
    df, dates = read_available_partitions(spark, lake, "features", cfg.dataset.entity.name, FIRST, LAST)
    assert df is not None, f"no features in {lake.root}"
    train_keys = [d.isoformat() for d in dates if d < HOLDOUT_START]
    holdout_keys = [d.isoformat() for d in dates if d >= HOLDOUT_START]
    label = cfg.label.name
    numeric, categorical = raw_columns(cfg)
    cols = [*cfg.features.numeric, *cfg.features.categorical, label, "date"]
    pdf: Any = df.select(*cols).toPandas()
    train, hold = pdf[pdf["date"].isin(train_keys)], pdf[pdf["date"].isin(holdout_keys)]
    y_hold = hold[label].to_numpy()
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}

    t0 = time.monotonic()
    results["logistic regression, raw columns"] = logistic_baseline(train, hold, numeric, categorical, label)
    seconds["logistic regression, raw columns"] = time.monotonic() - t0

    for title, num in (
        ("XGBoost (native), raw columns", numeric),
        ("XGBoost (native), engineered features", list(cfg.features.numeric)),
    ):
        t0 = time.monotonic()
        results[title] = native_xgboost(cfg, train, hold, num + categorical, label)
        seconds[title] = time.monotonic() - t0

    t0 = time.monotonic()
    champion_title = "flightdeck champion recipe (xgboost.spark, search + early stopping), engineered features"
    results[champion_title], trials = champion_recipe(cfg, df, train_keys, holdout_keys)
    seconds[champion_title] = time.monotonic() - t0

    chosen = next(t for t in trials if t["chosen"])
    report = {
        "train": f"{train_keys[0]}..{train_keys[-1]}",
        "holdout": f"{holdout_keys[0]}..{holdout_keys[-1]}",
        "train_rows": len(train),
        "holdout_rows": len(hold),
        "holdout_positive_rate": float(y_hold.mean()),
        "raw_numeric": numeric,
        "engineered_numeric": [c for c in cfg.features.numeric if c not in numeric],
        "results": results,
        "seconds": seconds,
        "champion_trials": [
            {k: t.get(k) for k in ("params", "best_iteration", "validation", "chosen")} for t in trials
        ],
        "champion_chosen_params": chosen["params"],
    }
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
