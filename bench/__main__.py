"""``python -m bench``: every stage against its reference, on the same data, at several sizes.

Lands and ingests the base window once (kept in ``--work``), then for each scale factor
writes a lake whose bronze flights are the base's times the factor (``bench.generator``)
and measures, in one Spark session: features, validation, training, scoring and drift,
each beside its reference. Writes ``latest.json`` and ``latest.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("features", "validation", "training", "scoring", "drift")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--base", default="2013-01-01..2013-01-31", help="base window FIRST..LAST of 2013 flights")
    p.add_argument("--scales", default="1,10,30", help="comma list of integer scale factors of the base window")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (after one warm-up)")
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=30.0,
        help="a measurement whose warm-up took longer than this is timed once (keeps the run bounded)",
    )
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list among {', '.join(STAGES)}")
    p.add_argument("--master", default="local[2]", help="Spark master of the benchmark session")
    p.add_argument("--num-workers", type=int, default=2, help="xgboost.spark workers (model.num_workers)")
    p.add_argument("--nthread", type=int, default=2, help="threads of native xgboost (train and predict)")
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=2,
        help="also time training as 1 worker x this many threads (spark.task.cpus, in a child process); 0 skips",
    )
    p.add_argument(
        "--single-run-from",
        type=int,
        default=100,
        help="from this scale factor up, each measurement is one run without a warm-up (the session is warm "
        "from the smaller scales; at 300x a warm-up would double every measurement)",
    )
    p.add_argument(
        "--no-explain",
        action="store_true",
        help="skip the scoring.explain variant of scoring (SHAP per row: the longest measurement at 300x)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="an earlier results JSON whose other scales join this run's (e.g. add --scales 300 to a 1,30 run); "
        "the report names both runs",
    )
    p.add_argument("--driver-memory", default="4g", help="spark.driver.memory")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="scratch folder for the lakes")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where latest.json/latest.md go")
    p.add_argument("--note", action="append", default=[], help="a line added to the report (repeatable)")
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        help="only re-render a results JSON (e.g. bench/results/latest.json) into --out, adding any --note "
        "(and the orchestration figure of the last make demo, when the results have none)",
    )
    args = p.parse_args(argv)
    try:
        args.scale_list = sorted({int(x) for x in args.scales.split(",") if x.strip()})
    except ValueError:
        p.error(f"--scales must be integers like 1,10,30; got {args.scales!r}")
    if not args.scale_list or min(args.scale_list) < 1:
        p.error("--scales needs at least one factor >= 1")
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stage_list) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}; choose among {', '.join(STAGES)}")
    if "scoring" in args.stage_list and "training" not in args.stage_list:
        p.error("scoring needs the model fitted by the training stage: add training to --stages")
    return args


def orchestration() -> dict[str, Any]:
    """A DAG run's wall time vs the sum of its Spark jobs' own seconds, from an existing ``make demo`` run.

    Starting Airflow is not cheap (about a minute before the first task), so the bench does
    not run a DAG; it reads ``.flightdeck/demo-report.json`` (each step's Airflow run id and
    wall seconds) and the jobs' hand-off documents of that run (``runs/<run id>/<job>.json``,
    each with the ``seconds`` the job spent from its own start, i.e. without spark-submit's
    JVM start and Airflow's scheduling). Uses the bootstrap run, whose every Spark job
    reports its seconds.
    """
    from flightdeck.core.lake import Lake

    state = ROOT / ".flightdeck"
    report, runs = state / "demo-report.json", state / "lake" / "runs"
    if not report.exists() or not runs.is_dir():
        return {"note": "not measured in this run (Airflow not started; no .flightdeck/demo-report.json found)"}
    doc = json.loads(report.read_text())
    steps = doc.get("demo", doc).get("steps", [])
    step = next((s for s in steps if s.get("step") == "bootstrap" and s.get("run_id")), None)
    if step is None:
        return {"note": "not measured in this run (the demo report has no bootstrap run)"}
    folder = Path(Lake(str(state / "lake")).run_doc(step["run_id"], "any")).parent  # the jobs' own naming
    docs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    jobs = {d.get("job", "?"): float(d["seconds"]) for d in docs if isinstance(d, dict) and "seconds" in d}
    wall = float(step["seconds"])
    if not jobs or wall <= 0:
        return {"note": "not measured in this run (the bootstrap run's jobs report no seconds)"}
    compute = sum(jobs.values())
    return {
        "measured_from": f"flightdeck_bootstrap run of {report.relative_to(ROOT)} (not measured in this run)",
        "wall_seconds": round(wall, 1),
        "job_seconds": round(compute, 1),
        "jobs": jobs,
        "tasks": len(jobs),
        "ratio": round(wall / compute, 2),
        "overhead_per_task_s": round((wall - compute) / len(jobs), 1),
    }


def merge(results: dict[str, Any], earlier: dict[str, Any]) -> None:
    """Add the scales of an earlier run that this one did not measure, and say so in the notes."""
    added = sorted((k for k in earlier.get("scales", {}) if k not in results["scales"]), key=int)
    for key in added:
        results["scales"][key] = earlier["scales"][key]
    if added:
        scales = ", ".join(f"{k}x" for k in added)
        results["notes"].append(
            f"{scales} from an earlier run on this machine: `{earlier.get('command', '?')}` started "
            f"{earlier.get('started', '?')} ({earlier.get('total_seconds', '?')} s); the other scales from this one"
        )


def render(args: argparse.Namespace) -> int:
    """Recompute the verdicts and rewrite latest.json/latest.md from an existing results JSON."""
    from bench import report

    results = json.loads(args.render.read_text())
    if not results.get("orchestration", {}).get("measured_from"):
        results["orchestration"] = orchestration()  # a demo may have run since the bench
    results["notes"] = [*results.get("notes", []), *(n for n in args.note if n not in results.get("notes", []))]
    results["verdicts"] = report.verdicts(results)
    js, md = report.write(results, args.out)
    log(f"rendered {js} and {md}")
    return 0


def run_stages(scale: Any, args: argparse.Namespace, out: dict[str, Any], checkpoint: Any) -> None:
    """Each wanted stage of one scale, in order, with the results saved after each."""
    from bench import stages

    wanted = set(args.stage_list)
    if wanted - {"features"} and "features" not in wanted:
        stages.run_job("build_features", ["--partition", stages.span(scale.dates)])  # the others read features
    for name in STAGES:
        if name not in wanted:
            continue
        if name == "training":
            out["stages"][name] = stages.bench_training(scale, args.nthread)
        elif name == "scoring":
            out["stages"][name] = stages.bench_scoring(scale, args.nthread, explain=not args.no_explain)
        else:
            out["stages"][name] = getattr(stages, f"bench_{name}")(scale)
        if name == "drift":  # the training-time reference profile, a row of its own
            out["stages"]["drift_profile"] = out["stages"][name].pop("profile")
        checkpoint()


def run_threads_variant(lake_root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Training as 1 worker x ``--threads-per-worker`` threads, in a child with its own Spark session."""
    from bench import threads

    n = args.threads_per_worker
    log(f"  training: 1 worker x {n} threads, in its own Spark session ...")
    variant = threads.run(lake_root, args, n)
    if "error" in variant:
        log(f"  training 1 worker x {n} threads failed: {variant['error']}")
        out.setdefault("errors", {})["training_threads"] = variant["error"]
        return
    out["stages"]["training_threads"] = variant
    log(
        f"  training 1 worker x {n} threads: {variant['pipeline']['seconds']:.2f}s "
        f"vs native {variant['reference']['seconds']:.2f}s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return render(args)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    # Quiet library logs: the bench prints its own progress lines (jobs' basicConfig is then a no-op).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["FLIGHTDECK__MODEL__NUM_WORKERS"] = str(args.num_workers)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from bench import probe, stages
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, parse_partitions
    from flightdeck.data.sparkio import build_session

    dates = parse_partitions(args.base)
    machine = probe.machine()
    log(f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB")
    sampler = probe.RssSampler().start()
    spark = build_session(
        "flightdeck-bench",
        {"spark.master": args.master, "spark.driver.memory": args.driver_memory, "spark.ui.enabled": "false"},
    )
    sc = spark.sparkContext
    log(f"spark {spark.version} on {sc.master}, default parallelism {sc.defaultParallelism}")

    def use_lake(path: Path) -> tuple[Any, Lake]:
        os.environ["FLIGHTDECK__LAKE__ROOT"] = str(path)
        cfg = load_config()
        return cfg, Lake(cfg.lake.root)

    args.work.mkdir(parents=True, exist_ok=True)
    cfg, base = use_lake(args.work / f"base-{dates[0]}-{dates[-1]}")
    stages.prepare_base(cfg, base, dates, log)

    results: dict[str, Any] = {
        "started": started_at,
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "base": [dates[0].isoformat(), dates[-1].isoformat()],
        "repeats": args.repeats,
        "single_run_from": args.single_run_from,
        "spark": {
            "master": spark.sparkContext.master,
            "version": spark.version,
            "driver_memory": args.driver_memory,
            "num_workers": args.num_workers,
        },
        "machine": machine,
        "scales": {},
        "notes": list(args.note),
    }

    def checkpoint() -> None:
        """The partial results are on disk as soon as a stage is done."""
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        (args.work / "partial.json").write_text(json.dumps(results, indent=2, default=str))

    for factor in args.scale_list:
        cfg, lake = use_lake(args.work / f"scale-{factor}")
        log(f"scale {factor}x: generating bronze from the base window ...")
        rows = stages.prepare_scaled(spark, cfg, base, lake, dates, factor)
        log(f"scale {factor}x: {rows:,} bronze flight rows")
        scale = stages.Scale(
            spark,
            cfg,
            lake,
            dates,
            args.repeats,
            sampler,
            log,
            slow_seconds=args.slow_seconds,
            single_run=factor >= args.single_run_from,
        )
        out: dict[str, Any] = {"bronze_rows": rows, "stages": {}}
        results["scales"][str(factor)] = out
        run_stages(scale, args, out, checkpoint)
        spark.catalog.clearCache()
        if "training" in args.stage_list and args.threads_per_worker > 0:
            run_threads_variant(Path(lake.root), args, out)

    sampler.stop()
    finish(results, args, started)
    spark.stop()
    return 0


def finish(results: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    """The orchestration figure, any earlier scales (``--merge``), the verdicts; the report written."""
    from bench import report

    results["orchestration"] = orchestration()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.merge is not None:
        merge(results, json.loads(args.merge.read_text()))
    results["verdicts"] = report.verdicts(results)
    js, md = report.write(results, args.out)
    log(f"done in {results['total_seconds']:.0f}s: {js} and {md}")
    print(md.read_text())


if __name__ == "__main__":
    sys.exit(main())
