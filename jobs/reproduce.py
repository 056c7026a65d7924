"""Rebuild a registered model version from its manifest and check its holdout predictions are identical.

    spark-submit jobs/reproduce.py --model-version 3 --config include/config/flights.yaml --run-key K

Reads ``manifest.json`` of the version's training run (written by ``jobs/train.py``):
the configuration the model was trained with, its training, validation and holdout
partitions with their data fingerprints, the chosen parameters and seeds. Checks the
features partitions still hold the same data (fingerprints), retrains with the same
parameters, and scores the holdout with both the registered model and the rebuilt one.
The version gets tags ``reproduced`` (true/false) and ``reproduce_max_abs_diff``; the job
fails when the data changed or the predictions differ.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flightdeck.core.jobargs import parser, run, setup


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("reproduce", __doc__ or "", partition=False)
    p.add_argument("--model-version", required=True, help="registered model version to rebuild (e.g. 3)")
    args = p.parse_args(argv)
    cfg, lake = setup(args)

    from flightdeck.core import tracking
    from flightdeck.data.sparkio import build_session
    from flightdeck.model.documents import Manifest, ReproduceResult
    from flightdeck.model.reproduce import check_identical, check_rebuildable, reproduce

    name = cfg.model.name
    version = str(args.model_version).strip().removeprefix("v")
    client = tracking.client()
    run_id, manifest = tracking.load_manifest(name, version, Manifest, artifact=Manifest.ARTIFACT, c=client)
    check_rebuildable(manifest, name, version)
    spark = build_session("flightdeck-reproduce", {"spark.task.cpus": str(manifest.threads_per_worker)})
    outcome = reproduce(spark, cfg, lake, manifest, tracking.load_model(name, version))
    tags = {"reproduced": str(outcome["identical"]).lower(), "reproduce_max_abs_diff": repr(outcome["max_abs_diff"])}
    tracking.tag_version(name, version, tags, c=client)
    result = ReproduceResult(model_name=name, version=version, run_id=run_id, **outcome).emit(lake, args.run_key)
    check_identical(outcome, name, version, manifest)
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
