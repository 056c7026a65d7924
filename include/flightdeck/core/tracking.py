"""MLflow in one place: runs, params, metrics, artifacts, datasets, models, version tags and reads.

Every plane calls these named functions instead of ``mlflow.*`` or ``MlflowClient``, so what a
training, evaluation, drift or data-quality run records (experiment, run name, tags, metrics,
artifact paths) is read in one module. It sits in core so the data plane can log its Data Docs;
mlflow is imported inside the functions only, since core is imported when DAG files are parsed.
The registry's aliases and their ledger are :mod:`flightdeck.model.registry`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from flightdeck.core.errors import FlightdeckError

if TYPE_CHECKING:
    from mlflow import MlflowClient as Client
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

TAG_LIMIT = 5000
"""Longest tag value written (MLflow rejects longer ones); free text is cut to it."""
MODEL_ARTIFACT = "model"
DATA_QUALITY_EXPERIMENT = "flightdeck-data-quality"
DATA_DOCS_ARTIFACT = "data_docs"
DocT = TypeVar("DocT", bound=BaseModel)


class ManifestError(FlightdeckError):
    """A model version has no usable training manifest (the message says why)."""


def client() -> Client:
    """The MLflow client of the configured tracking and registry servers (the one factory)."""
    from mlflow import MlflowClient

    return MlflowClient()


def model_uri(name: str, version: str) -> str:
    """The URI of one registered model version (a number, never an alias: resolve it first)."""
    return f"models:/{name}/{version}"


def load_model(name: str, version: str) -> PipelineModel:
    """The Spark pipeline model of a registered version."""
    import mlflow

    return mlflow.spark.load_model(model_uri(name, version))


MODEL_CACHE_ENV = "FLIGHTDECK_MODEL_CACHE"


def model_cache() -> Path:
    """Where downloaded model versions are kept: ``FLIGHTDECK_MODEL_CACHE``, else a private
    folder under the system's temp folder (``flightdeck-models-<uid>``)."""
    import os

    folder = os.environ.get(MODEL_CACHE_ENV) or str(Path(tempfile.gettempdir()) / f"flightdeck-models-{os.getuid()}")
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def spark_model_dir(name: str, version: str) -> Path:
    """The local folder of a registered version's saved Spark pipeline, downloaded once.

    A version's files never change, so each is downloaded from the tracking server the first
    time a process on this machine asks for it and kept in :func:`model_cache` under a key
    that includes the version's run and source (a registry rebuilt from scratch reuses
    version numbers, never those). The download lands in a private temporary folder that is
    renamed into place whole, so concurrent jobs never see half a model.
    """
    import hashlib
    import os
    import shutil

    import mlflow
    import yaml

    mv = client().get_model_version(name, version)
    key = hashlib.sha256(f"{mlflow.get_registry_uri()}|{mv.run_id}|{mv.source}".encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    folder = model_cache() / f"{safe}-v{version}-{key}"
    if not (folder / "MLmodel").is_file():
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri(name, version), dst_path=str(staging))
            found = next(staging.rglob("MLmodel"), None)
            if found is None:
                raise ManifestError(f"{name} v{version}: the downloaded model has no MLmodel file")
            try:
                os.rename(found.parent, folder)
            except OSError:
                if not (folder / "MLmodel").is_file():  # not another job's complete copy: a real failure
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("downloaded %s v%s into %s", name, version, folder)
    flavor = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")).get("flavors", {}).get("spark")
    if not flavor:
        raise ManifestError(f"{name} v{version} has no Spark flavour; it was not logged by flightdeck's training")
    return folder / str(flavor.get("model_data", "sparkml"))


