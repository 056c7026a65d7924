"""A warm Python for the Spark Connect jobs: one long-lived process that has imported the jobs'
libraries forks each job, so a task pays a fork instead of an interpreter start and the imports.

A job on Spark Connect is a plain Python process: before its first Spark call it spends seconds
importing PySpark's Connect client, Great Expectations and MLflow (about 5.5 s on a two-core
machine, measured in issue 20). The runner (``python -m flightdeck.ops.jobrunner --socket PATH``,
started by ``flightdeck up`` beside the Connect server) imports them once, then listens on a Unix
socket (mode 0600). Per request it forks a *supervisor*, which forks the *job*:

- the job gets the task's environment, working folder and arguments, its stdout and stderr are
  the connection (line-buffered), and it runs the job file as ``__main__`` (:func:`runpy.run_path`);
- the supervisor waits for the job, then sends the exit code as a last frame (:data:`EXIT_MARK`);
  when the client goes away first (the task was killed, even with SIGKILL), it stops the job:
  SIGTERM, then SIGKILL after a grace period.

Code changes are not missed: before each job the runner compares the modification times of the
flightdeck package with those it imported; when they differ it runs that job in a fresh
interpreter and restarts itself (``exec``, keeping its socket), so the next job is warm again
with the new code. The same happens when the request's environment differs from the runner's in
a variable the library reads at import (:data:`IMPORT_TIME_ENV`).

The client side (:func:`run_job`) is what :class:`flightdeck.ops.dagkit.ConnectJobOperator` calls;
it imports nothing heavy, as DAG files import it at parse time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RUNNER_ENV = "FLIGHTDECK_JOB_RUNNER"
EXIT_MARK = b"\0flightdeck-exit "
# What the jobs import (tests/ops/test_jobrunner.py checks every flightdeck module jobs/*.py imports).
PRELOAD = (
    "pyspark.sql.connect.session",
    "great_expectations",
    "mlflow",
    "xgboost",
    "scipy.special",
    "matplotlib.pyplot",
    "flightdeck.core.jobargs",
    "flightdeck.data.sparkio",
    "flightdeck.data.ingest_run",
    "flightdeck.data.feature_run",
    "flightdeck.data.validation",
    "flightdeck.model.predict",
    "flightdeck.model.saved",
    "flightdeck.model.evaluation",
    "flightdeck.model.explain",
    "flightdeck.monitoring.drift_run",
    "flightdeck.monitoring.drift_html",
)
# Environment variables the library reads when it is imported: a request that differs runs cold.
IMPORT_TIME_ENV = ("FLIGHTDECK_HOME", "PYTHONPATH")
GRACE_SECONDS = 5.0
# A Unix socket path must fit in sun_path (108 bytes on Linux).
MAX_SOCKET_PATH = 100


class RunnerUnavailable(OSError):
    """No job runner answers at the socket (not started, or stopped): the job did not start."""


class RunnerLost(RuntimeError):
    """The connection to the runner ended before the job's exit code (runner stopped, task killed)."""


# --- client --------------------------------------------------------------------------------


