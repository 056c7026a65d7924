"""Building blocks for the DAG files: assets, default arguments, the Spark task factory.

DAG files stay wiring only; they import this module at parse time, so it imports
nothing heavier than the Airflow SDK and the Spark provider's operator.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk import Asset, AssetWatcher, BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.core.config import JOBS_DIR, PipelineConfig, config_path, load_config
from flightdeck.core.lake import Lake
from flightdeck.data.sparkio import REMOTE_ENV
from flightdeck.ops.inbox_watch import DayFilesTrigger, InboxTrigger
from flightdeck.ops.notifiers import deadline_missed, on_failure

SPARK_CONN_ID = "spark_default"
OWNER = "flightdeck"

CFG: PipelineConfig = load_config()
LAKE = Lake(CFG.lake.root)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    # Retries are for transient faults; a user error fails at once (see SparkJobOperator).
    "retries": 1,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": False,
    # A hung task fails (then retries) instead of stalling every later day.
    "execution_timeout": dt.timedelta(minutes=CFG.timeouts.task_minutes),
    # every task failure (after its retries) is an alert: log, JSON lines, webhook/SMTP by config
    "on_failure_callback": on_failure(),
}


def _midnight(day: dt.date | None, zone: str) -> dt.datetime | None:
    return None if day is None else pendulum.datetime(day.year, day.month, day.day, tz=zone)


# The calendar of every DAG comes from the config (calendar.*): no dataset date in code.
START = _midnight(CFG.calendar.start, CFG.calendar.timezone)
END = _midnight(CFG.calendar.end, CFG.calendar.timezone)


def history_default(cfg: PipelineConfig) -> tuple[str, str]:
    """The bootstrap's default history: the demo's first range, else the calendar's first day."""
    if cfg.demo is not None:
        first, last = cfg.demo.history[0].split("..")
        return first, last
    return cfg.calendar.start.isoformat(), cfg.calendar.start.isoformat()


def _asset_uri(lake_path: str) -> str:
    """The asset URI of a lake path: ``file://`` for a local folder, ``s3://`` for an ``s3a://`` one."""
    if "://" not in lake_path:
        lake_path = "file://" + lake_path
    return lake_path.replace("s3a://", "s3://")


ENTITY = CFG.dataset.entity.name
BRONZE = Asset(name=f"bronze_{ENTITY}", uri=_asset_uri(LAKE.table("bronze", ENTITY)), group="flightdeck")
FEATURES = Asset(name=f"features_{ENTITY}", uri=_asset_uri(LAKE.table("features", ENTITY)), group="flightdeck")
PREDICTIONS = Asset(name=f"predictions_{ENTITY}", uri=_asset_uri(LAKE.table("predictions", ENTITY)), group="flightdeck")
RETRAIN_REQUEST = Asset(name="retrain_request", uri=_asset_uri(LAKE.retrain_requests()), group="flightdeck")
# Events of the landing inbox come from the watcher in the triggerer (late and re-delivered files).
INBOX = Asset(
    name="landing_inbox",
    uri=_asset_uri(LAKE.path("landing")),
    group="flightdeck",
    watchers=[
        AssetWatcher(
            name="flightdeck_inbox_watcher",
            trigger=InboxTrigger(poll_seconds=CFG.arrival.watch_seconds, config=str(config_path())),
        )
    ],
)
CHAMPION = Asset(name="champion_model", uri=f"models://{CFG.model.name}/champion", group="flightdeck")


USER_ERROR_EXIT = 2
_EXIT_CODE = re.compile(r"Error code is: (\d+)\.")
_USER_ERROR_LINE = re.compile(r"^flightdeck: error: (.+)$", re.MULTILINE)


def user_error(failure: str) -> str | None:
    """The job's own message when a spark-submit failure is a user error (exit code 2), else None.

    ``failure`` is the text of the Spark provider's exception: the exit code and the last lines
    of the job's output, where :func:`flightdeck.core.jobargs.run` printed ``flightdeck: error: ...``.
    """
    code = _EXIT_CODE.search(failure)
    if code is None or int(code.group(1)) != USER_ERROR_EXIT:
        return None
    lines = _USER_ERROR_LINE.findall(failure)
    return lines[-1].strip() if lines else "the job stopped on a user error (exit 2); its message is in the log above"


