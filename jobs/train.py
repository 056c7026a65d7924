"""Train a candidate model on the features in a date window and register it as ``challenger``.

    spark-submit jobs/train.py --train-start 2013-01-01 --train-end 2013-03-31 \
        --config include/config/flights.yaml --run-key K [--reason "drift: ..."]

The window's committed features partitions are split by time (train, validation, frozen
holdout); XGBoost runs on Spark with a bounded search. One MLflow run holds the trials, the
holdout metrics, the data as dataset inputs, the registered model, plots, the reference
profile and ``manifest.json``, from which ``jobs/reproduce.py`` rebuilds the model. The steps
are :func:`flightdeck.model.train_run.train_candidate`; the result is ``runs/<K>/train.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.core.columns import SCORE_COLUMNS
from flightdeck.core.jobargs import parser, run, setup
from flightdeck.core.lake import parse_date


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("train", __doc__ or "", partition=False)
    p.add_argument("--train-start", required=True, help="first date of the training window (YYYY-MM-DD)")
    p.add_argument("--train-end", required=True, help="last date of the training window (YYYY-MM-DD)")
    p.add_argument("--reason", default="manual", help="why this model is trained (recorded with the model)")
    p.add_argument("--actor", default=None, help="who asked for the model (recorded in the alias ledger)")
    args = p.parse_args(argv)
    cfg, lake = setup(args)

    from flightdeck.data.sparkio import build_session
    from flightdeck.model.train_run import TrainRequest, train_candidate
    from flightdeck.monitoring.profile import prediction_profile, reference_profile

    request = TrainRequest(
        start=parse_date(args.train_start),
        end=parse_date(args.train_end),
        reason=args.reason,
        actor=args.actor,
        run_key=args.run_key,
    )

    def profile(train_df: Any, scores: Any) -> dict[str, Any]:
        """The drift reference: the training features and the holdout scores (probability or predicted value)."""
        column = SCORE_COLUMNS[cfg.model.task]
        return {**reference_profile(train_df, cfg), "prediction": prediction_profile(scores, cfg.drift.bins, column)}

    started = time.monotonic()
    spark = build_session("flightdeck-train", {"spark.task.cpus": str(cfg.model.threads_per_worker)})
    result = train_candidate(spark, cfg, lake, request, profile)
    result.seconds = round(time.monotonic() - started, 1)  # the job's own time, its Spark session included
    result.cpu_seconds = round(time.process_time(), 1)  # this (driver) process; executors are not counted
    return result.emit(lake, args.run_key)


if __name__ == "__main__":
    sys.exit(run(main, None))
