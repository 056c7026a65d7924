"""The model plane's hand-off documents, typed: each is read and written here and nowhere else.

* :class:`TrainResult` — ``runs/<key>/train.json``, written by ``jobs/train.py``, read by
  ``jobs/evaluate.py`` and the train DAG.
* :class:`Evaluation` — ``runs/<key>/evaluate.json``, written by ``jobs/evaluate.py``, read by
  :func:`flightdeck.model.promotion.gate_candidate`.
* :class:`GateResult` — ``runs/<key>/gate.json``, the gate's verdict on the candidate (also the
  XCom the promote task gets).
* :class:`PromoteResult` — ``runs/<key>/promote.json``, the champion move the promote task made.
* :class:`ScoreResult` — ``runs/<key>/score.json``, written by ``jobs/score.py``, read by the
  score DAG.
* :class:`ReproduceResult` — ``runs/<key>/reproduce.json``, written by ``jobs/reproduce.py``.
* :class:`Manifest` — ``manifest.json`` of a training run in MLflow, from which
  ``jobs/reproduce.py`` rebuilds the model.
* :class:`LedgerEntry` — one alias move in the lake's alias ledger.
* :class:`RetentionRecord` — one retention run in the alias ledger
  (``<model>-retention-<seq>.json``), written and read by :mod:`flightdeck.model.retention`.

The run documents are :class:`~flightdeck.core.documents.RunDocument` s (``read``, ``write``,
``emit``). The JSON field names are those the UI page, ``flightdeck status`` and the tests read;
a document written by an older flightdeck still validates (unknown fields are kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from flightdeck.core.documents import RunDocument


class TrainResult(RunDocument):
    """What a training run produced: the registered candidate version and its holdout metrics."""

    NAME: ClassVar[str] = "train"

    model_name: str
    version: str
    run_id: str
    train_partitions: list[str]
    validation_partitions: list[str]
    holdout_partitions: list[str]
    metrics: dict[str, float]
    chosen_params: dict[str, Any]
    trials: int
    reason: str
    seconds: float
    cpu_seconds: float | None = None  # CPU seconds of the job's driver process (Spark executors not counted)
    # With dataset.labels: outcomes known by this day labelled the window; rows left out unlabelled.
    labels_known_by: str | None = None
    unlabelled_rows: int = 0


class ScoredModel(BaseModel):
    """One model's version and its metrics on the holdout."""

    model_config = ConfigDict(extra="allow")

    version: str
    metrics: dict[str, float]


class Comparison(BaseModel):
    """Candidate against champion on the same rows: AUC delta, its bootstrap interval, per-slice AUCs.

    A regression model's comparison (``metric: rmse``) has the RMSE delta (absolute and
    relative: RMSE(candidate) / RMSE(champion) - 1), the bootstrap interval of the relative
    difference (``rmse_diff_ci``) and per-slice RMSEs with their intervals (``low``, ``high``).
    Only the fields that were set are written: without a champion the comparison is the
    candidate's slice metrics alone, as the first documents had it.
    """

    model_config = ConfigDict(extra="allow")

    roc_auc_delta: float | None = None
    auc_diff_ci: dict[str, float] | None = None
    slices: dict[str, Any] = Field(default_factory=dict)
    metric: str | None = None
    rmse_delta: float | None = None
    rmse_relative_delta: float | None = None
    rmse_diff_ci: dict[str, float] | None = None

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        unset = set(type(self).model_fields) - self.model_fields_set
        return {k: v for k, v in data.items() if k not in unset}


class Evaluation(RunDocument):
    """The candidate and the champion (None before the first promotion) on the frozen holdout."""

    NAME: ClassVar[str] = "evaluate"

    model_name: str
    candidate: ScoredModel
    champion: ScoredModel | None
    holdout_partitions: list[str]
    n_rows: int
    comparison: Comparison


class GateResult(RunDocument):
    """The gate's verdict on a candidate, with the versions and the metric it compared.

    ``task`` and ``metric`` say what was judged: ``binary`` on ``roc_auc`` (the AUCs in
    ``candidate_roc_auc``/``champion_roc_auc``), ``regression`` on ``rmse`` (in
    ``candidate_rmse``/``champion_rmse``; the AUC fields are None).
    """

    NAME: ClassVar[str] = "gate"

    candidate_version: str
    champion_version: str | None
    candidate_roc_auc: float | None
    champion_roc_auc: float | None
    task: str = "binary"
    metric: str = "roc_auc"
    candidate_rmse: float | None = None
    champion_rmse: float | None = None
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    checks: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, decision: GateResult | Mapping[str, Any]) -> GateResult:
        """A gate result from the document itself or its data (an XCom value)."""
        return decision if isinstance(decision, GateResult) else cls.model_validate(dict(decision))


class PromoteResult(RunDocument):
    """The champion move of a promotion: the alias-ledger entry, its path, or ``noop`` when nothing moved.

    Its fields are :func:`flightdeck.model.registry.promote`'s record (the ledger entry's fields
    and ``ledger``), kept as they are.
    """

    NAME: ClassVar[str] = "promote"


