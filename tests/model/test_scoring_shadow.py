"""Shadow scoring is off by default and picks the challenger only when it differs from the champion."""

from __future__ import annotations

import pytest

from flightdeck.core.config import load_config
from flightdeck.model import registry
from flightdeck.model.inference import shadow_table, shadow_version


def test_shadow_scoring_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config()
    assert cfg.scoring.shadow is False
    assert shadow_version(cfg, "3") == ""  # off: never asks the registry
    on = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"shadow": True})})
    aliases = {"challenger": "4"}
    monkeypatch.setattr(registry, "alias_version", lambda name, alias, **_: aliases.get(alias))
    assert shadow_version(on, "3") == "4"
    assert shadow_version(on, "4") == ""  # the challenger is the champion: nothing to compare
    aliases.clear()
    assert shadow_version(on, "3") == ""
    assert shadow_table("flights") == "flights_shadow"
