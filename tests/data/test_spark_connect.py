"""The short jobs on the embedded runtime's Spark Connect server give what spark-submit gives.

One real Spark Connect server (started the way ``flightdeck up`` starts it, token and all, with
the warm job runner beside it) serves a real day through jobs/ingest.py, jobs/build_features.py
and jobs/validate_features.py, each forked from the runner as a task's would be; the same day
through the same jobs on a classic session (the suite's) must give the same bronze, quarantine
and features rows. A saved pipeline scores a Connect DataFrame exactly as
it scores a classic one. A job pointed at a server that is not there fails within seconds
with a message that names it, and a client without the token is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import fit_small_pipeline, free_port, spark_home

from flightdeck.core.config import HOME_ENV, JOBS_DIR, load_config
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import landing
from flightdeck.data.sparkio import REMOTE_ENV, connect_session, is_connect, read_partitions
from flightdeck.ops.jobrunner import RUNNER_ENV, run_job

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DAYS = ("2013-01-01", "2013-01-02")
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
# PySpark marks a process that created a Connect session as Connect-only (functions then build
# Connect columns): the jobs run in a process of their own, these tests in the suite's process.
CONNECT_MODE = "SPARK_CONNECT_MODE_ENABLED"


@pytest.fixture(autouse=True)
def _classic_again_afterwards() -> Iterator[None]:
    yield
    os.environ.pop(CONNECT_MODE, None)


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The runtime's spark-connect and job-runner services; yields the client environment (URL, token,
    runner socket and the rest of what a task gets)."""
    from flightdeck.ops.runtime import JOB_RUNNER, SPARK_CONNECT, Runtime

    rt = Runtime(
        state=tmp_path_factory.mktemp("connect-state"),
        airflow_port=free_port(),
        mlflow_port=free_port(),
        spark_connect=True,
        spark_connect_port=free_port(),
    )
    rt.start(services=(SPARK_CONNECT, JOB_RUNNER), timeout=240)
    env = rt.environ()
    try:
        yield {key: env[key] for key in (REMOTE_ENV, TOKEN_ENV, RUNNER_ENV, HOME_ENV)}
    finally:
        assert rt.stop() == [JOB_RUNNER, SPARK_CONNECT]


def _rows_digest(df: Any, root: str) -> str:
    """SHA-256 of the schema and the sorted rows (the order a write happens to produce is no content);
    quarantine rows name their landing file, compared relative to the lake's root."""
    rows = sorted(repr(tuple(r)).replace(root, "<lake>") for r in df.collect())
    schema = ",".join(f"{f.name}:{f.dataType.simpleString()}" for f in df.schema.fields)
    return hashlib.sha256((schema + "\n" + "\n".join(rows)).encode()).hexdigest()


JOBS = (
    ("ingest", ["--partition", f"{DAYS[0]}..{DAYS[1]}"]),
    ("build_features", ["--partition", DAYS[1], "--run-key", "r1"]),
    ("validate_features", ["--partition", DAYS[1]]),
)


