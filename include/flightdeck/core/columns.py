"""The platform's own column names, defined once.

Every zone adds columns of its own to the user's: the partition date of bronze and
features, the quarantine's raw line and reasons, the event time of features, the model
and version of predictions. A user column may not be named like one of them (the config
refuses it at load, naming the column and the fix: keep the file's header and give the
column another name in the lake with ``{name: <new>, source: <header>}``). Names starting
with ``__`` are reserved for columns the platform uses inside one computation.
"""

from __future__ import annotations

PARTITION = "date"
SOURCE_FILE = "source_file"
RAW_LINE = "raw_line"
REASON = "reason"
REASONS = "reasons"
EVENT_TS = "event_ts"
FEATURE_VECTOR = "features"
PROBABILITY = "probability"
PREDICTION = "prediction"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SCORING_RUN = "scoring_run"
FEATURE_PARTITION = "feature_partition"
# Per-prediction explanations (scoring.explain): the top-k features by |SHAP contribution|, their
# contributions (margin units) and the base value (the margin = base + every feature's contribution).
EXPLAIN_FEATURES = "explain_features"
EXPLAIN_CONTRIBUTIONS = "explain_contributions"
EXPLAIN_BASE = "explain_base"
INTERNAL_PREFIX = "__"
# The column a model's score is in, by model.task: the positive-class probability of a
# binary classifier (its ``prediction`` is the 0/1 class), the predicted value of a
# regressor (a regressor's predictions have no ``probability`` column).
SCORE_COLUMNS: dict[str, str] = {"binary": PROBABILITY, "regression": PREDICTION}

PLATFORM_COLUMNS: dict[str, str] = {
    PARTITION: "the partition date of every zone",
    SOURCE_FILE: "the landing file a quarantined row came from",
    RAW_LINE: "a quarantined row's raw line",
    REASON: "a quarantined row's first reason",
    REASONS: "a quarantined row's reasons",
    EVENT_TS: "the event time of a feature row",
    FEATURE_VECTOR: "the model's assembled input vector",
    PROBABILITY: "a prediction's probability",
    PREDICTION: "a prediction (the class of a binary model, the value of a regression model)",
    MODEL_NAME: "the model that made a prediction",
    MODEL_VERSION: "the model version that made a prediction",
    SCORING_RUN: "the scoring run of a prediction",
    FEATURE_PARTITION: "the feature partition a prediction was made from",
    EXPLAIN_FEATURES: "a prediction's top features by SHAP contribution",
    EXPLAIN_CONTRIBUTIONS: "a prediction's top SHAP contributions",
    EXPLAIN_BASE: "a prediction's SHAP base value",
}


def platform_column_clash(name: str) -> str | None:
    """What the platform uses ``name`` for, when a user column may not be called so; else None."""
    if name in PLATFORM_COLUMNS:
        return f"the platform's column {name!r} ({PLATFORM_COLUMNS[name]})"
    if name.startswith(INTERNAL_PREFIX):
        return f"names starting with {INTERNAL_PREFIX!r} (reserved for the platform's working columns)"
    return None
