"""A user error (exit code 2) fails a Spark task at once; any other failure keeps its retries.

The operator runs a real spark-submit of a small application that fails the way a job does
(through ``flightdeck.core.jobargs.run``), once with a user error and once with a bug.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from flightdeck.ops.dagkit import SparkJobOperator, user_error

APP = """
import sys
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.jobargs import run

def main(argv):
    if argv[0] == "user":
        raise FlightdeckError("landing file flights_2013-01-02.csv is empty; re-export it")
    raise RuntimeError("a bug")

sys.exit(run(main, None))
"""


def test_user_error_is_read_from_the_exit_code_and_the_jobs_line() -> None:
    tail = "\nLast spark-submit output:\nWARN x\nflightdeck: error: file f.csv is empty\nINFO shutdown"
    assert user_error(f"Cannot execute: spark-submit app.py. Error code is: 2.{tail}") == "file f.csv is empty"
    assert user_error(f"Cannot execute: spark-submit app.py. Error code is: 1.{tail}") is None
    assert "user error (exit 2)" in str(user_error("Cannot execute: spark-submit app.py. Error code is: 2."))


@pytest.fixture()
def spark_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    conn = {
        "conn_type": "spark",
        "host": "local[1]",
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(conn))


@pytest.mark.spark
def test_spark_task_fails_fast_on_a_user_error_and_keeps_retries_otherwise(tmp_path: Path, spark_conn: None) -> None:
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.sdk.exceptions import AirflowFailException

    app = tmp_path / "job.py"
    app.write_text(APP)

    def task(kind: str) -> SparkJobOperator:
        return SparkJobOperator(task_id=kind, application=str(app), application_args=[kind], conn_id="spark_default")

    with pytest.raises(AirflowFailException, match=r"landing file flights_2013-01-02\.csv is empty.*not retried"):
        task("user").execute({})
    with pytest.raises(AirflowException, match="Error code is: 1") as err:
        task("bug").execute({})
    assert not isinstance(err.value, AirflowFailException)


def test_connect_task_fails_fast_on_a_user_error_keeps_retries_otherwise_and_logs_the_job(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The same rule for a job run as a Python process on Spark Connect (no JVM in the task)."""
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.sdk.exceptions import AirflowFailException

    from flightdeck.ops.dagkit import ConnectJobOperator

    app = tmp_path / "job.py"
    app.write_text(APP.replace("def main(argv):", "def main(argv):\n    print('job says hello', flush=True)"))

    def task(kind: str) -> ConnectJobOperator:
        return ConnectJobOperator(task_id=kind, application=str(app), application_args=[kind])

    with pytest.raises(AirflowFailException, match=r"landing file flights_2013-01-02\.csv is empty.*not retried"):
        task("user").execute({})
    with pytest.raises(AirflowException, match="exit code 1") as err:
        task("bug").execute({})
    assert not isinstance(err.value, AirflowFailException)
    logged = capfd.readouterr()
    assert "job says hello" in logged.out + logged.err  # the job's output is in the task log


def test_short_jobs_go_to_spark_connect_only_when_a_server_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from flightdeck.data.sparkio import REMOTE_ENV
    from flightdeck.ops.dagkit import ConnectJobOperator, spark_job

    monkeypatch.delenv(REMOTE_ENV, raising=False)
    assert isinstance(spark_job("score", "score", []), SparkJobOperator)
    monkeypatch.setenv(REMOTE_ENV, "sc://localhost:15002")
    assert isinstance(spark_job("score", "score", ["--partition", "{{ ds }}"]), ConnectJobOperator)
    assert isinstance(spark_job("evaluate", "evaluate", ["--run-key", "k"]), ConnectJobOperator)  # a Scorer, no JVM
    assert isinstance(spark_job("train", "train", []), SparkJobOperator)  # xgboost.spark needs a SparkContext


APP_OK = APP.replace("def main(argv):\n", 'def main(argv):\n    if argv[0] == "ok":\n        return None\n')


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["spark-submit", "connect"])
def test_announce_runs_in_the_job_task_only_after_the_job_succeeded(
    kind: str, tmp_path: Path, spark_conn: None
) -> None:
    """The bookkeeping folded into a job's task (mark, asset events) runs after exit 0, never after a
    failure; what it returns is the task's result (its XCom)."""
    from airflow.providers.common.compat.sdk import AirflowException

    from flightdeck.ops.dagkit import ConnectJobOperator

    app = tmp_path / "job.py"
    app.write_text(APP_OK)
    announced: list[dict[str, str]] = []

    def announce(context: dict[str, str]) -> str:
        announced.append(context)
        return f"announced {context['run_id']}"

    def task(arg: str) -> SparkJobOperator | ConnectJobOperator:
        if kind == "connect":
            return ConnectJobOperator(task_id=arg, application=str(app), application_args=[arg], announce=announce)
        return SparkJobOperator(
            task_id=arg, application=str(app), application_args=[arg], conn_id="spark_default", announce=announce
        )

    with pytest.raises(AirflowException):
        task("bug").execute({"run_id": "r1"})
    assert announced == []
    assert task("ok").execute({"run_id": "r2"}) == "announced r2"
    assert announced == [{"run_id": "r2"}]
