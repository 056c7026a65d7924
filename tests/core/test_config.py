"""Configuration: the default loads, overrides apply, errors name the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

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
    assert a.dataset.partition_start == dt.date(2013, 1, 1)
