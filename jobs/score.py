"""Score features partitions with one model version and write the predictions zone.

    spark-submit jobs/score.py --partition 2013-07-01 --config include/config/flights.yaml \
        --model-version 3 [--run-key K]

With ``--shadow-version V`` (``scoring.shadow: true``: the DAG passes the ``challenger``) the
same features are also scored by V into ``predictions/<entity>_shadow`` — written beside the
served predictions for comparison, never announced, never used downstream.

``--model-version`` is a version number (the DAG resolves ``champion`` once per run
and passes it) or ``champion`` (resolved once here). Every prediction row carries the
model name and version, the scoring run and the feature partition it came from.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import parser, partitions, run, setup

log = logging.getLogger("flightdeck.jobs.score")


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("score", __doc__ or "")
    p.add_argument("--model-version", required=True, help="model version number, or 'champion'")
    p.add_argument(
        "--shadow-version",
        default="",
        help="also score with this version into the predictions_shadow zone (never announced); '' for none",
    )
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()

    from flightdeck.data.sparkio import build_session
    from flightdeck.model.documents import ScoreResult
    from flightdeck.model.inference import ScoringModel, score_partitions
    from flightdeck.model.registry import resolve_version
    from flightdeck.model.saved import load_scorer

    name = cfg.model.name
    version = resolve_version(name, args.model_version)  # once: every row of this run gets this version
    log.info("scoring with %s v%s (asked for %s)", name, version, args.model_version)
    spark = build_session("flightdeck-score")
    # the version's files, downloaded once per machine, read without PipelineModel.load
    served = ScoringModel(version, load_scorer(name, version))
    shadow = None
    if args.shadow_version and (shadow_version := resolve_version(name, args.shadow_version)) != version:
        shadow = ScoringModel(shadow_version, load_scorer(name, shadow_version))
    written = score_partitions(spark, cfg, lake, dates, served, shadow=shadow, run_key=args.run_key)
    result = ScoreResult(
        model_name=name,
        model_version=version,
        partitions=written,
        shadow_version=shadow.version if shadow is not None else None,
        seconds=round(time.monotonic() - started, 1),  # the job's own time, its Spark session included
        cpu_seconds=round(time.process_time(), 1),  # this (driver) process; executors are not counted
    )
    return result.emit(lake, args.run_key)


if __name__ == "__main__":
    sys.exit(run(main, None))
