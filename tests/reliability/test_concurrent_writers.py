"""Writers of one table in separate OS processes cannot corrupt each other.

Each writer is ``writer_child.py`` in its own process. A barrier (``FLIGHTDECK_TEST_PAUSE_AT`` +
``FLIGHTDECK_TEST_BARRIER``) stops one at the worst moment, between its two renames (the old
version moved to ``_trash``, the new one not yet in place), while others start; some are then
killed there with SIGKILL. Afterwards each partition must hold exactly one writer's complete
output, with no nested folder, no ``_staging``/``_trash``/``_lease`` leftover, and a writer
that gave up waiting must name the holder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("writer_child.py")
TABLE = "bronze/flights"
D1, D2 = "2013-07-10", "2013-07-11"
ROWS = {"files": 4, "spark": 3}  # a complete output per date, as writer_child.py writes it


class Writers:
    """Start writer processes; kill whatever is left at the end."""

    def __init__(self, lake: Path, logs: Path) -> None:
        self.lake = lake
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, tag: str, dates: str, *, pause_at: str = "", spark: bool = False, **env: str
    ) -> subprocess.Popen[bytes]:
        extra = {"FLIGHTDECK_LEASE_OWNER": f"writer-{tag}", **env}
        if pause_at:
            extra |= {"FLIGHTDECK_TEST_PAUSE_AT": pause_at, "FLIGHTDECK_TEST_BARRIER": str(self.barrier(tag))}
        args = [sys.executable, str(CHILD), str(self.lake), TABLE, dates, tag, *(["spark"] if spark else [])]
        with (self.logs / f"{tag}.log").open("wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=os.environ | {"PYSPARK_PYTHON": sys.executable} | extra,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a SIGKILL takes its JVM too
            )
        self.procs.append(proc)
        return proc

    def barrier(self, tag: str) -> Path:
        return self.logs / f"barrier-{tag}"

    def wait_paused(self, tag: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not Path(f"{self.barrier(tag)}.reached").exists():
            assert proc.poll() is None, f"writer {tag} ended ({proc.returncode}) before its pause:\n{self.log(tag)}"
            assert time.monotonic() < deadline, f"writer {tag} did not reach its pause:\n{self.log(tag)}"
            time.sleep(0.05)

    def release(self, tag: str) -> None:
        self.barrier(tag).touch()

    def log(self, tag: str) -> str:
        return (self.logs / f"{tag}.log").read_text(errors="replace")[-4000:]

    def finish(self, tag: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"writer {tag} did not finish:\n{self.log(tag)}") from None

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture()
def writers(tmp_path: Path) -> Iterator[Writers]:
    (tmp_path / "lake").mkdir()
    (tmp_path / "logs").mkdir()
    started = Writers(tmp_path / "lake", tmp_path / "logs")
    yield started
    started.kill()


def _rows(partition: Path) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    rows: list[tuple[str, int]] = []
    for part in sorted(partition.glob("*.parquet")):
        table = pq.read_table(part).to_pydict()
        rows += zip(table["tag"], table["i"], strict=True)
    return sorted(rows)


def _assert_output_of(lake: Path, date: str, tag: str, mode: str = "files") -> None:
    """The partition holds exactly ``tag``'s complete output: its rows, only files, the marker."""
    partition = lake / TABLE / f"date={date}"
    assert (partition / "_SUCCESS").is_file(), f"{partition} is not committed"
    nested = [p.name for p in partition.iterdir() if p.is_dir()]
    assert not nested, f"{partition} has nested folders {nested}"
    assert _rows(partition) == [(tag, i) for i in range(ROWS[mode])]


def _assert_no_leftovers(lake: Path) -> None:
    table = lake / TABLE
    for name in ("_staging", "_trash"):
        assert not (table / name).exists() or not list((table / name).iterdir()), f"{name}: leftovers"
    assert not (table / "_lease").exists(), "a lease file was left behind"
    assert sorted(p.name for p in table.iterdir() if not p.name.startswith(("_", "."))) == sorted(
        p.name for p in table.glob("date=*")
    )


