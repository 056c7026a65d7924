"""A real Prometheus for the tests (Debian's ``prometheus``): the shipped config pointed at a
target, scraping every second, and its HTTP query API.

Used by ``tests/ops/test_metrics_scrape.py`` (the plugin app over a hand-built lake) and
``tests/e2e/test_stack_metrics.py`` (the running stack after a demo day).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from testkit import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def get(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, str, bytes]:
    """GET with an optional bearer token: (status, content type, body), errors included."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def wait(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``check`` until it returns something true; fail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            result = check()
        except (OSError, urllib.error.URLError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child process, killing it if it does not stop."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def config(tmp: Path, target: str, token_file: Path) -> Path:
    """The shipped config with its flightdeck job pointed at ``target``, scraped every second,
    and the shipped alert rules with ``for: 0s``."""
    shipped = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = [job for job in shipped["scrape_configs"] if job["job_name"] == "flightdeck"]
    assert len(jobs) == 1
    job = jobs[0]
    job.update(scrape_interval="1s", scrape_timeout="1s", static_configs=[{"targets": [target]}])
    job["authorization"]["credentials_file"] = str(token_file)
    shipped["scrape_configs"] = [job]
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules))
    shipped["rule_files"] = [str(tmp / "alerts.yml")]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


class Prometheus:
    """A running Prometheus: ``query(expr)`` answers from its HTTP API."""

    def __init__(self, web: str, proc: subprocess.Popen[bytes]) -> None:
        self.web = web
        self.proc = proc

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://{self.web}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, raw = get(url)
        assert status == 200, raw
        answer = json.loads(raw)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait(self, what: str, check: Any, timeout: float) -> Any:
        return wait(what, check, timeout, self.proc)


@contextmanager
def running(tmp: Path, target: str, token_file: Path) -> Iterator[Prometheus]:
    """Prometheus scraping ``target`` (host:port) with the token in ``token_file``, until a first
    successful scrape of the flightdeck job."""
    web = f"127.0.0.1:{free_port()}"
    path = config(tmp, target, token_file)
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address={web}"],
            stdout=log,
            stderr=log,
        )
        server = Prometheus(web, proc)
        try:
            server.wait("Prometheus ready", lambda: get(f"http://{web}/-/ready")[0] == 200, 60)
            server.wait("a successful scrape", lambda: server.query('up{job="flightdeck"} == 1'), 60)
            yield server
        finally:
            stop(proc)