class ScoreResult(RunDocument):
    """What ``jobs/score.py`` wrote: the served version, the predictions partitions, the shadow version."""

    NAME: ClassVar[str] = "score"

    model_name: str
    model_version: str
    partitions: dict[str, int]  # date -> prediction rows written
    shadow_version: str | None
    seconds: float | None = None  # the job's own wall time (documents before it was recorded: None)
    cpu_seconds: float | None = None  # CPU seconds of the job's driver process (Spark executors not counted)


class ReproduceResult(RunDocument):
    """Whether ``jobs/reproduce.py`` rebuilt a version identically: the outcome on the holdout."""

    NAME: ClassVar[str] = "reproduce"

    model_name: str
    version: str
    run_id: str
    identical: bool
    max_abs_diff: float
    n_rows: int
    data_fingerprint_match: bool


class DataFingerprint(BaseModel):
    """Row counts and content hashes: per split (train, validation, holdout) and per partition."""

    model_config = ConfigDict(extra="allow")

    train: dict[str, Any]
    validation: dict[str, Any]
    holdout: dict[str, Any]
    partitions: dict[str, dict[str, Any]]


class Manifest(BaseModel):
    """Everything needed to rebuild a model: data, code, configuration, seeds, parameters, environment.

    Logged as ``manifest.json`` on the training run; ``config`` and ``chosen_params`` are None
    only in manifests of models trained before reproducible manifests.
    """

    model_config = ConfigDict(extra="allow")

    ARTIFACT: ClassVar[str] = "manifest.json"

    model_name: str
    train_start: str
    train_end: str
    train_partitions: list[str]
    validation_partitions: list[str] = Field(default_factory=list)
    holdout_partitions: list[str]
    data_fingerprint: DataFingerprint
    git_commit: str = ""
    config_hash: str = ""
    config: dict[str, Any] | None = None
    seeds: dict[str, int] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)
    features: dict[str, list[str]] = Field(default_factory=dict)
    label: str = ""
    library_versions: dict[str, str] = Field(default_factory=dict)
    spark: dict[str, Any] = Field(default_factory=dict)
    num_workers: int = 1
    threads_per_worker: int = 1
    reason: str = ""
    run_key: str | None = None
    chosen_params: dict[str, Any] | None = None
    best_iteration: int | None = None
    # With dataset.labels: the day by which outcomes had arrived, and the rows left out per partition.
    labels_known_by: str | None = None
    unlabelled_rows: dict[str, int] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready data (every field, in the order the first manifests had)."""
        return self.model_dump(exclude_unset=True)


class LedgerEntry(BaseModel):
    """One alias move in the lake's alias ledger (``monitoring/promotions/<model>-<alias>-<seq>.json``).

    Who moved which alias of which model from which version to which, when and why. Champion
    moves also carry ``version``/``previous`` (the same move as ``to``/``from``, which the
    status page and the UI read) and the ``decision_ref`` that justified them. ``seq`` is also the
    move's fencing token: only the promoter holding the newest claim may move the alias.
    """

    model_config = ConfigDict(extra="allow")

    action: str
    alias: str
    model_name: str
    seq: int
    from_: str | None = Field(validation_alias=AliasChoices("from", "from_"), serialization_alias="from")
    to: str
    who: str
    at: str
    why: str
    version: str | None = None
    previous: str | None = None
    decision_ref: str | None = None
    supersedes_unfinished: int | None = None
    op_id: str | None = None  # the operation (e.g. an Airflow run) that made the move: its retries find it

    def to_json(self) -> dict[str, Any]:
        """The entry as written to the ledger: the fields that were set, ``from`` under its JSON name."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class RetentionStep(BaseModel):
    """What a retention run did (or, dry, would do) to one version: ``keep``, ``deprecate``, ``restore``
    (a deprecated version kept again, its tag removed), ``wait`` (deprecated, in its grace period)
    or ``delete``; ``reason`` says why, ``done`` whether it was applied, ``error`` when it failed."""

    model_config = ConfigDict(extra="allow")

    version: str
    action: str
    reason: str
    deprecated_on: str | None = None
    done: bool = False
    error: str | None = None
    deleted_uri: str | None = None


class RetentionRecord(BaseModel):
    """One retention run of a model in the alias ledger (``monitoring/promotions/<model>-retention-<seq>.json``).

    ``day`` is the window's end the policy was judged on, ``policy`` the ``retention`` settings it
    used, ``steps`` one :class:`RetentionStep` per registered version (newest first).
    """

    model_config = ConfigDict(extra="allow")

    action: str = "retention"
    model_name: str
    seq: int
    who: str
    at: str
    day: str
    dry_run: bool
    policy: dict[str, Any]
    steps: list[RetentionStep] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as written to the ledger."""
        return self.model_dump(mode="json")
