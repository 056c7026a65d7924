"""After the demo day, a real Prometheus (Debian's) scrapes the running stack's
``/flightdeck/metrics`` (the plugin's app in Airflow's api-server, behind its login, with a token
from ``deploy/prometheus/airflow_token.py``) and answers with the day's quarantine count, the
PSI of its most drifted feature, the champion version and the freshness of its predictions, each
compared with what the lake and the registry say (read here without the metrics code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _quarantined_rows(lake: Any, sources: list[str], day: str) -> int:
    import pyarrow.dataset as ds

    total = 0
    for source in sources:
        if lake.is_committed("quarantine", source, day):
            total += ds.dataset(lake.partition("quarantine", source, day), format="parquet").count_rows()
    return total


def _drift_summary(lake: Any, day: str) -> dict[str, Any]:
    from flightdeck.core.lake import read_json

    found = [read_json(str(p)) for p in sorted(Path(lake.path("runs")).glob("*/detect_drift.json"))]
    return [doc for doc in found if doc["date"] == day][-1]


def test_prometheus_scrapes_the_stacks_metrics_after_a_demo_day(stack, demo_result, tmp_path: Path) -> None:
    import promkit

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.model import registry

    if not Path(promkit.PROMETHEUS).is_file():
        pytest.fail("Debian's prometheus is not installed: run `make prometheus` (make test does)")
    cfg = load_config()
    lake = Lake(cfg.lake.root)
    day = demo_result["day"]
    token = tmp_path / "token" / "airflow.jwt"
    env = {**stack.environ(), "AIRFLOW_ADMIN_PASSWORD": stack.admin_password()}
    script = ROOT / "deploy" / "prometheus" / "airflow_token.py"
    args = [sys.executable, str(script), "--url", stack.airflow_url, "--out", str(token), "--once"]
    subprocess.run(args, env=env, check=True, timeout=60)
    assert promkit.get(f"{stack.airflow_url}/flightdeck/metrics")[0] == 401  # not without the login

    sources = [s.name for s in cfg.dataset.daily_sources]
    quarantined = _quarantined_rows(lake, sources, day)
    psi = {k: v for k, v in _drift_summary(lake, day)["psi"].items() if v is not None}
    top_feature = max(psi, key=lambda k: psi[k])
    champion = registry.champion_version(cfg.model.name)

    with promkit.running(tmp_path, stack.airflow_url.removeprefix("http://"), token) as prometheus:
        query = prometheus.query
        rows = query(f'sum(flightdeck_ingest_rows_quarantined{{partition="{day}"}})')
        assert float(rows[0]["value"][1]) == quarantined > 0
        top = query("topk(1, flightdeck_feature_psi)")
        assert top[0]["metric"]["feature"] == top_feature and top[0]["metric"]["partition"] == day
        assert float(top[0]["value"][1]) == pytest.approx(psi[top_feature])
        assert float(query("flightdeck_champion_version")[0]["value"][1]) == float(champion)
        fresh = query("flightdeck_predictions_freshness_seconds")
        assert fresh[0]["metric"]["partition"] == day and float(fresh[0]["value"][1]) >= 0
