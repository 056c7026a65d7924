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
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import emit_result, parser, partitions, run, setup

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

    import mlflow

    from flightdeck.data.sparkio import build_session, read_partitions, write_partition
    from flightdeck.model.inference import score, shadow_table
    from flightdeck.model.registry import resolve_version

    name = cfg.model.name
    version = resolve_version(name, args.model_version)
    spark = build_session("flightdeck-score")
    model = mlflow.spark.load_model(f"models:/{name}/{version}")
    entity = cfg.dataset.entity.name
    shadow = resolve_version(name, args.shadow_version) if args.shadow_version else None
    shadow_model = mlflow.spark.load_model(f"models:/{name}/{shadow}") if shadow and shadow != version else None
    written: dict[str, int] = {}
    for day in dates:
        features = read_partitions(spark, lake, "features", entity, [day])
        if shadow_model is not None:
            features = features.cache()
        rows = features.count()
        predictions = score(model, features, model_name=name, model_version=version, run_key=args.run_key, cfg=cfg)
        write_partition(predictions, lake, "predictions", entity, day)
        written[day.isoformat()] = rows
        log.info("scored %s: %d rows with %s v%s", day, rows, name, version)
        if shadow_model is not None:
            shadowed = score(
                shadow_model, features, model_name=name, model_version=str(shadow), run_key=args.run_key, cfg=cfg
            )
            write_partition(shadowed, lake, "predictions", shadow_table(entity), day)
            log.info("shadow-scored %s with %s v%s into predictions/%s", day, name, shadow, shadow_table(entity))
            features.unpersist()

    result = {
        "model_name": name,
        "model_version": version,
        "partitions": written,
        "shadow_version": str(shadow) if shadow_model is not None else None,
    }
    emit_result(result, lake, args.run_key, "score")
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
