"""The benchmarked stages, each beside its reference, on one lake per scale.

Every function here calls the library (or a job's ``main``) as the pipeline does; only the
references are written for the benchmark. Nothing in ``include/`` or ``jobs/`` is changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.generator import scale_flights, scale_planes
from bench.probe import RssSampler, measure
from flightdeck.core.documents import RESULT_PREFIX
from flightdeck.core.jobargs import load_job

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from flightdeck.core.config import PipelineConfig
    from flightdeck.core.lake import Lake

ROOT = Path(__file__).resolve().parents[1]


def run_job(name: str, argv: list[str]) -> dict[str, Any]:
    """Run ``jobs/<name>.py`` in this process (same SparkSession); its FLIGHTDECK_RESULT as a dict."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        load_job(name).main(argv)
    lines = [line for line in out.getvalue().splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else {}


def span(dates: list[dt.date]) -> str:
    return f"{dates[0].isoformat()}..{dates[-1].isoformat()}"


# --- data ------------------------------------------------------------------------------------


def prepare_base(cfg: PipelineConfig, lake: Lake, dates: list[dt.date], log: Any) -> None:
    """Land and ingest the base window into the base lake (kept between runs)."""
    from flightdeck.data import landing

    entity = cfg.dataset.entity.name
    if set(dates) <= set(lake.committed_partitions("bronze", entity)):
        log(f"base lake: bronze already holds {span(dates)}, reusing it")
        return
    started = time.perf_counter()
    landing.land_reference(cfg, lake)
    landing.land_range(cfg, lake, dates[0], dates[-1])
    run_job("ingest", ["--partition", span(dates)])
    log(f"base lake: landed and ingested {span(dates)} in {time.perf_counter() - started:.0f}s")


def prepare_scaled(
    spark: SparkSession, cfg: PipelineConfig, base: Lake, scaled: Lake, dates: list[dt.date], factor: int
) -> int:
    """A lake whose bronze flights (and planes) are the base's times ``factor``; returns its flight rows.

    Weather and the other reference tables are copied as they are (the series per airport
    does not grow with the number of flights).
    """
    from flightdeck.core.lake import reference_table
    from flightdeck.data.sparkio import read_partitions, write_partitions, write_table

    entity = cfg.dataset.entity.name
    root = Path(scaled.root)
    if root.exists():
        shutil.rmtree(root)
    (root / "bronze").mkdir(parents=True)
    for source in cfg.dataset.timeseries:
        shutil.copytree(Path(base.table("bronze", source.name)), Path(scaled.table("bronze", source.name)))
    for ref in cfg.dataset.reference:
        if ref.name != "planes":
            name = reference_table(ref.name)
            shutil.copytree(Path(base.table("bronze", name)), Path(scaled.table("bronze", name)))
    planes = spark.read.parquet(base.table("bronze", reference_table("planes")))
    write_table(scale_planes(planes, factor).coalesce(1), scaled, "bronze", reference_table("planes"))
    flights = read_partitions(spark, base, "bronze", entity, dates)
    slices = max(1, min(len(dates), 2 * spark.sparkContext.defaultParallelism))
    rows = scale_flights(flights, factor).repartition(slices, "date").cache()
    n = rows.count()
    write_partitions(rows, scaled, "bronze", entity, dates)
    rows.unpersist()
    return n


def scan(frames: list[DataFrame]) -> list[Any]:
    """The reference scan: row count plus a sum over every column (numbers summed, strings by
    length, others counted), one Spark job per frame."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType, StringType

    out = []
    for df in frames:
        aggs = [F.count(F.lit(1))]
        for f in df.schema.fields:
            if isinstance(f.dataType, NumericType):
                aggs.append(F.sum(F.col(f.name).cast("double")))
            elif isinstance(f.dataType, StringType):
                aggs.append(F.sum(F.length(f.name)))
            else:
                aggs.append(F.count(f.name))
        out.append(df.agg(*aggs).collect()[0])
    return out


# --- stages ----------------------------------------------------------------------------------


@dataclass
class Scale:
    """What the stages of one scale share: the session, config, lake and window."""

    spark: SparkSession
    cfg: PipelineConfig
    lake: Lake
    dates: list[dt.date]
    repeats: int
    sampler: RssSampler
    log: Any
    slow_seconds: float | None = None
    single_run: bool = False  # one timed run, no warm-up (the largest sizes: see bench --single-run-from)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [d.isoformat() for d in self.dates]

    def features(self) -> DataFrame:
        from flightdeck.data.sparkio import read_partitions

        return read_partitions(self.spark, self.lake, "features", self.cfg.dataset.entity.name, self.dates)

    def timed(self, label: str, fn: Any) -> dict[str, Any]:
        """``fn`` measured (see :func:`bench.probe.measure`), with the Spark jobs its warm-up ran."""
        self.log(f"  {label} ...")
        counted: list[int] = []

        def counting_first() -> None:
            if counted:
                fn()
                return
            with spark_jobs(self.spark) as jobs:
                fn()
            counted.append(jobs())

        if self.single_run:
            result = measure(counting_first, 1, self.sampler, warm_up=False)
        else:
            result = measure(counting_first, self.repeats, self.sampler, self.slow_seconds)
        result["spark_jobs"] = counted[0] if counted else None
        self.log(
            f"  {label}: {result['seconds']:.2f}s (runs {result['runs']}, {result['spark_jobs']} Spark job(s), "
            f"peak {result['peak_rss_mb']:.0f} MB, load {result['load_avg'][0]}->{result['load_avg'][1]})"
        )
        return result


@contextlib.contextmanager
def spark_jobs(spark: SparkSession) -> Any:
    """Count the Spark jobs run inside the block (a job group of its own); yields the counter."""
    import uuid

    sc = spark.sparkContext
    group = f"bench-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "flightdeck bench measurement")
    try:
        yield lambda: len(sc.statusTracker().getJobIdsForGroup(group))
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]  # None clears it
        sc.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]


def python_pass(df: DataFrame) -> int:
    """The floor of any Spark -> Python design: ship every row of ``df`` to the Python workers in
    Arrow batches (``mapInPandas``) and count them there, nothing else."""
    import pandas as pd

    def count(batches: Any) -> Any:
        for pdf in batches:
            yield pd.DataFrame({"n": [len(pdf)]})

    return int(df.mapInPandas(count, "n long").groupBy().sum("n").collect()[0][0] or 0)


def bench_features(s: Scale) -> dict[str, Any]:
    """jobs/build_features.py over the window (read bronze, build, write) vs a scan of its inputs."""
    from flightdeck.data.ingest import read_reference_tables
    from flightdeck.data.sparkio import read_available_partitions, read_partitions

    job_seconds: list[float] = []

    def pipeline() -> None:
        job_seconds.append(float(run_job("build_features", ["--partition", span(s.dates)]).get("seconds", 0.0)))

    cfg, entity = s.cfg, s.cfg.dataset.entity.name

    def reference() -> None:
        frames = [read_partitions(s.spark, s.lake, "bronze", entity, s.dates)]
        for join in cfg.features.asof_joins:
            df, _ = read_available_partitions(
                s.spark, s.lake, "bronze", join.source, s.dates[0] - dt.timedelta(days=1), s.dates[-1]
            )
            if df is not None:
                frames.append(df)
        frames += list(
            read_reference_tables(s.spark, s.lake, sorted({lk.source for lk in cfg.features.lookups})).values()
        )
        scan(frames)

    scratch = Path(s.lake.root).parent / f"{Path(s.lake.root).name}-features-copy"

    def output_write() -> None:
        s.features().write.mode("overwrite").parquet(str(scratch))

    out = {"pipeline": s.timed("features: build_features job", pipeline)}
    out["reference"] = s.timed("features: parquet scan of its inputs", reference)
    # a floor the scan lacks: the job writes its output (read back and written again here)
    out["floors"] = {"write of the output rows": s.timed("features: floor: write its output", output_write)}
    shutil.rmtree(scratch, ignore_errors=True)
    out["job_reported_seconds"] = job_seconds
    out["rows"] = s.features().count()
    return out


def bench_validation(s: Scale) -> dict[str, Any]:
    """validate_range (GX, as jobs/validate_features.py: read, validate) vs the fused aggregate."""
    from flightdeck.data.validation import _flag_columns, features_spec, validate_range

    spec = features_spec(s.cfg)
    outcome: dict[str, Any] = {}

    def pipeline() -> None:
        reports = validate_range(s.features(), s.cfg, s.keys, spec=spec)
        outcome["success"] = all(r.success for r in reports.values())
        outcome["own_runs"] = sum(1 for r in reports.values() if r.derived_from is None)

    def reference() -> None:
        features = s.features()
        aggs, _ = _flag_columns(features, spec)
        features.groupBy("date").agg(*aggs).collect()

    out = {"pipeline": s.timed("validation: GX validate_range", pipeline)}
    out["reference"] = s.timed("validation: one fused Spark aggregate", reference)
    out["gx_success"] = outcome.get("success")
    out["partitions_validated_on_their_own"] = outcome.get("own_runs")
    return out


def _prepare_training(s: Scale) -> None:
    """Featurized training rows (cached, one slice per XGBoost worker) and the same rows as numpy."""
    from pyspark.sql import functions as F

    from flightdeck.model.inference import INDEX_SUFFIX, model_input_frame
    from flightdeck.model.training import build_featurizer

    cfg = s.cfg
    label = cfg.label.name
    frame = model_input_frame(s.features(), cfg).where(F.col(label).isNotNull())
    featurizer = build_featurizer(cfg).fit(frame)
    inputs = [*cfg.features.numeric, *[f"{c}{INDEX_SUFFIX}" for c in cfg.features.categorical]]
    prepared = (
        featurizer.transform(frame).select("features", label, *inputs).repartition(cfg.model.num_workers).persist()
    )
    rows = prepared.count()
    pdf = prepared.select(*inputs, label).toPandas()
    s.cache.update(
        featurizer=featurizer,
        prepared=prepared,
        rows=rows,
        x=pdf[inputs].to_numpy(dtype="float64"),
        y=pdf[label].to_numpy(dtype="float64"),
        inputs=inputs,
    )


def native_params(cfg: PipelineConfig, nthread: int) -> tuple[dict[str, Any], int]:
    """The config's booster parameters in ``xgboost.train`` terms, and the number of rounds."""
    from flightdeck.model.training import xgb_params

    p = xgb_params(cfg)
    params = {
        "objective": "binary:logistic",
        "tree_method": p.get("tree_method", "hist"),
        "max_depth": p["max_depth"],
        "eta": p["learning_rate"],
        "subsample": p.get("subsample", 1.0),
        "colsample_bytree": p.get("colsample_bytree", 1.0),
        "min_child_weight": p.get("min_child_weight", 1.0),
        "seed": p["random_state"],
        "nthread": nthread,
    }
    return params, int(p["n_estimators"])


def bench_training(s: Scale, nthread: int) -> dict[str, Any]:
    """SparkXGBClassifier.fit (num_workers from the config) vs xgboost.train on the same rows."""
    import numpy as np
    import xgboost as xgb

    from flightdeck.model.training import build_classifier

    _prepare_training(s)
    cfg, c = s.cfg, s.cache
    classifier = build_classifier(cfg)
    params, rounds = native_params(cfg, nthread)

    def pipeline() -> None:
        c["spark_model"] = classifier.fit(c["prepared"])

    def reference() -> None:
        dtrain = xgb.DMatrix(c["x"], label=c["y"], missing=np.nan, nthread=nthread)
        c["booster"] = xgb.train(params, dtrain, num_boost_round=rounds)

    out = {"pipeline": s.timed(f"training: SparkXGBClassifier num_workers={cfg.model.num_workers}", pipeline)}
    out["reference"] = s.timed(f"training: native xgboost.train nthread={nthread}", reference)
    depth, features = int(params["max_depth"]), len(c["inputs"])
    cells = c["rows"] * features * rounds * depth
    out |= {"rows": c["rows"], "features": features, "trees": rounds, "max_depth": depth}
    out["ns_per_cell"] = {
        "pipeline": round(out["pipeline"]["seconds"] * 1e9 / cells, 3),
        "reference": round(out["reference"]["seconds"] * 1e9 / cells, 3),
    }
    return out


def bench_scoring(s: Scale, nthread: int, *, explain: bool = True) -> dict[str, Any]:
    """flightdeck.model.inference.score with the fitted pipeline model (all columns computed) vs
    Booster.inplace_predict on the same rows."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from flightdeck.model.inference import score

    with_explain = explain
    c = s.cache
    model = PipelineModel(stages=[*c["featurizer"].stages, c["spark_model"]])
    booster = c["spark_model"].get_booster()
    booster.set_param({"nthread": nthread})
    label = s.cfg.label.name

    def pipeline() -> None:
        rows = s.features().where(F.col(label).isNotNull())
        scored = score(model, rows, model_name="bench", model_version="0", run_key=None, cfg=s.cfg)
        scored.write.format("noop").mode("overwrite").save()

    def reference() -> None:
        booster.inplace_predict(c["x"])

    explain = s.cfg.scoring.explain.model_copy(update={"enabled": True})
    explaining = s.cfg.model_copy(update={"scoring": s.cfg.scoring.model_copy(update={"explain": explain})})

    def explained() -> None:
        rows = s.features().where(F.col(label).isNotNull())
        scored = score(model, rows, model_name="bench", model_version="0", run_key=None, cfg=explaining)
        scored.write.format("noop").mode("overwrite").save()

    def shipped() -> None:
        rows = s.features().where(F.col(label).isNotNull())
        python_pass(rows.select(*s.cfg.features.model_inputs))

    out = {"pipeline": s.timed("scoring: score() with the Spark pipeline model", pipeline)}
    out["reference"] = s.timed(f"scoring: Booster.inplace_predict nthread={nthread}", reference)
    # the floor of scoring in Spark with a Python booster: read the rows and ship them to Python
    out["floors"] = {"read + ship the model inputs to Python": s.timed("scoring: floor: Python pass", shipped)}
    if with_explain:  # scoring.explain: the same score() with each row's top-k SHAP contributions
        out["explained"] = s.timed(f"scoring: score() with scoring.explain (top {explain.top_k} SHAP)", explained)
        plain = out["pipeline"]["seconds"]
        out["explain_cost"] = round(out["explained"]["seconds"] / plain, 2) if plain else None
    out["rows"] = c["rows"]
    out["rows_per_second"] = {
        k: round(c["rows"] / out[k]["seconds"]) if out[k]["seconds"] else None for k in ("pipeline", "reference")
    }
    c["prepared"].unpersist()
    return out


def bench_drift(s: Scale) -> dict[str, Any]:
    """The daily drift check (``detect_drift``'s aggregation: current bin counts against the champion's
    reference profile, and the PSI report) on the second half of the window, vs one scan of it.

    The reference profile is built once per model version at training (``jobs/train.py``), not by
    the daily check; it is timed apart (``drift_profile``: first half of the window).
    """
    from pyspark.sql import functions as F

    from flightdeck.model.inference import model_input_frame
    from flightdeck.monitoring.drift import drift_report, profile_counts
    from flightdeck.monitoring.profile import reference_profile

    cfg = s.cfg
    half = max(1, len(s.keys) // 2)
    ref_keys, cur_keys = s.keys[:half], s.keys[half:] or s.keys[:half]
    columns = list(cfg.features.model_inputs)
    summary: dict[str, Any] = {}

    def frames() -> tuple[DataFrame, DataFrame]:
        features = model_input_frame(s.features(), cfg)
        return features.where(F.col("date").isin(ref_keys)), features.where(F.col("date").isin(cur_keys))

    profile = reference_profile(frames()[0], cfg)

    def daily() -> None:
        current = profile_counts(frames()[1], profile)
        report = drift_report(profile, current, cfg.drift, current["n_rows"])
        summary.update(status=report["status"], drifted=len(report["drifted"]), n_rows=current["n_rows"])

    def building_profile() -> None:
        reference_profile(frames()[0], cfg)

    out = {"pipeline": s.timed("drift: profile_counts + drift_report of the current window", daily)}
    out["reference"] = s.timed("drift: one scan of the current window", lambda: scan([frames()[1].select(*columns)]))
    # the floor of counting bins in Python: the same rows shipped to the Python workers, counted there
    out["floors"] = {
        "read + ship the model inputs to Python": s.timed(
            "drift: floor: Python pass", lambda: python_pass(frames()[1].select(*columns))
        )
    }
    out["report"] = summary
    out["windows"] = {"reference": [ref_keys[0], ref_keys[-1]], "current": [cur_keys[0], cur_keys[-1]]}
    profile_out = {"pipeline": s.timed("drift_profile: reference_profile of the reference window", building_profile)}
    profile_out["reference"] = s.timed(
        "drift_profile: one scan of the reference window", lambda: scan([frames()[0].select(*columns)])
    )
    out["profile"] = profile_out
    return out
