"""Measuring: wall time (warm-up, then the median of N repeats), peak RSS, the machine."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAGE_KB = 4


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/<pid>/stat."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: the ppid follows the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (the JVM spark-submit starts is one)."""
    tree = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * PAGE_KB * 1024


class RssSampler:
    """A daemon thread summing the RSS of this process and its descendants every ``interval`` s.

    ``mark()`` starts a new window; ``peak()`` is the highest sum seen since.
    """

    def __init__(self, interval: float = 0.2, tree_every: float = 2.0) -> None:
        self.interval = interval
        self.tree_every = tree_every
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        pids: list[int] = []
        refreshed = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - refreshed >= self.tree_every:
                pids, refreshed = process_tree(os.getpid()), now
            total = sum(rss_bytes(p) for p in pids)
            with self._lock:
                self._peak = max(self._peak, total)
            self._stop.wait(self.interval)

    def current(self) -> int:
        return sum(rss_bytes(p) for p in process_tree(os.getpid()))

    def mark(self) -> None:
        with self._lock:
            self._peak = self.current()

    def peak(self) -> int:
        with self._lock:
            return max(self._peak, self.current())


def measure(
    fn: Callable[[], Any],
    repeats: int,
    sampler: RssSampler | None = None,
    slow_seconds: float | None = None,
    *,
    warm_up: bool = True,
) -> dict[str, Any]:
    """Run ``fn`` once to warm up, then ``repeats`` times; the median and all runs, in seconds.

    When the warm-up took longer than ``slow_seconds``, ``fn`` is timed once only (the run
    stays bounded; the number of runs is in the result). The peak RSS covers the warm-up
    and the repeats. ``warm_up=False`` skips the warm-up (for sizes so large that the code
    paths are warm from the smaller ones and a second pass would double a long measurement).
    """
    if sampler is not None:
        sampler.mark()
    load_before = os.getloadavg()[0]
    warmup: float | None = None
    if warm_up:
        started = time.perf_counter()
        fn()
        warmup = time.perf_counter() - started
        if slow_seconds is not None and warmup > slow_seconds:
            repeats = 1
    runs = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    out: dict[str, Any] = {
        "seconds": round(statistics.median(runs), 4),
        "runs": [round(r, 4) for r in runs],
        "warmup": None if warmup is None else round(warmup, 4),
        # 1-minute load average before and after: other work on the machine shows here
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if sampler is not None:
        out["peak_rss_mb"] = round(sampler.peak() / 2**20, 1)
    return out


def machine() -> dict[str, Any]:
    """lscpu model name and cores, memory, OS, and the library versions that matter here."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    fields = dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lscpu.splitlines() if ":" in line))
    info["cpu_model"] = fields.get("Model name", platform.processor() or "unknown")
    info["cpus"] = int(fields.get("CPU(s)", os.cpu_count() or 0))
    info["usable_cpus"] = len(os.sched_getaffinity(0))
    meminfo = Path("/proc/meminfo").read_text()
    match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    info["memory_gib"] = round(int(match.group(1)) / 2**20, 1) if match else None
    info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    versions = {}
    for name in ("pyspark", "xgboost", "great_expectations", "pandas", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # a missing package is reported, not fatal
            versions[name] = "missing"
    info["versions"] = versions
    return info
