"""The warm job runner forks each Spark Connect job from a Python that has its imports done.

A real runner process (``python -m flightdeck.ops.jobrunner``) serves real job files: a job sees
its own arguments, environment and folder, its output and exit code reach the caller; a module
the runner preloaded is not imported again; a changed module runs that job cold and restarts the
runner with the new code; a task killed with SIGKILL stops its job. The Airflow operator uses the
runner when it answers and starts the job itself when it does not.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flightdeck.core.config import JOBS_DIR
from flightdeck.ops.jobrunner import PRELOAD, RUNNER_ENV, RunnerUnavailable, run_job

RUNNER_COMMAND = (sys.executable, "-m", "flightdeck.ops.jobrunner")
WARMMOD = """
import os
VALUE = {value}
LOADED_IN = os.getpid()
"""

JOB = """
import os, sys
import warmmod
print("args", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("JOB_SAYS"))
print("warm" if warmmod.LOADED_IN != os.getpid() else "cold", "value", warmmod.VALUE)
print("on stderr", file=sys.stderr)
print("last words without a newline", end="")
sys.exit(int(sys.argv[1]))
"""


class Runner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pkg = root / "pkg"
        self.pkg.mkdir()
        (self.pkg / "warmmod.py").write_text(WARMMOD.format(value=1))
        (root / "job.py").write_text(JOB)
        self.socket = str(root / "runner.sock")
        self.log = root / "runner.log"
        self.env = os.environ | {"PYTHONPATH": f"{self.pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*RUNNER_COMMAND, "--socket", self.socket, "--preload", "warmmod", "--watch", str(self.pkg)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(1)

    def wait_ready(self, times: int) -> None:
        deadline = time.monotonic() + 60
        while self.log.read_text().count("job runner ready") < times:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def run(self, *args: str, says: str | None = None) -> tuple[int, list[str]]:
        lines: list[str] = []
        job = self.root / "job.py"
        env = self.env if says is None else self.env | {"JOB_SAYS": says}
        code = run_job(self.socket, [sys.executable, str(job), *args], lines.append, env=env, cwd=str(self.pkg))
        return code, lines

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture()
def runner() -> Iterator[Runner]:
    # A short folder: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="fd-jr-") as root:
        served = Runner(Path(root))
        try:
            yield served
        finally:
            served.stop()


def test_a_job_gets_its_arguments_environment_folder_and_streams_and_returns_its_exit_code(runner: Runner) -> None:
    code, lines = runner.run("3", says="hello")
    assert code == 3
    assert lines == [
        "job runner: forked warm (imports done)",
        f"args ['3'] cwd {runner.pkg} env hello",
        "warm value 1",  # imported by the runner, not by the job
        "on stderr",
        "last words without a newline",
    ]
    code, lines = runner.run("0")
    assert code == 0
    assert lines[1].endswith("env None")  # the environment is the request's, not the last job's


def test_a_changed_module_runs_that_job_cold_then_the_runner_restarts_with_the_new_code(runner: Runner) -> None:
    assert runner.run("0")[1][2] == "warm value 1"
    (runner.pkg / "warmmod.py").write_text(WARMMOD.format(value=2))
    lines = runner.run("0")[1]
    assert lines[0] == f"job runner: started cold: the code in {runner.pkg} changed since the runner started"
    assert lines[2] == "cold value 2"
    runner.wait_ready(2)
    assert runner.run("0")[1][2] == "warm value 2"
    assert runner.proc.poll() is None  # the same process, exec'd with its socket


def test_a_task_whose_import_time_environment_differs_runs_cold(runner: Runner) -> None:
    lines: list[str] = []
    env = runner.env | {"FLIGHTDECK_HOME": "/somewhere/else"}
    code = run_job(runner.socket, [sys.executable, str(runner.root / "job.py"), "0"], lines.append, env=env)
    assert code == 0
    assert lines[0] == "job runner: started cold: the task's FLIGHTDECK_HOME differs from the runner's"
    assert lines[2] == "cold value 1"
    assert runner.run("0")[1][2] == "warm value 1"  # no restart: the next task with the runner's environment is warm


def test_a_task_killed_with_sigkill_stops_its_job(runner: Runner) -> None:
    pid_file = runner.root / "job.pid"
    job = runner.root / "sleeper.py"
    job.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n")
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from flightdeck.ops.jobrunner import run_job; "
            f"run_job({runner.socket!r}, [sys.executable, {str(job)!r}], print)",
        ]
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, runner.log.read_text()
        time.sleep(0.1)
    job_pid = int(pid_file.read_text())
    client.kill()  # the task process dies without a word
    client.wait()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{job_pid}").exists():
        assert time.monotonic() < deadline, f"job {job_pid} outlived its task"
        time.sleep(0.1)
    assert runner.run("0")[0] == 0  # the runner itself serves on


def test_no_runner_at_the_socket_is_reported_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(RunnerUnavailable, match="no job runner at"):
        run_job(str(tmp_path / "nothing.sock"), [sys.executable, "job.py"], print)


def test_the_operator_runs_on_the_runner_and_starts_the_job_itself_without_one(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.sdk.exceptions import AirflowFailException

    from flightdeck.ops.dagkit import ConnectJobOperator

    app = runner.root / "user_job.py"
    app.write_text(
        textwrap.dedent(
            """
            import os, sys
            from flightdeck.core.errors import FlightdeckError
            from flightdeck.core.jobargs import run

            def main(argv):
                print("job pid", os.getpid(), "parent", os.getppid(), flush=True)
                if argv[0] == "user":
                    raise FlightdeckError("landing file flights_2013-01-02.csv is empty; re-export it")
                if argv[0] == "bug":
                    raise RuntimeError("a bug")

            sys.exit(run(main, None))
            """
        )
    )

    def task(kind: str) -> ConnectJobOperator:
        return ConnectJobOperator(task_id=kind, application=str(app), application_args=[kind], announce=lambda c: kind)

    monkeypatch.setenv(RUNNER_ENV, runner.socket)
    with pytest.raises(AirflowFailException, match=r"flights_2013-01-02\.csv is empty.*not retried"):
        task("user").execute({})
    with pytest.raises(AirflowException, match="exit code 1") as err:
        task("bug").execute({})
    assert not isinstance(err.value, AirflowFailException)
    assert task("ok").execute({}) == "ok"
    logged = capfd.readouterr()
    assert "on the warm job runner" in logged.out + logged.err
    assert f"parent {os.getpid()}" not in logged.out + logged.err  # forked by the runner, not by this task

    monkeypatch.setenv(RUNNER_ENV, str(runner.root / "gone.sock"))
    assert task("ok").execute({}) == "ok"
    logged = capfd.readouterr()
    assert "starting the job in a new process instead" in logged.out + logged.err
    assert f"parent {os.getpid()}" in logged.out + logged.err


def _flightdeck_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("flightdeck")
    }


def test_the_runner_preloads_every_flightdeck_module_the_connect_jobs_import() -> None:
    from flightdeck.ops.dagkit import CONNECT_JOBS

    wanted = set().union(*(_flightdeck_imports(JOBS_DIR / f"{job}.py") for job in CONNECT_JOBS))
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import importlib, sys\nfor m in {PRELOAD!r}: importlib.import_module(m)\nprint(*sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert wanted and wanted <= set(loaded), f"add {sorted(wanted - set(loaded))} to jobrunner.PRELOAD"


def test_killing_the_task_on_the_runner_stops_its_job(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_kill`` (an execution timeout, the task marked failed) from another thread, as Airflow calls it."""
    import threading

    from airflow.providers.common.compat.sdk import AirflowException

    from flightdeck.ops.dagkit import ConnectJobOperator

    pid_file = runner.root / "killed.pid"
    job = runner.root / "long_job.py"
    job.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n")
    monkeypatch.setenv(RUNNER_ENV, runner.socket)
    task = ConnectJobOperator(task_id="long", application=str(job), application_args=[])
    raised: list[BaseException] = []

    def execute() -> None:
        try:
            task.execute({})
        except BaseException as err:  # recorded for the assertion below
            raised.append(err)

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, runner.log.read_text()
        time.sleep(0.1)
    job_pid = int(pid_file.read_text())
    task.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], AirflowException), raised
    deadline = time.monotonic() + 15
    while Path(f"/proc/{job_pid}").exists():
        assert time.monotonic() < deadline, f"job {job_pid} outlived its killed task"
        time.sleep(0.1)
