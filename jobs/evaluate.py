"""Evaluate the candidate of a training run and the current champion on the same holdout.

    spark-submit jobs/evaluate.py --run-key K --config include/config/flights.yaml

Reads ``runs/<K>/train.json`` (written by ``jobs/train.py``), resolves ``champion``
once, scores both models on the candidate's holdout partitions (the same rows, lined up
by a row id) and writes ``runs/<K>/evaluate.json``: both models' metrics, per-slice AUCs
(``gate.slices``) and a paired bootstrap interval of the AUC difference (``model.task:
regression``: per-slice RMSEs and intervals of the relative RMSE difference). The comparison
is also logged on the candidate's MLflow run (``champion_*`` metrics,
``evaluation/comparison.json``), with the candidate's SHAP summary and per-slice table
(``evaluation/shap_summary.png``, ``evaluation/slices.csv``). The gate
(``flightdeck.model.gate.decide``) runs on this result.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.core.errors import FlightdeckError
from flightdeck.core.jobargs import parser, run, setup


class MissingRunKey(FlightdeckError):
    """The job was started without the run key that names its training run."""


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("evaluate", __doc__ or "", partition=False)
    args = p.parse_args(argv)
    if not args.run_key:
        raise MissingRunKey("--run-key is required: evaluate reads runs/<run key>/train.json")
    cfg, lake = setup(args)

    from flightdeck.core import tracking
    from flightdeck.data.sparkio import build_session
    from flightdeck.model import registry
    from flightdeck.model.documents import TrainResult
    from flightdeck.model.evaluation import evaluate_candidate, evaluation_metrics
    from flightdeck.model.explain import log_version_explanations

    train = TrainResult.read(lake, args.run_key)
    client = tracking.client()
    champion = registry.champion_version(train.model_name, client=client)  # resolved once for this run
    spark = build_session("flightdeck-evaluate")
    evaluation = evaluate_candidate(spark, cfg, lake, train, champion)

    comparison = evaluation.comparison.model_dump(exclude_unset=True)
    tracking.log_evaluation(train.run_id, evaluation_metrics(evaluation), comparison, c=client)
    tracking.set_run_tag(train.run_id, "compared_against_champion", champion or "none", c=client)
    tracking.tag_version(train.model_name, train.version, {"compared_against_champion": champion or "none"}, c=client)
    log_version_explanations(spark, cfg, lake, train, evaluation, client=client)  # SHAP summary, slices table
    return evaluation.emit(lake, args.run_key)


if __name__ == "__main__":
    sys.exit(run(main, None))