Announce = Callable[[Any], Any]
"""What a job task does once its job succeeded, in the same task: archive, mark, add the asset events
of its ``outlets`` (``context["outlet_events"]``); its return value is the task's XCom."""


class _JobTask:
    """What every flightdeck job task adds to its operator: the announcement and OpenLineage facets.

    ``announce`` runs in the task process right after the job exited 0 (a failure in it retries the
    task, job included: jobs are idempotent). Folding the bookkeeping into the job's task instead of
    a task of its own saves a scheduling round trip (about 1 s each) on the path from files to
    predictions; see docs/DECISIONS.md (issue 20).
    """

    application: str
    announce: Announce | None

    def _announced(self, context: Any) -> Any:
        return None if self.announce is None else self.announce(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The job's inputs and outputs for Airflow's OpenLineage provider, from its run document.

        Called by the provider's listener after the task succeeded (only when OpenLineage is
        configured); the job wrote ``runs/<run id>/<job>.json``, which names the partitions,
        landing files and model versions it read and wrote (:mod:`flightdeck.monitoring.lineage`).
        """
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset

        from flightdeck.core.lake import json_exists, read_json
        from flightdeck.monitoring import lineage

        job = self.application.rsplit("/", 1)[-1].removesuffix(".py")
        doc = LAKE.run_doc(task_instance.run_id, job)
        if job not in lineage.JOBS or not json_exists(doc):
            return OperatorLineage()
        found = lineage.job_lineage(CFG, LAKE, job, read_json(doc))
        return OperatorLineage(
            inputs=[Dataset(namespace=d.namespace, name=d.name) for d in found.inputs],
            outputs=[Dataset(namespace=d.namespace, name=d.name) for d in found.outputs],
        )


def _stop_tree(proc: subprocess.Popen[Any], log: Any, grace_seconds: float) -> None:
    """SIGTERM ``proc`` and every process under it; SIGKILL whatever outlives ``grace_seconds``.
    ``proc`` itself is reaped through its Popen, so its caller still sees its exit code."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    proc.terminate()
    deadline = time.monotonic() + grace_seconds
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_seconds)
    _, alive = psutil.wait_procs(children, timeout=max(0.0, deadline - time.monotonic()))
    for child in alive:
        log.warning("Process %s of the Spark job outlived SIGTERM; killing it", child.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_seconds)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.info("Stopped the job's process %s and its processes %s", proc.pid, [c.pid for c in children])


