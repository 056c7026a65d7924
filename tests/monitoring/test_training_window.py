"""The training window rule used by the training DAG."""

from __future__ import annotations

import pytest

from flightdeck.core.config import load_config
from flightdeck.monitoring.retrain import RetrainError, training_window


def test_retrain_request_window_ends_at_its_partition() -> None:
    cfg = load_config(environ={"FLIGHTDECK__MODEL__RETRAIN_WINDOW_DAYS": "30"})
    window = training_window("2013-07-01", {}, {"reason": "4 of 20 features drifted"}, cfg)
    assert window == {"train_start": "2013-06-02", "train_end": "2013-07-01", "reason": "4 of 20 features drifted"}


def test_manual_window_from_params_with_config_defaults() -> None:
    cfg = load_config(environ={})
    assert training_window(None, {}, None, cfg)["train_start"] == "2013-01-01"
    window = training_window(None, {"train_start": "2013-02-01", "train_end": "2013-02-28", "reason": "x"}, None, cfg)
    assert (window["train_start"], window["train_end"], window["reason"]) == ("2013-02-01", "2013-02-28", "x")


def test_manual_window_must_be_ordered() -> None:
    with pytest.raises(RetrainError, match="before"):
        training_window(None, {"train_start": "2013-03-01", "train_end": "2013-02-01"}, None, load_config(environ={}))