@contextmanager
def training_run(experiment: str, run_name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """Open the MLflow run of a training (experiment = model name); yields its run id."""
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.set_tags(dict(tags))
        yield active.info.run_id


def log_trial(i: int, params: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """One search trial as a nested run of the open training run: parameters and validation metrics."""
    import mlflow

    with mlflow.start_run(run_name=f"trial {i}", nested=True):
        mlflow.log_params({f"xgb_{k}": v for k, v in params.items()})
        mlflow.log_metrics({f"val_{k}": v for k, v in (result.get("validation") or {}).items()})
        mlflow.log_metric("fit_seconds", result["fit_seconds"])
        mlflow.log_metric("num_trees", result["num_trees"])
        if result.get("best_iteration") is not None:
            mlflow.log_metric("best_iteration", result["best_iteration"])


def log_params(params: Mapping[str, Any]) -> None:
    """Parameters of the open run."""
    import mlflow

    mlflow.log_params(dict(params))


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Metrics of the open run."""
    import mlflow

    mlflow.log_metrics(dict(metrics))


def log_dicts(docs: Mapping[str, Any]) -> None:
    """JSON documents as artifacts of the open run (artifact file name -> document)."""
    import mlflow

    for artifact, doc in docs.items():
        mlflow.log_dict(doc, artifact)


def log_plots(write: Callable[[Path], Any]) -> None:
    """Plots written by ``write(folder)`` as the open run's ``plots/`` artifacts."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="flightdeck-plots-") as tmp:
        write(Path(tmp))
        mlflow.log_artifacts(tmp, artifact_path="plots")


def log_dataset(
    df: DataFrame, *, path: str, name: str, targets: str, digest: str, context: str, partitions: str
) -> None:
    """Rows used by the open run as an MLflow dataset input (digest = our data fingerprint)."""
    import mlflow
    from mlflow.data.spark_dataset import from_spark

    dataset = from_spark(df, path=path, name=name, targets=targets, digest=digest)
    mlflow.log_input(dataset, context=context, tags={"partitions": partitions})


def log_spark_model(model: PipelineModel, *, name: str, example: Any, requirements: Sequence[str]) -> str:
    """Log the Spark pipeline with signature and input example, register it under ``name``; the new version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    # The signature from the example alone: running the model for it costs a Python worker.
    signature = infer_signature(example, pd.DataFrame({"prediction": [0.0, 1.0]}))
    info = mlflow.spark.log_model(
        model,
        MODEL_ARTIFACT,  # mlflow.spark.log_model in MLflow 3.17 still names this parameter artifact_path
        registered_model_name=name,
        signature=signature,
        input_example=example,
        pip_requirements=list(requirements),
    )
    return str(info.registered_model_version)


def tag_version(name: str, version: str, tags: Mapping[str, str], *, c: Client | None = None) -> None:
    """Tags on a registered model version."""
    the_client = c or client()
    for key, value in tags.items():
        the_client.set_model_version_tag(name, version, key, value)


def log_evaluation(
    run_id: str,
    metrics: Mapping[str, float],
    comparison: Mapping[str, Any],
    *,
    c: Client | None = None,
) -> None:
    """Record an evaluation on the candidate's training run: ``eval_*``/``champion_*`` metrics and the comparison."""
    the_client = c or client()
    for key, value in metrics.items():
        the_client.log_metric(run_id, key, value)
    the_client.log_dict(run_id, dict(comparison), "evaluation/comparison.json")


def set_run_tag(run_id: str, key: str, value: str, *, c: Client | None = None) -> None:
    """One tag on a run."""
    (c or client()).set_tag(run_id, key, value)


def load_manifest(
    name: str, version: str, schema: type[DocT], *, artifact: str, c: Client | None = None
) -> tuple[str, DocT]:
    """The training run id and the manifest (``artifact`` of that run, parsed as ``schema``) of a registered version.

    Raises:
        ManifestError: the version has no training run, or its manifest is not one flightdeck can rebuild from.
    """
    import mlflow
    from pydantic import ValidationError

    run_id = version_run_id(name, version, c=c)
    if not run_id:
        raise ManifestError(f"model {name} v{version} has no training run; it was not trained by flightdeck")
    raw = mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")
    try:
        manifest = schema.model_validate(raw)
    except ValidationError as err:
        raise ManifestError(f"the manifest of {name} v{version} is incomplete ({err.error_count()} errors)") from err
    return run_id, manifest


# --- registry reads ----------------------------------------------------------------------------


def model_aliases(name: str, *, c: Client | None = None) -> dict[str, str] | None:
    """The aliases of a registered model (alias -> version); None when the model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = (c or client()).get_registered_model(name)
    except MlflowException as err:
        if getattr(err, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return None
        raise
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}


def version_run_id(name: str, version: str, *, c: Client | None = None) -> str | None:
    """The id of the run that logged a registered version (None for a version logged outside a run)."""
    run_id = (c or client()).get_model_version(name, version).run_id
    return str(run_id) if run_id else None


def version_run_metrics(name: str, version: str, *, c: Client | None = None) -> dict[str, float]:
    """The metrics of the run that logged a registered version (empty when it has no run)."""
    the_client = c or client()
    run_id = version_run_id(name, version, c=the_client)
    metrics = the_client.get_run(run_id).data.metrics if run_id else {}
    return {k: float(v) for k, v in metrics.items()}


def list_versions(name: str, *, c: Client | None = None) -> list[dict[str, Any]]:
    """Every registered version of a model: ``version``, ``run_id``, ``created`` (ms) and ``tags``; none when the
    model does not exist."""
    found = (c or client()).search_model_versions(f"name='{name}'")
    return [
        {
            "version": str(mv.version),
            "run_id": mv.run_id or None,
            "created": int(mv.creation_timestamp or 0),
            "tags": dict(mv.tags or {}),
        }
        for mv in found
    ]


def delete_version_tag(name: str, version: str, key: str, *, c: Client | None = None) -> None:
    """Remove one tag of a registered model version."""
    (c or client()).delete_model_version_tag(name, version, key)


def delete_version(name: str, version: str, *, c: Client | None = None) -> str:
    """Delete a registered version: its model artifacts first, then its registry entry; the artifact URI deleted.

    The training run and its metrics stay (the history of what was trained and why); the
    version's logged model is marked deleted too when it has one (MLflow 3).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    the_client = c or client()
    mv = the_client.get_model_version(name, version)
    uri = the_client.get_model_version_download_uri(name, version)
    get_artifact_repository(uri).delete_artifacts()
    the_client.delete_model_version(name, version)
    model_id = getattr(mv, "model_id", None)
    if model_id:
        the_client.delete_logged_model(model_id)
    return str(uri)


def log_run_files(run_id: str, write: Callable[[Path], Any], artifact_path: str, *, c: Client | None = None) -> None:
    """Files written by ``write(folder)`` as artifacts of a (closed) run under ``artifact_path``."""
    with tempfile.TemporaryDirectory(prefix="flightdeck-files-") as tmp:
        write(Path(tmp))
        (c or client()).log_artifacts(run_id, tmp, artifact_path=artifact_path)


def load_run_json(run_id: str, artifact: str) -> Any:
    """A JSON artifact of a run, downloaded to a temporary folder and parsed."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="flightdeck-artifact-") as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
        return json.loads(Path(local).read_text())


# --- monitoring and data-quality runs ------------------------------------------------------------


def log_drift_run(
    name: str,
    run_name: str,
    *,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    report: Mapping[str, Any],
    page: tuple[str, str],
) -> str:
    """One drift run in the ``<model>-monitoring`` experiment: tags, metrics, ``drift_report.json`` and its page.

    ``page`` is (artifact file name, HTML). Returns the run id.
    """
    import mlflow

    mlflow.set_experiment(f"{name}-monitoring")
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.set_tags(dict(tags))
        mlflow.log_metrics(dict(metrics))
        mlflow.log_dict(dict(report), "drift_report.json")
        mlflow.log_text(page[1], page[0])
        run_id: str = active.info.run_id
    return run_id


def log_data_docs(
    run_name: str, *, tags: Mapping[str, str], metrics: Mapping[str, float], pages: Mapping[str, str]
) -> str:
    """One run in the ``flightdeck-data-quality`` experiment: tags, metrics and the Data Docs pages.

    ``pages`` maps a page's path under ``data_docs/`` (``<suite>/<partition>.html``) to its HTML.
    Returns the run id.
    """
    import mlflow

    mlflow.set_experiment(DATA_QUALITY_EXPERIMENT)
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(dict(tags))
        mlflow.log_metrics(dict(metrics))
        for relative, html in pages.items():
            target = Path(tmp) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(html)
        mlflow.log_artifacts(tmp, artifact_path=DATA_DOCS_ARTIFACT)
        return str(run.info.run_id)
