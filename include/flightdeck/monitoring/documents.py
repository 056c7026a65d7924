"""The typed documents of the monitoring plane, each read and written here and nowhere else.

* :class:`RetrainRequest`: ``monitoring/retrain_requests/D.json``, written by the monitoring DAG
  when the drift policy asks for a retrain, marked consumed by the training DAG; its content is
  also the ``retrain_request`` asset event's extra.
* :class:`RetrainDecision`: ``monitoring/retrain_decisions/D.json``, the drift policy's verdict
  for day D (later days wait for it).
* :class:`DriftSummary`: ``runs/<key>/detect_drift.json``, what ``jobs/detect_drift.py`` hands on
  (its ``emit``) to the monitoring DAG's ``decide_retrain`` (``DriftSummary.read``).

JSON keys are a contract (``flightdeck status``, the UI page and the asset event read them):
rename a field only together with its readers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from flightdeck.core.documents import RunDocument
from flightdeck.core.lake import Lake, json_exists, list_docs, read_json, write_json


class RetrainRequest(BaseModel):
    """A retrain request for partition D: why, which features, and who consumed it.

    Open until the training DAG sets ``consumed_by`` (see
    :func:`flightdeck.monitoring.retrain.consume_retrain_request`) or until it expires.
    """

    model_config = ConfigDict(extra="allow")

    partition: str
    reason: str
    features: dict[str, float] = Field(default_factory=dict)
    breaches: list[str] = Field(default_factory=list)
    monitoring_run: str | None = None
    consumed_by: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The JSON document (``consumed_by`` only once set, as the first format had it)."""
        return self.model_dump(exclude_none=True)


def write_retrain_request(lake: Lake, request: RetrainRequest) -> None:
    """Write (or overwrite) the request document of its partition."""
    write_json(lake.retrain_request(request.partition), request.to_doc())


def read_retrain_request(lake: Lake, partition: str) -> RetrainRequest | None:
    """The request for ``partition``, or None when there is none."""
    path = lake.retrain_request(partition)
    if not json_exists(path):
        return None
    return RetrainRequest.model_validate(read_json(path))


def read_retrain_requests(lake: Lake) -> list[RetrainRequest]:
    """Every retrain request recorded so far, oldest partition first."""
    return [RetrainRequest.model_validate(read_json(path)) for path in list_docs(lake.retrain_requests())]


class RetrainDecision(BaseModel):
    """The drift policy's decision for day D: ``monitoring/retrain_decisions/D.json``.

    Written by the monitoring DAG's ``decide_retrain`` for every day it decides (retrain or
    not), so a later day's decision can wait until the earlier days it reads have theirs
    (:func:`flightdeck.monitoring.retrain.undecided_days`). ``went_without`` names earlier days
    whose decision was still missing when the wait's deadline passed.
    """

    model_config = ConfigDict(extra="allow")

    partition: str
    retrain: bool
    reason: str
    monitoring_run: str | None = None
    went_without: list[str] = Field(default_factory=list)


def write_retrain_decision(lake: Lake, decision: RetrainDecision) -> None:
    """Write (or overwrite) the decision of its day."""
    write_json(lake.retrain_decision(decision.partition), decision.model_dump())


def read_retrain_decision(lake: Lake, partition: str) -> RetrainDecision | None:
    """The decision for ``partition``, or None when the day was never decided."""
    path = lake.retrain_decision(partition)
    if not json_exists(path):
        return None
    return RetrainDecision.model_validate(read_json(path))


class DriftSummary(RunDocument):
    """The drift job's result for one partition: the drift report's figures and where it was logged.

    ``performance`` is :func:`flightdeck.monitoring.drift.performance_report`'s dict for day D-1
    (None when D-1 has no committed predictions and features). Written with every key, nulls
    included.
    """

    NAME: ClassVar[str] = "detect_drift"

    partition: str
    date: str
    model_name: str
    model_version: str
    status: str
    n_rows: int
    min_rows: int
    n_predictions: int = 0
    psi: dict[str, float | None]
    psi_threshold: float
    missing: list[str] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    drifted: list[str]
    n_features: int
    drifted_share: float
    prediction_psi: float | None = None
    prediction_threshold: float
    prediction_drifted: bool = False
    performance: dict[str, Any] | None = None
    report_html: str
    mlflow_run_id: str
