"""Lineage of the Spark jobs: a day's prediction partition traced back, through the events the
jobs' lineage makes, to its landing files and to the model version (and that version to its
training partitions); the operator hands the same lineage to Airflow's OpenLineage provider."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.lake import Lake
from flightdeck.monitoring import lineage
from flightdeck.monitoring.lineage import DatasetRef

DAY = "2013-07-02"


def _docs(root: Path) -> dict[str, dict[str, Any]]:
    """Run documents as the jobs write them, for one day and one training run."""
    entry = {"date": DAY, "rows_in": 10, "rows_valid": 9, "rows_quarantined": 1, "reasons": {"null:x": 1}}
    weather = {**entry, "rows_quarantined": 0, "rows_valid": 10, "reasons": {}}
    return {
        "ingest": {
            "partitions": [DAY],
            "references": {"planes": 3, "airports": 4},
            "ledger": {DAY: {"flights": {**entry, "source": "flights"}, "weather": {**weather, "source": "weather"}}},
            "rows_in": 20,
            "rows_quarantined": 1,
            "missing_files": {},
            "extra_columns": {},
            "budget_failures": [],
            "validation_failures": [],
            "seconds": 1.0,
        },
        "build_features": {
            "table": "features/flights",  # as the job writes it: zone/table
            "partitions": [DAY],
            "rows": {DAY: 9},
            "timeseries_partitions": {"weather": [DAY]},
            "history_partitions": ["2013-07-01"],
            "seconds": 1.0,
        },
        "train": {
            "model_name": "flights_delay",
            "version": "3",
            "run_id": "r",
            "train_partitions": ["2013-06-01"],
            "validation_partitions": ["2013-06-02"],
            "holdout_partitions": ["2013-06-03"],
            "metrics": {},
            "chosen_params": {},
            "trials": 1,
            "reason": "manual",
            "seconds": 1.0,
        },
        "score": {"model_name": "flights_delay", "model_version": "3", "partitions": {DAY: 9}, "shadow_version": None},
    }


def _event(found: lineage.JobLineage) -> dict[str, Any]:
    """An OpenLineage COMPLETE event as the provider's file transport writes it (only the fields read)."""
    as_json = [{"namespace": d.namespace, "name": d.name} for d in found.inputs]
    return {
        "eventType": "COMPLETE",
        "inputs": as_json,
        "outputs": [{"namespace": d.namespace, "name": d.name} for d in found.outputs],
    }


def test_a_prediction_partition_traces_back_to_its_landing_files_and_model_version(tmp_path: Path) -> None:
    cfg = load_config()
    lake = Lake(str(tmp_path / "lake"))
    docs = _docs(tmp_path)
    events = [_event(lineage.job_lineage(cfg, lake, job, doc)) for job, doc in docs.items()]
    root = f"{tmp_path}/lake"
    predictions = DatasetRef("file", f"{root}/predictions/flights/date={DAY}")

    ancestry = set(lineage.trace_back(events, predictions))

    # Written out by hand: the layout of the lake and the inbox, not derived from the module.
    assert DatasetRef("file", f"{root}/features/flights/date={DAY}") in ancestry
    assert DatasetRef("mlflow", "models:/flights_delay/3") in ancestry
    assert DatasetRef("file", f"{root}/bronze/flights/date={DAY}") in ancestry
    assert DatasetRef("file", f"{root}/bronze/weather/date={DAY}") in ancestry
    assert DatasetRef("file", f"{root}/landing/flights/flights_{DAY}.csv") in ancestry
    assert DatasetRef("file", f"{root}/landing/weather/weather_{DAY}.csv") in ancestry
    assert DatasetRef("file", f"{root}/landing/reference/planes.csv") in ancestry
    # the model version leads on to the partitions it was trained on
    assert DatasetRef("file", f"{root}/features/flights/date=2013-06-01") in ancestry
    # quarantine is an output of ingest, never an ancestor of a prediction
    assert not any("quarantine" in ref.name for ref in ancestry)


def test_the_lineage_of_a_day_is_drawn(tmp_path: Path) -> None:
    cfg = load_config()
    root = str(tmp_path / "lake")
    lake = Lake(root)
    events = [_event(lineage.job_lineage(cfg, lake, job, doc)) for job, doc in _docs(tmp_path).items()]
    graph = lineage.lineage_graph(events, lineage.dataset(lake.partition("predictions", "flights", DAY)))

    png = lineage.plot_lineage(graph, root, str(tmp_path / "lineage.png"))

    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # predictions <- features + model <- bronze (+ the model's training features) <- landing files
    assert [len(level) for level in graph.levels][:2] == [1, 2]
    assert lineage.short_name(graph.levels[1][0], root) == f"features/flights/date={DAY}"


def test_ingest_writes_quarantine_only_for_sources_with_quarantined_rows(tmp_path: Path) -> None:
    cfg = load_config()
    lake = Lake(str(tmp_path / "lake"))
    found = lineage.job_lineage(cfg, lake, "ingest", _docs(tmp_path)["ingest"])
    names = [d.name.split("/lake/", 1)[1] for d in found.outputs]
    assert names == [f"bronze/flights/date={DAY}", f"bronze/weather/date={DAY}", f"quarantine/flights/date={DAY}"]


def test_object_store_paths_follow_the_naming_conventions() -> None:
    assert lineage.dataset("s3a://lake/bronze/flights/date=2013-07-01") == DatasetRef(
        "s3://lake", "bronze/flights/date=2013-07-01"
    )
    assert lineage.dataset("file:///srv/lake/x/") == DatasetRef("file", "/srv/lake/x")


def test_an_unknown_job_is_refused() -> None:
    with pytest.raises(ValueError, match="no lineage known for job 'reproduce'"):
        lineage.job_lineage(load_config(), Lake("/tmp/x"), "reproduce", {})


def test_the_spark_operator_hands_its_runs_lineage_to_the_openlineage_provider() -> None:
    from flightdeck.core.lake import write_json
    from flightdeck.ops.dagkit import LAKE, spark_job

    run_id = "scheduled__lineage_test"
    doc = _docs(Path("/unused"))["score"]
    write_json(LAKE.run_doc(run_id, "score"), doc)
    operator = spark_job("score", "score", ["--partition", DAY])

    found = operator.get_openlineage_facets_on_complete(types.SimpleNamespace(run_id=run_id))
    missing = operator.get_openlineage_facets_on_complete(types.SimpleNamespace(run_id="never_ran"))

    assert [(d.namespace, d.name) for d in found.outputs] == [("file", LAKE.partition("predictions", "flights", DAY))]
    assert ("mlflow", "models:/flights_delay/3") in [(d.namespace, d.name) for d in found.inputs]
    assert missing.inputs == [] and missing.outputs == []


def test_the_lineage_command_prints_the_ancestry_and_draws_it(
    lake_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from flightdeck.ops.cli import main

    cfg = load_config()
    lake = Lake(cfg.lake.root)
    events = tmp_path / "events.jsonl"
    lines = [json.dumps(_event(lineage.job_lineage(cfg, lake, job, doc))) for job, doc in _docs(tmp_path).items()]
    events.write_text("\n".join(lines) + "\n")
    png = tmp_path / "day.png"

    assert main(["lineage", "--day", DAY, "--events", str(events), "--png", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"predictions/flights/date={DAY}"
    assert f"      landing/flights/flights_{DAY}.csv" in out
    assert "  models:/flights_delay/3" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    # a day no run wrote is a user error naming it
    assert main(["lineage", "--day", "2013-07-09", "--events", str(events)]) == 2
    assert "no run in" in capsys.readouterr().err
