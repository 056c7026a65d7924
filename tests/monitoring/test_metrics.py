"""The metrics collector over a small lake written by hand (tests/metrics_lake.py): every exported
value equals what the documents say, the exposition parses, one unreadable part degrades alone,
and an S3 lake (moto) gives the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
from metrics_lake import DAY1, DAY2, EXPECTED, MODEL, build_metrics_lake
from prometheus_client.parser import text_string_to_metric_families

from flightdeck.core.config import PipelineConfig, load_config
from flightdeck.core.lake import Lake
from flightdeck.monitoring.metrics import METRICS, LakeCollector, exposition, registry_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture()
def cfg(tmp_path: Path) -> PipelineConfig:
    return load_config(environ={"FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake")})


def scrape(cfg: PipelineConfig, lake: Lake, now: float = 0.0, accept: str | None = None) -> Samples:
    body, content_type = exposition(registry_for(LakeCollector(cfg, lake=lake, clock=lambda: now)), accept)
    assert content_type.startswith("text/plain; version=0.0.4") if not accept else "openmetrics" in content_type
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_every_value_is_what_the_lake_documents_say(cfg: PipelineConfig, tmp_path: Path) -> None:
    assert cfg.model.name == MODEL
    lake = build_metrics_lake(tmp_path / "lake")
    now = EXPECTED["commit_ts"] + 90.0
    s = scrape(cfg, lake, now)

    for (day, source), n in EXPECTED["quarantined"].items():
        assert value(s, "flightdeck_ingest_rows_quarantined", source=source, partition=day) == n
    for (day, source), n in EXPECTED["rows_in"].items():
        assert value(s, "flightdeck_ingest_rows_in", source=source, partition=day) == n
    assert value(s, "flightdeck_ingest_rows_valid", source="flights", partition=DAY2) == 975

    for stage, (count, total) in EXPECTED["wall_seconds"].items():
        assert value(s, "flightdeck_job_wall_seconds_count", stage=stage) == count
        assert value(s, "flightdeck_job_wall_seconds_sum", stage=stage) == pytest.approx(total)
    assert value(s, "flightdeck_job_last_wall_seconds", stage="ingest") == EXPECTED["last_ingest_seconds"]
    assert value(s, "flightdeck_job_last_cpu_seconds", stage="ingest") == EXPECTED["last_ingest_cpu_seconds"]
    assert ("flightdeck_job_last_cpu_seconds", frozenset({("stage", "score")})) not in s  # not recorded there
    assert not any(name == "flightdeck_job_wall_seconds_count" and ("stage", "train") in lbl for name, lbl in s)

    assert value(s, "flightdeck_scored_rows", scope="all", partition="") == EXPECTED["scored_rows_all"]
    assert value(s, "flightdeck_scored_rows", scope="newest", partition=DAY2) == EXPECTED["scored_rows_newest"]
    assert value(s, "flightdeck_scoring_rows_per_second", model_version="3") == pytest.approx(EXPECTED["throughput"])

    for feature, psi in EXPECTED["feature_psi"].items():
        assert value(s, "flightdeck_feature_psi", feature=feature, partition=DAY2) == pytest.approx(psi)
    assert value(s, "flightdeck_prediction_psi", partition=DAY2) == pytest.approx(EXPECTED["prediction_psi"])
    assert value(s, "flightdeck_drifted_share", partition=DAY2) == pytest.approx(EXPECTED["drifted_share"])
    assert ("flightdeck_feature_psi", frozenset({("feature", "wx_temp"), ("partition", DAY1)})) not in s
    # Labels arrived for DAY1 only: the live metric is that day's, beside the holdout value of v3.
    assert value(s, "flightdeck_live_metric", metric="roc_auc", partition=DAY1) == pytest.approx(0.71)
    assert value(s, "flightdeck_holdout_metric", metric="roc_auc", model_version="3") == pytest.approx(0.76)

    assert value(s, "flightdeck_gate_decisions_total", decision="pass") == EXPECTED["gate"]["pass"]
    assert value(s, "flightdeck_gate_decisions_total", decision="fail") == EXPECTED["gate"]["fail"]
    assert value(s, "flightdeck_champion_version", model=MODEL) == EXPECTED["champion"]
    assert value(s, "flightdeck_challenger_version", model=MODEL) == EXPECTED["challenger"]

    ts = value(s, "flightdeck_predictions_last_commit_timestamp_seconds", partition=DAY2)
    assert ts == pytest.approx(EXPECTED["commit_ts"], abs=1e-3)
    assert value(s, "flightdeck_predictions_freshness_seconds", partition=DAY2) == pytest.approx(90.0, abs=1e-3)

    assert value(s, "flightdeck_retrain_requests") == EXPECTED["requests"]
    assert value(s, "flightdeck_retrain_requests_open") == EXPECTED["requests_open"]
    assert {lbl for name, lbl in s if name == "flightdeck_metrics_errors" and s[(name, lbl)] != 0} == set()
    assert all(name.startswith("flightdeck_") for name, _ in s)


def test_openmetrics_when_the_scraper_asks_for_it(cfg: PipelineConfig, tmp_path: Path) -> None:
    lake = build_metrics_lake(tmp_path / "lake")
    body, content_type = exposition(registry_for(LakeCollector(cfg, lake=lake)), "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    assert f'flightdeck_champion_version{{model="{MODEL}"}} 3.0'.encode() in body


def test_an_unreadable_part_degrades_alone(cfg: PipelineConfig, tmp_path: Path) -> None:
    lake = build_metrics_lake(tmp_path / "lake")
    Path(lake.drift_report(DAY2)).write_text("{not json")
    Path(lake.run_doc("manual__train-2", "gate")).write_text('{"passed": "no idea"}')  # invalid: skipped
    s = scrape(cfg, lake)
    assert value(s, "flightdeck_metrics_errors", part="drift") == 1
    assert value(s, "flightdeck_metrics_errors", part="ingest") == 0
    assert not any(name == "flightdeck_feature_psi" for name, _ in s)
    assert value(s, "flightdeck_gate_decisions_total", decision="pass") == 1
    assert value(s, "flightdeck_gate_decisions_total", decision="fail") == 0
    assert value(s, "flightdeck_champion_version", model=MODEL) == 3
    assert value(s, "flightdeck_ingest_rows_quarantined", source="flights", partition=DAY2) == 25


def test_an_empty_lake_exports_zeros_and_no_values(cfg: PipelineConfig, tmp_path: Path) -> None:
    s = scrape(cfg, Lake(str(tmp_path / "empty")))
    assert value(s, "flightdeck_retrain_requests") == 0
    assert value(s, "flightdeck_retrain_requests_open") == 0
    assert value(s, "flightdeck_gate_decisions_total", decision="pass") == 0
    assert not any(name in ("flightdeck_champion_version", "flightdeck_scored_rows") for name, _ in s)
    assert all(v == 0 for (name, _), v in s.items() if name == "flightdeck_metrics_errors")


def test_every_declared_family_is_documented_and_prefixed() -> None:
    assert all(name.startswith("flightdeck_") and help_text for name, help_text in METRICS.items())


def test_the_same_values_from_a_lake_on_s3(cfg: PipelineConfig, tmp_path: Path, s3_bucket: str) -> None:
    """The collector reads an S3 lake (moto's real HTTP API) as it reads a local one."""
    import time

    import boto3

    local = build_metrics_lake(tmp_path / "lake")
    client = boto3.client("s3")
    for path in sorted(Path(local.root).rglob("*")):
        if path.is_file():
            client.upload_file(str(path), s3_bucket, f"lake/{path.relative_to(local.root).as_posix()}")
    uploaded = time.time()
    s = scrape(cfg, Lake(f"s3a://{s3_bucket}/lake"), now=uploaded + 60.0)
    assert {lbl for name, lbl in s if name == "flightdeck_metrics_errors" and s[(name, lbl)] != 0} == set()
    assert value(s, "flightdeck_ingest_rows_quarantined", source="flights", partition=DAY2) == 25
    assert value(s, "flightdeck_scored_rows", scope="all", partition="") == EXPECTED["scored_rows_all"]
    assert value(s, "flightdeck_feature_psi", feature="wx_temp", partition=DAY2) == pytest.approx(0.62)
    assert value(s, "flightdeck_champion_version", model=MODEL) == EXPECTED["champion"]
    assert value(s, "flightdeck_gate_decisions_total", decision="pass") == 1
    assert value(s, "flightdeck_job_wall_seconds_count", stage="ingest") == 2
    assert value(s, "flightdeck_retrain_requests_open") == EXPECTED["requests_open"]
    # On S3 the commit time is the marker's LastModified (the upload), by the store's clock.
    committed = value(s, "flightdeck_predictions_last_commit_timestamp_seconds", partition=DAY2)
    assert uploaded - 120 <= committed <= uploaded + 5
    assert value(s, "flightdeck_predictions_freshness_seconds", partition=DAY2) == pytest.approx(
        uploaded + 60.0 - committed
    )