def run_job(
    socket_path: str,
    command: Sequence[str],
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    connected: Callable[[socket.socket], None] | None = None,
) -> int:
    """Run ``command`` (``[python, job.py, *args]``; the interpreter is the runner's) on the runner;
    each output line goes to ``on_line``; returns the job's exit code (negative: killed by that signal).

    Raises :class:`RunnerUnavailable` when nothing answers at ``socket_path`` (the caller may then
    start the job itself), :class:`RunnerLost` when the connection ends before the job's exit code.
    ``connected`` receives the socket once the request is sent (closing it stops the job).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as err:
        sock.close()
        raise RunnerUnavailable(f"no job runner at {socket_path}: {err}") from err
    with sock:
        request = {
            "argv": list(command[1:]),
            "env": dict(os.environ if env is None else env),
            "cwd": cwd or os.getcwd(),
        }
        sock.sendall(json.dumps(request).encode() + b"\n")
        if connected is not None:
            connected(sock)
        pending = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError as err:  # closed by on_kill from another thread
                raise RunnerLost(f"the connection to the job runner broke: {err}") from err
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                code = _exit_code(line, on_line)
                if code is not None:
                    return code
        code = _exit_code(pending, on_line) if pending else None
        if code is not None:
            return code
    raise RunnerLost("the job runner closed the connection before the job's exit code (was it stopped?)")


def _exit_code(line: bytes, on_line: Callable[[str], None]) -> int | None:
    text, mark, code = line.partition(EXIT_MARK)
    if text or not mark:
        on_line(text.decode(errors="replace"))
    return int(code) if mark else None


# --- server --------------------------------------------------------------------------------


def code_stamp(package_dir: Path) -> tuple[int, int]:
    """The newest modification time (ns) and the number of the ``.py`` files under ``package_dir``."""
    newest, count = 0, 0
    stack = [package_dir]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    stack.append(Path(entry.path))
                elif entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
                    count += 1
    return newest, count


def listen(socket_path: str) -> socket.socket:
    """A Unix socket at ``socket_path`` that only this user can connect to (a stale file is replaced)."""
    if len(socket_path.encode()) > MAX_SOCKET_PATH:
        raise SystemExit(
            f"job runner socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes; "
            f"set {RUNNER_ENV} to a shorter path or move FLIGHTDECK_STATE"
        )
    Path(socket_path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(socket_path)
    finally:
        os.umask(old_umask)
    server.listen(16)
    return server


def serve(server: socket.socket, preload: Sequence[str] | None, watch: Path) -> None:
    """Import ``preload`` (default :data:`PRELOAD`), then run every request on ``server`` in a forked
    job; never returns.

    The runner restarts itself (same socket) when the code under ``watch`` changed since it started.
    """
    started = time.monotonic()
    for module in PRELOAD if preload is None else preload:
        importlib.import_module(module)
    stamp = code_stamp(watch)
    print(f"job runner ready on {server.getsockname()} in {time.monotonic() - started:.1f}s", flush=True)
    # Supervisors are reaped here (not by the kernel, as SIG_IGN would): the CPU time of each job,
    # which its supervisor reaped, then adds up in this process's children's times.
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        conn, _ = server.accept()
        try:
            request = _read_request(conn)
            if request is None:  # a readiness probe: connected, sent nothing
                conn.close()
                continue
        except (OSError, ValueError) as err:
            print(f"job runner: bad request ({err}); dropped", flush=True)
            conn.close()
            continue
        changed = code_stamp(watch) != stamp
        differs = [key for key in IMPORT_TIME_ENV if request["env"].get(key) != os.environ.get(key)]
        fresh = not changed and not differs
        if changed:
            request["why_cold"] = f"the code in {watch} changed since the runner started"
        elif differs:
            request["why_cold"] = f"the task's {', '.join(differs)} differs from the runner's"
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            _supervise(conn, request, warm=fresh)  # never returns
        conn.close()
        if changed:
            print("job runner: the flightdeck code changed; restarting with it", flush=True)
            os.set_inheritable(server.fileno(), True)
            os.execv(
                sys.executable,
                [sys.executable, "-m", "flightdeck.ops.jobrunner", *_restart_args(server, preload, watch)],
            )


def _reap(*_: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _restart_args(server: socket.socket, preload: Sequence[str] | None, watch: Path) -> list[str]:
    """The same socket and folder; the preload list only when one was given (else the new code's)."""
    chosen = [] if preload is None else ["--preload", ",".join(preload)]
    return ["--fd", str(server.fileno()), *chosen, "--watch", str(watch)]


def _read_request(conn: socket.socket) -> dict[str, Any] | None:
    """The request (one JSON line); ``None`` when the client closed without sending anything."""
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk and not data:
            return None
        if not chunk:
            raise ValueError("connection closed before the request ended")
        data += chunk
    conn.settimeout(None)
    request: dict[str, Any] = json.loads(data)
    return request


def _supervise(conn: socket.socket, request: dict[str, Any], *, warm: bool) -> None:
    """In the forked supervisor: fork the job, relay its exit code, stop it if the client goes away."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        how = f"started cold: {request['why_cold']}" if not warm else "forked warm (imports done)"
        conn.sendall(f"job runner: {how}\n".encode())
        pid = os.fork()
        if pid == 0:
            _job(conn, request, warm=warm)  # never returns
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn.sendall(EXIT_MARK + str(os.waitstatus_to_exitcode(status)).encode() + b"\n")
                break
            readable, _, _ = select.select([conn], [], [], 0.2)
            if readable and not conn.recv(1):  # the client is gone: its task was killed
                _stop(pid)
                break
    except BaseException:  # a supervisor must never fall back into the accept loop
        pass
    os._exit(0)


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _job(conn: socket.socket, request: dict[str, Any], *, warm: bool) -> None:
    """In the forked job: become the task's process (environment, folder, streams), run the file."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(conn.fileno(), 1)
        os.dup2(conn.fileno(), 2)
        os.close(devnull)
        conn.close()
        os.chdir(request["cwd"])
        argv: list[str] = request["argv"]
        if not warm:
            os.execve(sys.executable, [sys.executable, *argv], request["env"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        code = _run_file(argv)
    except BaseException:  # whatever happens, the job's process ends here
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()  # what a normal interpreter exit runs (logging, MLflow, Spark)
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_file(argv: list[str]) -> int:
    """Run ``argv[0]`` as ``__main__`` with ``argv`` as :data:`sys.argv`; its exit code, as Python's would be."""
    import runpy

    app = os.path.abspath(argv[0])
    sys.argv = [app, *argv[1:]]
    sys.path[0] = os.path.dirname(app)
    try:
        runpy.run_path(app, run_name="__main__")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:  # printed as the interpreter would, exit code 1
        import traceback

        traceback.print_exc()
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flightdeck.ops.jobrunner --socket PATH``: serve jobs until stopped."""
    import flightdeck

    p = argparse.ArgumentParser(
        prog="python -m flightdeck.ops.jobrunner",
        description="A warm Python that forks the Spark Connect jobs (started by 'flightdeck up' with Spark Connect).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="the Unix socket to listen on (created with mode 0600)")
    where.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a restart keeps its listening socket
    p.add_argument(
        "--preload",
        default=None,
        help="comma-separated modules to import before serving (default: what the Connect jobs import)",
    )
    p.add_argument(
        "--watch",
        default=str(Path(flightdeck.__file__).parent),
        help="the package whose changes restart the runner (default: flightdeck's)",
    )
    args = p.parse_args(argv)
    server = socket.socket(fileno=args.fd) if args.fd is not None else listen(args.socket)
    preload = None if args.preload is None else [m for m in args.preload.split(",") if m]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(server, preload, Path(args.watch))


if __name__ == "__main__":
    main()
