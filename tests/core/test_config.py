"""Configuration: the default loads, overrides apply, errors name the key."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightdeck.core.config import ConfigError, load_config


def test_default_config_describes_flights() -> None:
    cfg = load_config(environ={})
    assert cfg.dataset.entity.name == "flights"
    assert "carrier" in cfg.features.categorical
    assert cfg.label.name == "late_arrival"
    assert Path(cfg.lake.root).is_absolute()


def test_environment_overrides_nested_keys() -> None:
    cfg = load_config(environ={"FLIGHTDECK__GATE__MIN_AUC": "0.7", "FLIGHTDECK__MODEL__PARAMS__MAX_DEPTH": "3"})
    assert cfg.gate.min_auc == 0.7
    assert cfg.model.params["max_depth"] == 3


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"gate\.min_auc"):
        load_config(environ={"FLIGHTDECK__GATE__MIN_AUC": "1.5"})


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "include/config/flights.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("gate:\n", "gate:\n  min_acu: 0.5\n"))
    with pytest.raises(ConfigError, match=r"gate\.min_acu"):
        load_config(bad, environ={})


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FLIGHTDECK_CONFIG"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_window_order_is_checked() -> None:
    with pytest.raises(ConfigError, match="train_end"):
        load_config(environ={"FLIGHTDECK__MODEL__TRAIN_END": "2012-12-31"})


def test_fingerprint_changes_with_config() -> None:
    a = load_config(environ={})
    b = load_config(environ={"FLIGHTDECK__GATE__MIN_AUC": "0.7"})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == load_config(environ={}).fingerprint()
    assert a.calendar.start == dt.date(2013, 1, 1)


FLIGHTS = Path(__file__).resolve().parents[2] / "include/config/flights.yaml"


def _variant(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    raw = yaml.safe_load(FLIGHTS.read_text())
    edit(raw)
    out = tmp_path / "variant.yaml"
    out.write_text(yaml.safe_dump(raw))
    return out


def _entity_columns(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return raw["dataset"]["entity"]["columns"]


def test_partition_date_from_a_date_column(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        _entity_columns(raw).append({"name": "flight_date", "type": "date"})
        raw["dataset"]["entity"]["partition_date"] = {"column": "flight_date"}

    spec = load_config(_variant(tmp_path, edit), environ={}).dataset.entity.partition_date
    assert (spec.kind, spec.columns) == ("date", ["flight_date"])


def test_partition_date_from_a_timestamp_needs_a_known_zone(tmp_path: Path) -> None:
    def edit(zone: str | None) -> Callable[[dict[str, Any]], None]:
        def apply(raw: dict[str, Any]) -> None:
            raw["dataset"]["entity"]["partition_date"] = {"timestamp": "time_hour"} | (
                {"timezone": zone} if zone else {}
            )

        return apply

    spec = load_config(_variant(tmp_path, edit("America/New_York")), environ={}).dataset.entity.partition_date
    assert (spec.kind, spec.columns, spec.timezone) == ("timestamp", ["time_hour"], "America/New_York")
    with pytest.raises(ConfigError, match=r"dataset\.entity\.partition_date.*needs the time zone"):
        load_config(_variant(tmp_path, edit(None)), environ={})
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        load_config(_variant(tmp_path, edit("Mars/Olympus")), environ={})


def test_partition_date_column_of_the_wrong_type_names_it(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["dataset"]["entity"]["partition_date"] = {"column": "carrier"}

    with pytest.raises(ConfigError, match=r"partition_date column\(s\) \['carrier'\] have type \['string'\]"):
        load_config(_variant(tmp_path, edit), environ={})


def test_two_partition_date_forms_are_refused(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["dataset"]["entity"]["partition_date"] = {"column": "time_hour", "year": "year"}

    with pytest.raises(ConfigError, match="give exactly one form"):
        load_config(_variant(tmp_path, edit), environ={})


def test_user_column_named_like_a_platform_column_is_refused_with_the_fix(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        _entity_columns(raw).append({"name": "date", "type": "timestamp"})

    with pytest.raises(ConfigError) as err:
        load_config(_variant(tmp_path, edit), environ={})
    message = str(err.value)
    assert "column 'date' of source 'flights' collides with the platform's column 'date'" in message
    assert "{name: flights_date, source: date, type: timestamp}" in message


def test_renamed_column_keeps_its_file_header(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        _entity_columns(raw).append({"name": "event_date", "source": "date", "type": "timestamp"})

    entity = load_config(_variant(tmp_path, edit), environ={}).dataset.entity
    assert entity.headers["event_date"] == "date"
    assert entity.headers["carrier"] == "carrier"


def test_feature_output_named_like_a_platform_column_is_refused(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["features"]["derived"]["prediction"] = "1"

    with pytest.raises(ConfigError, match=r"features\.derived\.prediction: the output column 'prediction' collides"):
        load_config(_variant(tmp_path, edit), environ={})


def test_calendar_comes_from_config_and_is_checked() -> None:
    cfg = load_config(environ={"FLIGHTDECK__CALENDAR__START": "2026-12-02", "FLIGHTDECK__CALENDAR__END": "null"})
    assert cfg.calendar.start == dt.date(2026, 12, 2) and cfg.calendar.end is None
    assert cfg.calendar.contains(dt.date(2030, 1, 1)) and not cfg.calendar.contains(dt.date(2026, 12, 1))
    with pytest.raises(ConfigError, match=r"calendar\.end 2012-01-01 is before calendar\.start"):
        load_config(environ={"FLIGHTDECK__CALENDAR__END": "2012-01-01"})
    with pytest.raises(ConfigError, match=r"calendar\.timezone"):
        load_config(environ={"FLIGHTDECK__CALENDAR__TIMEZONE": "Nowhere/Else"})


def test_source_package_is_optional(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        del raw["dataset"]["source_package"]
        del raw["demo"]

    cfg = load_config(_variant(tmp_path, edit), environ={})
    assert cfg.dataset.source_package is None and cfg.demo is None


def test_no_dataset_date_in_dags_or_library_code() -> None:
    root = Path(__file__).resolve().parents[2]
    files = [*root.glob("dags/*.py"), *(root / "include/flightdeck").rglob("*.py")]
    found = [
        f"{f.relative_to(root)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if re.search(r"\b2013\b", line)
    ]
    assert len(files) > 40
    assert not found, f"dataset dates belong in the config, found in code at {found}"


def test_todo_left_by_init_is_refused_naming_the_key(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["label"]["expression"] = "TODO: a SQL expression giving 1 for the positive class"

    with pytest.raises(ConfigError, match=r"label\.expression: still a 'TODO: \.\.\.' choice left by flightdeck init"):
        load_config(_variant(tmp_path, edit), environ={})