def _landed(root: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
    cfg = load_config()
    lake = Lake(str(root))
    landing.land_reference(cfg, lake)
    landing.land_range(cfg, lake, *DAYS)
    return lake


def _day_through_the_jobs(root: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    lake = _landed(root, monkeypatch)
    for job, args in JOBS:
        load_job(job).main(args)
    return lake


def _day_through_the_runner(root: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]) -> Lake:
    """The jobs as the runtime's tasks run them: forked from the warm job runner, on Spark Connect."""
    lake = _landed(root, monkeypatch)
    env = dict(os.environ) | server
    env.pop(CONNECT_MODE, None)
    for job, args in JOBS:
        lines: list[str] = []
        code = run_job(server[RUNNER_ENV], [sys.executable, str(JOBS_DIR / f"{job}.py"), *args], lines.append, env=env)
        assert code == 0, f"{job} failed on the runner:\n" + "\n".join(lines[-40:])
        assert not any("Traceback" in line for line in lines), "\n".join(lines)
    return lake


def test_a_day_through_the_short_jobs_on_spark_connect_equals_spark_submit(
    spark: Any, connect_server: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classic = _day_through_the_jobs(tmp_path / "classic", monkeypatch)
    remote = _day_through_the_runner(tmp_path / "connect", monkeypatch, connect_server)
    assert CONNECT_MODE not in os.environ  # the jobs ran in processes of their own

    for zone, table, days in (
        ("bronze", "flights", DAYS),
        ("bronze", "weather", DAYS),
        ("quarantine", "flights", DAYS),
        ("features", "flights", DAYS[1:]),
    ):
        for day in days:
            got = _rows_digest(read_partitions(spark, remote, zone, table, [day]), remote.root)
            want = _rows_digest(read_partitions(spark, classic, zone, table, [day]), classic.root)
            assert got == want, f"{zone}/{table} {day} differs between Spark Connect and spark-submit"
    for lake in (classic, remote):
        report = Path(lake.root) / "monitoring" / "validation" / "features" / f"{DAYS[1]}.json"
        assert '"success": true' in report.read_text()
    # no staging or trash left by the client-side commit
    leftovers = [p for p in (tmp_path / "connect").rglob("*") if p.name in {"_staging", "_trash"} and any(p.iterdir())]
    assert leftovers == []


def test_a_saved_pipeline_scores_a_connect_dataframe_as_a_classic_one(
    spark: Any, connect_server: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flightdeck.model.inference import with_probability
    from flightdeck.model.saved import read_saved

    model, rows = fit_small_pipeline(spark, "binary")
    model.write().save(str(tmp_path / "sparkml"))
    saved = read_saved(tmp_path / "sparkml")
    want = with_probability(saved, rows, "p").select("rid", "p").toPandas().sort_values("rid")
    monkeypatch.setenv(TOKEN_ENV, connect_server[TOKEN_ENV])
    session = connect_session(connect_server[REMOTE_ENV], "flightdeck-tests-connect")
    assert is_connect(session) and not is_connect(spark)

    remote_rows = session.createDataFrame(rows.toPandas())
    got = with_probability(saved, remote_rows, "p").select("rid", "p").toPandas().sort_values("rid")
    assert np.allclose(got["p"].to_numpy(), want["p"].to_numpy(), rtol=0, atol=1e-12)


def test_a_client_without_the_token_is_refused(connect_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    with pytest.raises(FlightdeckError, match="cannot use the Spark Connect server"):
        connect_session(connect_server[REMOTE_ENV], "flightdeck-tests-intruder")


def test_a_job_pointed_at_no_server_fails_fast_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sc://localhost:{free_port()}"
    monkeypatch.setenv(TOKEN_ENV, "t")
    started = time.monotonic()
    with pytest.raises(FlightdeckError, match=rf"{url}.*flightdeck up") as err:
        connect_session(url, "flightdeck-tests-nowhere")
    assert time.monotonic() - started < 60, "the client's default retries would wait about ten minutes"
    assert REMOTE_ENV in str(err.value)
    assert os.environ.get(REMOTE_ENV) is None  # nothing leaked into this process's jobs


def test_a_job_spark_submit_launches_runs_in_its_own_jvm_beside_a_connect_server(
    connect_server: dict[str, str], tmp_path: Path
) -> None:
    """Training keeps spark-submit while the runtime exports the Connect URL to every task."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            from flightdeck.data.sparkio import build_session, is_connect
            spark = build_session("flightdeck-tests-submitted")
            print("RESULT", is_connect(spark), spark.sparkContext.master, spark.range(3).count())
            """
        )
    )
    env = os.environ | connect_server | {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop(CONNECT_MODE, None)
    submit = spark_home() / "bin" / "spark-submit"
    command = [str(submit), "--master", "local[1]", str(script)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT False local[1] 3" in done.stdout
