"""The scoring form of a flightdeck pipeline: category indexes, feature order and booster.

Every pipeline flightdeck trains is StringIndexers (``handleInvalid="keep"``) -> VectorAssembler
-> an xgboost.spark model. Scoring needs only three things from it, held by :class:`Scorer`:
each categorical column's labels (an unknown or null value gets the index after the last
label, as ``keep`` does), the assembler's input columns (the booster's feature order) and
the booster. The indexes are a map lookup in Spark SQL and the booster runs in a pandas UDF,
so a :class:`Scorer` works on a classic and on a Spark Connect session alike.

:func:`from_model` takes it from a fitted ``PipelineModel`` in memory (training, evaluation);
:func:`read_saved` reads it from the files ``PipelineModel.save`` wrote (the model artifact
MLflow stores), with no JVM and no ``PipelineModel.load``; :func:`load_scorer` does that for a
registered version, downloaded once per machine: what scoring and evaluation do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.core.config import ModelTask
from flightdeck.core.errors import FlightdeckError

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import Column, DataFrame

INDEXER_CLASS = "org.apache.spark.ml.feature.StringIndexerModel"
ASSEMBLER_CLASS = "org.apache.spark.ml.feature.VectorAssembler"
BOOSTER_CLASSES: dict[str, ModelTask] = {
    "xgboost.spark.estimator.SparkXGBClassifierModel": "binary",
    "xgboost.spark.estimator.SparkXGBRegressorModel": "regression",
}


class SavedModelError(FlightdeckError):
    """A saved model is not a pipeline flightdeck trains, or its files are incomplete (says which)."""


@dataclass(frozen=True)
class Indexer:
    """One categorical column: ``labels[i]`` has index ``i``; anything else ``len(labels)``."""

    input: str
    output: str
    labels: tuple[str, ...]

    def column(self) -> Column:
        """The index of the input column's value (double, as StringIndexerModel gives it)."""
        from pyspark.sql import functions as F

        pairs = [x for i, label in enumerate(self.labels) for x in (F.lit(label), F.lit(float(i)))]
        lookup = F.create_map(*pairs) if pairs else F.create_map().cast("map<string,double>")
        return F.coalesce(
            F.try_element_at(lookup, F.col(self.input).cast("string")), F.lit(float(len(self.labels)))
        ).alias(self.output)


@dataclass(frozen=True)
class Scorer:
    """What scoring needs of a pipeline (see the module docstring)."""

    indexers: tuple[Indexer, ...]
    inputs: tuple[str, ...]
    booster: Any
    task: ModelTask

    def indexed(self, df: DataFrame) -> DataFrame:
        """``df`` with each categorical column's index column added."""
        if not self.indexers:
            return df
        return df.withColumns({ix.output: ix.column() for ix in self.indexers})


def from_model(model: PipelineModel) -> Scorer | None:
    """The scorer of a fitted pipeline in memory, or None when it is not one flightdeck trains."""
    from pyspark.ml.feature import StringIndexerModel, VectorAssembler
    from xgboost.spark import SparkXGBClassifierModel, SparkXGBRegressorModel

    stages: list[Any] = list(model.stages)
    if len(stages) < 2:
        return None
    head, (assembler, booster_model) = stages[:-2], stages[-2:]
    if not (
        isinstance(booster_model, SparkXGBClassifierModel | SparkXGBRegressorModel)
        and isinstance(assembler, VectorAssembler)
        and all(isinstance(st, StringIndexerModel) and st.getHandleInvalid() == "keep" for st in head)
    ):
        return None
    indexers = tuple(
        Indexer(inp, out, tuple(labels))
        for st in head
        for inp, out, labels in zip(_cols(st, "inputCol"), _cols(st, "outputCol"), st.labelsArray, strict=True)
    )
    task: ModelTask = "regression" if isinstance(booster_model, SparkXGBRegressorModel) else "binary"
    return Scorer(indexers, tuple(assembler.getInputCols()), booster_model.get_booster(), task)


