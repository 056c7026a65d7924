"""A saved pipeline read from its files scores exactly as the fitted pipeline's own transform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import fit_small_pipeline

from flightdeck.model.inference import scorer, with_probability, with_value
from flightdeck.model.saved import SavedModelError, read_saved

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_saved_pipeline_scores_as_the_fitted_one(spark: Any, tmp_path: Path, task: str) -> None:
    model, rows = fit_small_pipeline(spark, task)
    model.write().save(str(tmp_path / "sparkml"))

    saved = read_saved(tmp_path / "sparkml")
    fitted = scorer(model)

    assert fitted is not None and saved.task == fitted.task == task
    assert saved.indexers == fitted.indexers and saved.inputs == fitted.inputs == ("x", "cat__idx", "cat2__idx")
    assert sorted(saved.indexers[0].labels) == ["c0", "c1", "c2"]  # the null is no label
    transformed = model.transform(rows)
    if task == "binary":
        from pyspark.ml.functions import vector_to_array

        want = transformed.select("rid", vector_to_array("probability").getItem(1).alias("p"))
        got = with_probability(saved, rows, "p")
    else:
        want = transformed.select("rid", transformed["prediction"].cast("double").alias("p"))
        got = with_value(saved, rows, "p")
    expected = want.toPandas().sort_values("rid")["p"].to_numpy()
    if task == "binary":
        _read_without_a_spark_context(tmp_path / "sparkml", saved.booster.save_raw("json"))
    actual = got.select("rid", "p").toPandas().sort_values("rid")["p"].to_numpy()
    assert np.allclose(actual, expected, rtol=0, atol=1e-12)
    # the unknown category and the null get the index after the last label, as handleInvalid=keep does
    indexed = {r["rid"]: r["cat__idx"] for r in saved.indexed(rows).collect()}
    assert indexed[2] == indexed[3] == 3.0 and indexed[1] == float(saved.indexers[0].labels.index("c1"))


def test_a_pipeline_flightdeck_does_not_train_is_refused_with_the_stage_named(spark: Any, tmp_path: Path) -> None:
    model, _ = fit_small_pipeline(spark, "binary")
    model.write().save(str(tmp_path / "sparkml"))
    indexer = next((tmp_path / "sparkml" / "stages").glob("0_StringIndexer_*"))
    meta_file = next((indexer / "metadata").glob("part-*"))
    meta = json.loads(meta_file.read_text())
    meta["paramMap"]["handleInvalid"] = "error"
    meta_file.write_text(json.dumps(meta) + "\n")

    with pytest.raises(SavedModelError, match=r"0_StringIndexer_.*handleInvalid=error"):
        read_saved(tmp_path / "sparkml")
    with pytest.raises(SavedModelError, match="no metadata"):
        read_saved(tmp_path / "nothing-here")


def _read_without_a_spark_context(path: Path, booster_json: bytearray) -> None:
    """A scoring job on Spark Connect has no SparkContext: reading the files must not need one."""
    code = (
        "import sys\n"
        "from flightdeck.model.saved import read_saved\n"
        "sys.stdout.buffer.write(read_saved(sys.argv[1]).booster.save_raw('json'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == bytes(booster_json)