def test_same_date_writers_commit_one_after_another(writers: Writers) -> None:
    lake = writers.lake
    assert writers.finish("seed", writers.start("seed", D1)) == 0
    a = writers.start("A", D1, pause_at="moved_aside")
    writers.wait_paused("A", a)
    trash = sorted((lake / TABLE / "_trash").iterdir())
    assert [p.name[: -len("-0123456789ab")] for p in trash] == [f"date={D1}"]
    # A is between its renames: D1 is not in place. B writes D1 and D2 meanwhile.
    b = writers.start("B", f"{D1},{D2}")
    deadline = time.monotonic() + 60
    while "waiting for" not in writers.log("B"):
        assert b.poll() is None, f"B did not wait for A:\n{writers.log('B')}"
        assert time.monotonic() < deadline, f"B never reported waiting:\n{writers.log('B')}"
        time.sleep(0.1)
    assert "writer-A" in writers.log("B")
    # B did not "restore" A's trash entry nor touch A's staging folder while A was alive.
    assert sorted((lake / TABLE / "_trash").iterdir()) == trash
    assert not (lake / TABLE / f"date={D1}").exists()
    assert len(list((lake / TABLE / "_staging").iterdir())) == 1

    writers.release("A")
    assert writers.finish("A", a) == 0
    assert writers.finish("B", b) == 0, writers.log("B")
    _assert_output_of(lake, D1, "B")  # B committed after A
    _assert_output_of(lake, D2, "B")
    _assert_no_leftovers(lake)


def test_a_writer_killed_between_its_renames_loses_nothing(writers: Writers) -> None:
    lake = writers.lake
    assert writers.finish("seed", writers.start("seed", f"{D1},{D2}")) == 0
    a = writers.start("A", D1, pause_at="moved_aside")
    writers.wait_paused("A", a)
    b = writers.start("B", D2)  # another date of the same table, waiting for A's lease
    time.sleep(1.0)
    assert b.poll() is None
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    assert writers.finish("B", b) == 0, writers.log("B")
    # B, holding the lease, put A's moved-aside version back: D1 is the seed's, whole.
    _assert_output_of(lake, D1, "seed")
    _assert_output_of(lake, D2, "B")
    assert "restored" in writers.log("B")
    _assert_no_leftovers(lake)


def test_a_writer_that_cannot_wait_fails_naming_the_holder(writers: Writers) -> None:
    lake = writers.lake
    a = writers.start("A", D1, pause_at="staged")
    writers.wait_paused("A", a)
    b = writers.start("B", D1, FLIGHTDECK_LEASE_WAIT_SECONDS="1")
    assert writers.finish("B", b) != 0
    message = writers.log("B")
    assert "LeaseBusy" in message and "held by writer-A" in message and f"pid {a.pid}" in message, message
    writers.release("A")
    assert writers.finish("A", a) == 0
    _assert_output_of(lake, D1, "A")
    _assert_no_leftovers(lake)


@pytest.mark.slow
def test_spark_writer_killed_mid_commit_beside_concurrent_writers(writers: Writers) -> None:
    """The real Spark writer (Hadoop's rename, which would nest a folder moved onto an existing one)."""
    lake = writers.lake
    assert writers.finish("seed", writers.start("seed", f"{D1},{D2}")) == 0
    s = writers.start("S", f"{D1},{D2}", spark=True, pause_at="moved_aside")
    writers.wait_paused("S", s)  # S has moved the seed's D1 aside
    b = writers.start("B", D1)
    c = writers.start("C", D2)
    time.sleep(1.0)
    assert b.poll() is None and c.poll() is None
    os.killpg(s.pid, signal.SIGKILL)
    s.wait()
    assert writers.finish("B", b) == 0, writers.log("B")
    assert writers.finish("C", c) == 0, writers.log("C")
    _assert_output_of(lake, D1, "B")
    _assert_output_of(lake, D2, "C")
    _assert_no_leftovers(lake)
    # Once everybody is gone, the Spark writer commits both dates itself.
    assert writers.finish("S2", writers.start("S2", f"{D1},{D2}", spark=True)) == 0, writers.log("S2")
    _assert_output_of(lake, D1, "S2", "spark")
    _assert_output_of(lake, D2, "S2", "spark")
    _assert_no_leftovers(lake)
