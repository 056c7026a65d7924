"""Training with ``threads_per_worker`` threads in each XGBoost worker, in its own Spark session.

xgboost.spark takes a worker's threads from ``spark.task.cpus``, which is fixed when a
session starts; the main bench session keeps one CPU per task for the other stages. So
this variant runs as a child process (``python -m bench.threads``), reads the features
the main run built in the same scale's lake, times ``SparkXGBClassifier.fit`` against
``xgboost.train`` with the same total threads, and prints the result as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_THREADS "


def run(lake: Path, bench_args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Spawn the child (one worker x ``threads``) for one scale's lake; its result (or the error it printed).

    ``bench_args`` are the parent bench's arguments: its window, repeats, master and driver memory.
    """
    import subprocess

    cmd = [
        sys.executable, "-m", "bench.threads", "--lake", str(lake), "--base", bench_args.base, "--workers", "1",
        "--threads", str(threads), "--repeats", str(bench_args.repeats), "--master", bench_args.master,
        "--driver-memory", bench_args.driver_memory,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        return {"error": f"bench.threads exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", type=Path, required=True, help="a scale's lake with its features built")
    p.add_argument("--base", required=True, help="the window FIRST..LAST")
    p.add_argument("--workers", type=int, default=1, help="xgboost.spark workers")
    p.add_argument("--threads", type=int, default=2, help="threads per worker (spark.task.cpus)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    p.add_argument("--master", default="local[2]", help="Spark master")
    p.add_argument("--driver-memory", default="4g", help="spark.driver.memory")
    args = p.parse_args(argv)
    os.environ["FLIGHTDECK__LAKE__ROOT"] = str(args.lake)
    os.environ["FLIGHTDECK__MODEL__NUM_WORKERS"] = str(args.workers)
    os.environ["FLIGHTDECK__MODEL__THREADS_PER_WORKER"] = str(args.threads)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from bench import stages
    from bench.probe import RssSampler
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, parse_partitions
    from flightdeck.data.sparkio import build_session

    sampler = RssSampler().start()
    spark = build_session(
        "flightdeck-bench-threads",
        {
            "spark.master": args.master,
            "spark.driver.memory": args.driver_memory,
            "spark.ui.enabled": "false",
            "spark.task.cpus": str(args.threads),
        },
    )
    cfg = load_config()
    scale = stages.Scale(
        spark, cfg, Lake(cfg.lake.root), parse_partitions(args.base), args.repeats, sampler, lambda *_: None
    )
    out = stages.bench_training(scale, args.workers * args.threads)
    out["variant"] = {"num_workers": args.workers, "threads_per_worker": args.threads}
    sampler.stop()
    spark.stop()
    print(RESULT_PREFIX + json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