def _cols(stage: Any, param: str) -> list[str]:
    """A StringIndexerModel's input or output columns (one-column or multi-column form)."""
    many = stage.getOrDefault(f"{param}s") if stage.isSet(f"{param}s") else None
    return list(many) if many else [stage.getOrDefault(param)]


def _metadata(stage_dir: Path) -> dict[str, Any]:
    parts = sorted((stage_dir / "metadata").glob("part-*"))
    if not parts:
        raise SavedModelError(f"{stage_dir}: no metadata/part-* file; the saved model is incomplete")
    return dict(json.loads(parts[0].read_text(encoding="utf-8").splitlines()[0]))


def _params(meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta.get("defaultParamMap", {}), **meta.get("paramMap", {})}


def _labels(stage_dir: Path) -> list[list[str]]:
    import pyarrow.parquet as pq

    files = sorted((stage_dir / "data").glob("*.parquet"))
    if not files:
        raise SavedModelError(f"{stage_dir}: no data/*.parquet with the indexer's labels")
    rows = pq.read_table(files[0]).to_pylist()
    row = rows[0]
    return [list(x) for x in row["labelsArray"]] if "labelsArray" in row else [list(row["labels"])]


def read_saved(path: str | Path) -> Scorer:
    """The scorer of a pipeline saved by ``PipelineModel.save`` at ``path`` (a local folder).

    Raises:
        SavedModelError: the folder is not a flightdeck pipeline (other stages, another
            ``handleInvalid``) or misses files.
    """
    import xgboost as xgb

    root = Path(path)
    meta = _metadata(root)
    uids = list(_params(meta).get("stageUids", []))
    dirs = {d.name.split("_", 1)[1]: d for d in (root / "stages").glob("*_*") if d.is_dir()}
    if not uids or any(uid not in dirs for uid in uids):
        raise SavedModelError(f"{root}: the stages {uids} are not all under {root / 'stages'}")
    stages = [(dirs[uid], _metadata(dirs[uid])) for uid in uids]
    *head, (_, assembler), (booster_dir, booster_meta) = stages
    task = BOOSTER_CLASSES.get(booster_meta["class"])
    if task is None or assembler["class"] != ASSEMBLER_CLASS:
        raise SavedModelError(
            f"{root}: stages end in {assembler['class']}, {booster_meta['class']}; flightdeck scores pipelines "
            "ending in a VectorAssembler and an xgboost.spark model"
        )
    indexers: list[Indexer] = []
    for stage_dir, stage in head:
        params = _params(stage)
        if stage["class"] != INDEXER_CLASS or params.get("handleInvalid") != "keep":
            kind = f"{stage['class']} (handleInvalid={params.get('handleInvalid')})"
            raise SavedModelError(f"{stage_dir}: {kind} is not a StringIndexer that keeps unknown values")
        inputs = params.get("inputCols") or [params["inputCol"]]
        outputs = params.get("outputCols") or [params["outputCol"]]
        for inp, out, labels in zip(inputs, outputs, _labels(stage_dir), strict=True):
            indexers.append(Indexer(inp, out, tuple(labels)))
    parts = sorted((booster_dir / "model").glob("part-*"))
    if not parts:
        raise SavedModelError(f"{booster_dir}: no model/part-* file with the booster")
    # The booster's JSON as xgboost.spark saved it, loaded from memory: xgboost.spark's own
    # deserialize_booster goes through SparkFiles, which needs a SparkContext (none under Connect).
    booster = xgb.Booster()
    booster.load_model(bytearray("".join(p.read_text(encoding="utf-8") for p in parts).strip().encode("utf-8")))
    return Scorer(tuple(indexers), tuple(_params(assembler)["inputCols"]), booster, task)


def load_scorer(name: str, version: str) -> Scorer:
    """The scorer of a registered version: its files downloaded once per machine
    (:func:`flightdeck.core.tracking.spark_model_dir`), then :func:`read_saved`.

    Raises:
        SavedModelError: the version is not a flightdeck pipeline.
    """
    from flightdeck.core.tracking import spark_model_dir

    return read_saved(spark_model_dir(name, version))
