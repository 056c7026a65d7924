"""The run hand-off document: one typed mechanism for every plane's job and task results.

A job's result is a :class:`RunDocument` subclass (``TrainResult``, ``IngestResult``,
``DriftSummary``...): the job calls :meth:`RunDocument.emit`, which writes
``runs/<run key>/<NAME>.json`` and prints one ``FLIGHTDECK_RESULT`` line for the task log;
the next task reads it back with ``SomeResult.read(lake, run_key)`` and gets typed fields,
never a dict read by string keys.

One policy for every lake document: unknown fields are kept (``extra="allow"``), so a
document written by an older or newer flightdeck still validates and rewriting it drops
nothing.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from flightdeck.core.lake import Lake, read_json, write_json

RESULT_PREFIX = "FLIGHTDECK_RESULT "  # the task-log line that carries a job's result (bench and tests parse it)


class RunDocument(BaseModel):
    """A run hand-off document: ``runs/<run key>/<NAME>.json`` in the lake."""

    model_config = ConfigDict(extra="allow")

    NAME: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The document as data for JSON: every field under its JSON name, extra fields kept.

        A python-mode dump (not ``mode="json"``), so a NaN metric stays NaN in the document
        instead of turning into null.
        """
        return self.model_dump(by_alias=True)

    @classmethod
    def read(cls, lake: Lake, run_key: str) -> Self:
        """This run's document of this kind (e.g. ``TrainResult.read(lake, key)``)."""
        return cls.model_validate(read_json(lake.run_doc(run_key, cls.NAME)))

    def write(self, lake: Lake, run_key: str) -> None:
        """Write the document without announcing it (tasks; jobs use :meth:`emit`)."""
        write_json(lake.run_doc(run_key, self.NAME), self.to_json())

    def emit(self, lake: Lake, run_key: str | None) -> dict[str, Any]:
        """Hand a job's result on: written under ``runs/<run key>/`` (when there is a key) and printed.

        Returns:
            The document's data, as written.
        """
        data = self.to_json()
        if run_key:
            write_json(lake.run_doc(run_key, self.NAME), data)
        # The one stdout line of a job (Airflow shows it in the task log; bench and tests parse it).
        print(RESULT_PREFIX + json.dumps(data, sort_keys=True, default=str), flush=True)
        return data
