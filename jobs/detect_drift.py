"""Measure drift of one scored partition against a model's training profile and holdout.

    spark-submit jobs/detect_drift.py --partition 2013-07-01 --config include/config/flights.yaml \
        --model-version 3 [--run-key K]

Pass 1 bins day D's features and the version's scores against the reference profile of its
training run (PSI per feature and of the score); pass 2, once labels arrive, compares day
D-1's predictions with their outcomes (AUC, log loss vs the holdout). The steps live in
:mod:`flightdeck.monitoring.drift_run`.

Writes ``monitoring/drift_daily/date=D`` (one row per statistic), ``monitoring/drift_reports/D.json``
(the report, which the retrain policy reads as history) and ``D.html`` (charts), logs them to the
``<model>-monitoring`` MLflow experiment, and hands on ``runs/<key>/detect_drift.json``. The
retrain decision is not taken here: the monitoring DAG calls
``flightdeck.monitoring.retrain.decide_retrain``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import parser, partitions, run, setup


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("detect_drift", __doc__ or "")
    p.add_argument("--model-version", required=True, help="model version (or alias) whose training is the reference")
    args = p.parse_args(argv)
    cfg, lake = setup(args)

    from flightdeck.data.sparkio import build_session
    from flightdeck.model.registry import resolve_version
    from flightdeck.monitoring import drift_run
    from flightdeck.monitoring.drift_html import render_report

    day = drift_run.one_partition(partitions(args))
    version = resolve_version(cfg.model.name, args.model_version)
    reference = drift_run.load_reference(cfg.model.name, version)

    spark = build_session("flightdeck-detect-drift")
    report, current = drift_run.measure_drift(spark, lake, cfg, day, reference)
    report["performance"] = drift_run.measure_performance(spark, lake, cfg, day, reference)

    page = render_report(report, reference.profile, current)
    html_path = drift_run.write_outputs(spark, lake, cfg, report, page)
    mlflow_run_id = drift_run.log_run(reference, report, page, args.run_key)

    summary = drift_run.summarize(report, reference, html_path, mlflow_run_id)
    return summary.emit(lake, args.run_key)


if __name__ == "__main__":
    sys.exit(run(main, None))
