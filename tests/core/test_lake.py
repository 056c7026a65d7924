"""Lake paths: partitions, specs, and nothing escaping the root."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flightdeck.core.lake import Lake, LakeError, list_docs, parse_partitions, read_json, write_json


def test_partition_specs() -> None:
    assert parse_partitions("2013-07-01") == [dt.date(2013, 7, 1)]
    assert parse_partitions("2013-07-03,2013-07-01") == [dt.date(2013, 7, 1), dt.date(2013, 7, 3)]
    assert len(parse_partitions("2013-01-30..2013-02-02")) == 4


@pytest.mark.parametrize("spec", ["2013-13-01", "yesterday", "2013-07-02..2013-07-01", ""])
def test_bad_partition_specs(spec: str) -> None:
    with pytest.raises(LakeError):
        parse_partitions(spec)


def test_paths_stay_under_the_root() -> None:
    lake = Lake("/data/lake")
    assert lake.partition("bronze", "flights", "2013-07-01") == "/data/lake/bronze/flights/date=2013-07-01"
    assert lake.landing_file("flights", "2013-07-01") == "/data/lake/landing/flights/flights_2013-07-01.csv"
    for bad in ("..", "../etc", "a/b", ""):
        with pytest.raises(LakeError):
            lake.path("runs", bad)
    with pytest.raises(LakeError):
        lake.table("nowhere", "flights")


def test_run_docs_sanitise_airflow_run_ids(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    path = lake.run_doc("manual__2026-11-23T11:43:32.213677+00:00", "train")
    assert path.startswith(str(tmp_path)) and ":" not in Path(path).parent.name
    write_json(path, {"version": "3"})
    assert read_json(path) == {"version": "3"}


def test_committed_partitions_need_the_marker(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    done = Path(lake.partition("features", "flights", "2013-07-01"))
    done.mkdir(parents=True)
    (done / "_SUCCESS").touch()
    Path(lake.partition("features", "flights", "2013-07-02")).mkdir(parents=True)
    assert lake.committed_partitions("features", "flights") == [dt.date(2013, 7, 1)]


def test_list_docs_sorted(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    for day in ("2013-07-03", "2013-07-01"):
        write_json(lake.path("monitoring", "retrain_requests", f"{day}.json"), {"partition": day})
    docs = list_docs(lake.path("monitoring", "retrain_requests"))
    assert [read_json(d)["partition"] for d in docs] == ["2013-07-01", "2013-07-03"]
