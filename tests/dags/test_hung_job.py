"""A hung Spark job is stopped whole when its task times out, and every Spark task has a timeout.

When ``execution_timeout`` fires, Airflow calls the operator's ``on_kill``. The test runs a real
spark-submit of a PySpark application that starts a Python worker and then sleeps forever,
through a real :class:`SparkJobOperator`, and does what Airflow's timeout does: ``on_kill``.
Every process of the job (the spark-submit that exec'd into the driver JVM, the Python driver,
the PySpark workers) must be gone within seconds, and ``execute`` must have failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from flightdeck.ops.dagkit import CFG, SPARK_CONN_ID, SparkJobOperator

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"

HUNG_APP = """
import os
import sys
import time

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("hung").getOrCreate()
# a Python task: the JVM starts a PySpark worker (kept for reuse) besides this driver
assert spark.sparkContext.parallelize([1], 1).map(lambda x: x + 1).collect() == [2]
ready = sys.argv[1]
with open(ready + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.replace(ready + ".tmp", ready)
while True:  # hangs, as a job stuck on a lock or a dead store does
    time.sleep(60)
"""


@pytest.fixture()
def spark_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    conn = {
        "conn_type": "spark",
        "host": "local[1]",
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(conn))


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _job_jvm(app: Path) -> psutil.Process:
    """The java process whose command line names the application (found from outside the operator)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "java" and str(app) in cmdline:
            return proc
    raise AssertionError(f"no java process runs {app}")


@pytest.mark.spark
def test_on_kill_stops_every_process_of_a_hung_spark_job(tmp_path: Path, spark_conn: None) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    app = tmp_path / "hung_job.py"
    app.write_text(HUNG_APP)
    ready = tmp_path / "ready"
    # as dagkit.spark_job builds it, with an application from tmp and a small driver
    conf = {**CFG.spark.conf, "spark.driver.memory": "512m", "spark.ui.enabled": "false"}
    task = SparkJobOperator(
        task_id="hung",
        application=str(app),
        application_args=[str(ready)],
        conn_id=SPARK_CONN_ID,
        name="flightdeck-hung",
        conf=conf,
        verbose=False,
        execution_timeout=dt.timedelta(minutes=CFG.timeouts.spark_job_minutes),
    )
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            task.execute({})
            outcome["error"] = None
        except BaseException as err:
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert worker.is_alive(), f"the job ended before it hung: {outcome.get('error')!r}"
            assert time.monotonic() < deadline, "the hung job did not start within 180 s"
            time.sleep(0.5)
        jvm = _job_jvm(app)
        tree = [jvm, *jvm.children(recursive=True)]
        driver = psutil.Process(int(ready.read_text()))
        assert driver in tree
        assert any("pyspark" in " ".join(p.cmdline()) and p != driver for p in tree if not _gone(p)), (
            "no PySpark worker started"
        )
        spark_submit = psutil.Process(task._hook._submit_sp.pid)  # type: ignore[union-attr]
        tree.append(spark_submit)

        task.on_kill()  # what Airflow does when execution_timeout fires

        deadline = time.monotonic() + 20
        while any(not _gone(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [(p.pid, " ".join(p.cmdline())[:120]) for p in tree if not _gone(p)]
        assert survivors == [], f"processes of the hung job survived on_kill: {survivors}"
        worker.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not worker.is_alive(), "execute() did not return after on_kill"
        assert isinstance(outcome["error"], AirflowException), outcome["error"]
    finally:
        for proc in tree:  # never leave a hung JVM or Python driver behind, pass or fail
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        worker.join(timeout=10)


def test_every_spark_task_has_the_spark_job_timeout() -> None:
    """Every Spark task of every DAG times out after ``timeouts.spark_job_minutes``.

    (That every daily DAG has a ``dagrun_timeout`` and a deadline alert, and every task of them
    an ``execution_timeout``, is checked in test_dag_integrity.py.)
    """
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    expected = dt.timedelta(minutes=CFG.timeouts.spark_job_minutes)
    spark_tasks = {
        (dag_id, task.task_id): task.execution_timeout
        for dag_id, dag in bag.dags.items()
        for task in dag.tasks
        if isinstance(task, SparkSubmitOperator)
    }
    assert len(spark_tasks) >= 5, sorted(spark_tasks)
    wrong = {key: timeout for key, timeout in spark_tasks.items() if timeout != expected}
    assert wrong == {}, f"Spark tasks without execution_timeout = {expected}: {wrong}"