class ConnectJobOperator(_JobTask, BaseOperator):
    """A flightdeck job run as a Python process on the Spark Connect server (``FLIGHTDECK_SPARK_REMOTE``).

    The task pays a Python process and a client session instead of a JVM and a Spark context.
    When the runtime's warm job runner answers (``FLIGHTDECK_JOB_RUNNER``, see
    :mod:`flightdeck.ops.jobrunner`), the process is forked from it with the libraries already
    imported; otherwise (or when it does not answer) the task starts the process itself.
    The job's output goes to the task log line by line; a user error (exit 2) fails at once with
    the job's own message, any other failure keeps the task's retries (an unreachable server
    fails within seconds: :func:`flightdeck.data.sparkio.connect_session` probes it).
    """

    template_fields = ("application_args",)
    ui_color = "#e8f2fd"

    def __init__(
        self, *, application: str, application_args: list[str], announce: Announce | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.application = application
        self.application_args = application_args
        self.announce = announce
        self._proc: subprocess.Popen[str] | None = None
        self._runner_conn: Any = None

    def execute(self, context: Any) -> Any:
        import collections
        import sys

        from flightdeck.ops.jobrunner import RUNNER_ENV, RunnerLost, RunnerUnavailable, run_job

        command = [sys.executable, self.application, *self.application_args]
        tail: collections.deque[str] = collections.deque(maxlen=40)

        def line(text: str) -> None:
            tail.append(text)
            self.log.info("%s", text)

        runner = os.environ.get(RUNNER_ENV)
        code: int | None = None
        if runner:
            try:
                self.log.info(
                    "Running %s on the warm job runner (%s), Spark Connect %s",
                    " ".join(command),
                    runner,
                    os.environ.get(REMOTE_ENV),
                )
                code = run_job(runner, command, line, connected=self._remember_connection)
            except RunnerUnavailable as err:
                self.log.warning("%s; starting the job in a new process instead", err)
            except RunnerLost as err:
                raise AirflowException(f"{self.application}: {err}") from err
        if code is None:
            code = self._run_process(command, line)
        if code == 0:
            return self._announced(context)
        failure = f"Error code is: {code}.\n" + "\n".join(tail)
        message = user_error(failure)
        if message is not None:
            raise AirflowFailException(f"{message} (a user error: not retried; fix it, then clear the task)")
        raise AirflowException(f"{self.application} failed with exit code {code}; its last lines are in the log above")

    def _remember_connection(self, conn: Any) -> None:
        self._runner_conn = conn

    def _run_process(self, command: list[str], line: Callable[[str], None]) -> int:
        self.log.info("Running %s on Spark Connect (%s)", " ".join(command), os.environ.get(REMOTE_ENV))
        self._proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        assert self._proc.stdout is not None
        for text in self._proc.stdout:
            line(text.rstrip())
        return self._proc.wait()

    def on_kill(self, grace_seconds: float = 5.0) -> None:
        """Stop the job (``execution_timeout`` or the task marked failed): on the runner, closing the
        connection makes it stop the job (SIGTERM, SIGKILL after 5 s); a process of its own is
        stopped with its whole tree."""
        import socket

        if self._runner_conn is not None:
            with contextlib.suppress(OSError):
                self._runner_conn.shutdown(socket.SHUT_RDWR)
        if self._proc is not None and self._proc.poll() is None:
            _stop_tree(self._proc, self.log, grace_seconds)


class SparkJobOperator(_JobTask, SparkSubmitOperator):
    """spark-submit of a flightdeck job: a user error (exit 2) fails at once, without retries.

    A broken file contract or an exceeded quarantine budget fails the same way on every try,
    so it raises :class:`AirflowFailException` with the job's message; anything else (a lost
    executor, an unreachable store) keeps the task's retries.
    """

    def __init__(self, *, announce: Announce | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.announce = announce

    def execute(self, context: Any) -> Any:
        try:
            super().execute(context)
        except AirflowException as err:
            message = user_error(str(err))
            if message is None:
                raise
            raise AirflowFailException(f"{message} (a user error: not retried; fix it, then clear the task)") from err
        return self._announced(context)

    def on_kill(self, grace_seconds: float = 5.0) -> None:
        """Stop the whole process tree of the spark-submit this task started, then the provider's kill.

        Airflow calls this when ``execution_timeout`` fires (or the task is marked failed). The
        provider's kill only SIGKILLs the spark-submit process (by then exec'd into the driver
        JVM); the job's Python driver and the PySpark workers the JVM started would live on as
        orphans. Every process of the tree gets SIGTERM (the JVM's shutdown hooks remove its temp
        folders); a child still alive after ``grace_seconds`` gets SIGKILL. The provider's
        ``on_kill`` runs last: it SIGKILLs a JVM that ignored SIGTERM and does its cluster-side part.
        """
        submit = getattr(self._hook, "_submit_sp", None) if self._hook is not None else None
        if submit is not None and submit.poll() is None:
            _stop_tree(submit, self.log, grace_seconds)
        super().on_kill()


class DayFilesSensor(BaseSensorOperator):
    """Waits for a day's landing files to be complete under ``arrival``, deferred to the triggerer.

    The first look happens in the task (a day whose files are there goes straight on); otherwise
    the task defers to :class:`~flightdeck.ops.inbox_watch.DayFilesTrigger`, which looks at the
    inbox every ``arrival.watch_seconds`` without a worker slot or a process per look, and the
    task resumes the moment the files are complete. It fails after ``arrival.timeout_hours``.
    The returned value (XCom) is the day's status: present and missing sources and why.
    """

    template_fields = ("partition",)

    def __init__(self, *, partition: str, cfg: PipelineConfig = CFG, **kwargs: Any) -> None:
        wait = dt.timedelta(hours=cfg.arrival.timeout_hours)
        kwargs.setdefault("execution_timeout", wait)
        super().__init__(poke_interval=cfg.arrival.watch_seconds, timeout=wait.total_seconds(), **kwargs)
        self.partition = partition

    def poke(self, context: Any) -> PokeReturnValue:
        from flightdeck.data import landing

        status = landing.poke_day(self.partition)
        return PokeReturnValue(is_done=status.complete, xcom_value=status.to_dict())

    def execute(self, context: Any) -> Any:
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=DayFilesTrigger(self.partition, poll_seconds=self.poke_interval, config=str(config_path())),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" in event:
            raise AirflowFailException(f"{event['error']} (a user error: not retried; fix it, then clear the task)")
        return event["status"]


# The jobs that run on a Spark Connect server when there is one (evaluation scores with the saved
# pipeline's Scorer, as scoring does). Training and reproduction keep spark-submit: xgboost.spark
# trains through the SparkContext (barrier stages) and sets spark.task.cpus per job; MLflow's Spark
# flavour saves and loads models through the JVM.
CONNECT_JOBS = frozenset({"ingest", "build_features", "validate_features", "score", "detect_drift", "evaluate"})


def spark_job(task_id: str, job: str, args: list[str], **kwargs: Any) -> SparkJobOperator | ConnectJobOperator:
    """A task running ``jobs/<job>.py``: spark-submit through the ``spark_default`` connection, or,
    for :data:`CONNECT_JOBS` when ``FLIGHTDECK_SPARK_REMOTE`` is set (``FLIGHTDECK_SPARK_CONNECT=true``
    in the embedded runtime), a Python process on that Spark Connect server. ``announce=`` (with
    ``outlets=``) runs once the job succeeded, in the same task (see :class:`_JobTask`)."""
    application = JOBS_DIR / f"{job}.py"
    if not application.is_file():
        raise FileNotFoundError(f"Spark job {application} does not exist")
    kwargs.setdefault("execution_timeout", dt.timedelta(minutes=CFG.timeouts.spark_job_minutes))
    if job in CONNECT_JOBS and os.environ.get(REMOTE_ENV):
        return ConnectJobOperator(task_id=task_id, application=str(application), application_args=args, **kwargs)
    return SparkJobOperator(
        task_id=task_id,
        application=str(application),
        application_args=args,
        conn_id=SPARK_CONN_ID,
        name=f"flightdeck-{job}",
        conf=dict(CFG.spark.conf),
        verbose=False,
        **kwargs,
    )


def run_limits(cfg: PipelineConfig = CFG, *, wait_hours: float = 0.0) -> dict[str, Any]:
    """DAG arguments bounding a run: ``dagrun_timeout`` and, when configured, a deadline alert.

    ``wait_hours`` extends the timeout for a run that may first wait (the ingest DAG's sensor).
    The deadline is an Airflow deadline alert on the run's queue time: when the run has not
    finished ``timeouts.deadline_hours`` later, the triggerer sends a ``deadline_missed`` alert.
    """
    limits: dict[str, Any] = {"dagrun_timeout": dt.timedelta(hours=cfg.timeouts.dagrun_hours + wait_hours)}
    if cfg.timeouts.deadline_hours is not None:
        limits["deadline"] = DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=dt.timedelta(hours=cfg.timeouts.deadline_hours),
            callback=AsyncCallback(deadline_missed, kwargs={"hours": cfg.timeouts.deadline_hours}),
        )
    return limits


def airflow_actor(dag_run: Any) -> str:
    """Who started an Airflow run: the triggering user, else the run type (scheduler, asset, ...)."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return f"airflow:{user}"
    return f"airflow:{getattr(dag_run, 'run_type', 'unknown')}:{getattr(dag_run, 'run_id', '')}"
