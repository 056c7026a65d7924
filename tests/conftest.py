"""Shared fixtures: one SparkSession for the whole run, and a throwaway lake/config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session", autouse=True)
def _default_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that names no lake writes to a throwaway one, never to the repository's ``.flightdeck``."""
    key = "FLIGHTDECK__LAKE__ROOT"
    if os.environ.get(key):
        yield
        return
    os.environ[key] = str(tmp_path_factory.mktemp("default-lake"))
    yield
    os.environ.pop(key, None)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession, configured like the jobs' (ANSI on, UTC)."""
    from flightdeck.sparkio import build_session

    session = build_session(
        "flightdeck-tests",
        {
            "spark.master": "local[2]",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
        },
    )
    yield session
    session.stop()


@pytest.fixture()
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh lake folder; the config's lake root points at it."""
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
    return root
