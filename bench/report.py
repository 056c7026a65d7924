"""Targets of issue 8, the JSON document and the markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# stage -> (target ratio pipeline/reference, what the reference is)
TARGETS: dict[str, tuple[float, str]] = {
    "training": (1.3, "native xgboost.train, same rows/params/threads"),
    "training_threads": (1.3, "native xgboost.train, training as 1 worker with every thread"),
    "scoring": (2.0, "native Booster.inplace_predict, same rows"),
    "validation": (1.5, "one fused Spark aggregate of the same checks"),
    "features": (5.0, "Parquet scan (count + sum of every column) of its inputs"),
    "drift": (2.5, "one scan of the current window (the daily check: bin counts vs the champion's profile, PSI)"),
}
# measured beside the targets, without a target of their own
UNTARGETED: dict[str, str] = {
    "drift_profile": "one scan of the reference window (the profile is built once per model version, at training)",
}
ORCHESTRATION_RATIO = 1.15
ORCHESTRATION_OVERHEAD_PER_TASK = 2.0


def exact_ratio(stage: dict[str, Any]) -> float | None:
    p, r = stage["pipeline"]["seconds"], stage["reference"]["seconds"]
    return float(p / r) if r else None


def ratio(stage: dict[str, Any]) -> float | None:
    """The ratio as published (2 decimals); verdicts use :func:`exact_ratio`."""
    exact = exact_ratio(stage)
    return None if exact is None else round(exact, 2)


def growth(results: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """Time and memory growth of a stage from the smallest to the largest scale, against data growth."""
    scales = sorted(results["scales"], key=int)
    if len(scales) < 2:
        return None
    lo, hi = results["scales"][scales[0]], results["scales"][scales[-1]]
    if stage not in lo["stages"] or stage not in hi["stages"]:
        return None
    t0, t1 = lo["stages"][stage]["pipeline"]["seconds"], hi["stages"][stage]["pipeline"]["seconds"]
    m0, m1 = lo["stages"][stage]["pipeline"]["peak_rss_mb"], hi["stages"][stage]["pipeline"]["peak_rss_mb"]
    data = hi["bronze_rows"] / lo["bronze_rows"] if lo["bronze_rows"] else None
    time_growth = t1 / t0 if t0 else None
    return {
        "from": f"{scales[0]}x",
        "to": f"{scales[-1]}x",
        "data_growth": round(data, 2) if data else None,
        "time_growth": round(time_growth, 2) if time_growth else None,
        "memory_growth": round(m1 / m0, 2) if m0 else None,
        "met": bool(data and time_growth is not None and time_growth <= data),
    }


def max_load(stage: dict[str, Any]) -> float | None:
    loads = [x for k in ("pipeline", "reference") for x in stage[k].get("load_avg", [])]
    return max(loads) if loads else None


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """Whether each target of the issue is met, judged at the largest scale.

    A comparison measured while the 1-minute load average exceeded twice the usable CPUs is
    flagged ``contended``: other work then skews the two sides differently (native XGBoost's
    OpenMP threads suffer most), so its verdict is not to be trusted.
    """
    largest = results["scales"][max(results["scales"], key=int)]["stages"]
    cpus = results["machine"].get("usable_cpus") or results["machine"].get("cpus") or 1
    out: dict[str, Any] = {}
    for stage, (target, _) in TARGETS.items():
        if stage in largest:
            r, exact = ratio(largest[stage]), exact_ratio(largest[stage])
            load = max_load(largest[stage])
            out[stage] = {
                "ratio": r,
                "target": target,
                "met": exact is not None and exact <= target,  # unrounded: 2.004 is not within 2.0
                "max_load": load,
                "contended": load is not None and load > 2 * cpus,
            }
    orch = results.get("orchestration", {})
    if orch.get("measured_from"):
        # judged on the unrounded figures: 1.153 is not within 1.15
        exact = orch["wall_seconds"] / orch["job_seconds"]
        per_task = (orch["wall_seconds"] - orch["job_seconds"]) / orch["tasks"]
        out["orchestration"] = {
            "ratio": orch["ratio"],
            "ratio_exact": round(exact, 4),
            "overhead_per_task": orch["overhead_per_task_s"],
            "met": exact <= ORCHESTRATION_RATIO or per_task <= ORCHESTRATION_OVERHEAD_PER_TASK,
        }
    else:
        out["orchestration"] = {"met": None, "note": orch.get("note", "not measured in this run")}
    out["growth"] = {stage: growth(results, stage) for stage in largest}
    peaks = [st["pipeline"]["peak_rss_mb"] for sc in results["scales"].values() for st in sc["stages"].values()]
    out["peak_rss_mb"] = max(peaks) if peaks else None
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _load(stage: dict[str, Any]) -> str:
    """The 1-minute load average around the pipeline and the reference measurements."""
    loads = [x for k in ("pipeline", "reference") for x in stage[k].get("load_avg", [])]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"


def _met(flag: bool | None) -> str:
    return "not measured" if flag is None else ("**met**" if flag else "**missed**")


def _extra(stage: str, st: dict[str, Any], results: dict[str, Any]) -> str:
    """The stage's own figures for the table's last column."""
    if stage.startswith("training"):
        ns = st["ns_per_cell"]
        workers = st.get("variant", {"num_workers": results["spark"].get("num_workers", "?")})
        return (
            f"{workers['num_workers']} worker(s) x {workers.get('threads_per_worker', 1)} thread(s); "
            f"ns/(row·feature·tree·level): {ns['pipeline']} vs {ns['reference']} "
            f"({st['rows']:,} rows x {st['features']} x {st['trees']} x {st['max_depth']})"
        )
    if stage == "scoring":
        rps = st["rows_per_second"]
        cost = f"; with scoring.explain x{st['explain_cost']}" if st.get("explain_cost") is not None else ""
        return f"rows/s: {rps['pipeline']:,} vs {rps['reference']:,}{cost}"
    if stage == "validation":
        return f"GX success {st['gx_success']}"
    if stage == "drift" and "last_run_breakdown" in st:  # results of before 2026-12-07: profile + counts
        return "profile {reference_profile}s + counts/PSI {profile_counts_and_psi}s".format(**st["last_run_breakdown"])
    if stage == "drift_profile":
        return "built at training, once per model version"
    return ""


def _jobs(run: dict[str, Any]) -> str:
    jobs = run.get("spark_jobs")
    return "n/a" if jobs is None else str(jobs)


def floors(results: dict[str, Any]) -> list[str]:
    """Per scale, what a missed ratio is made of: Spark jobs per run, the fixed cost above the
    reference, and the floors (the least any design of this shape must do) against the reference."""
    lines = [
        "",
        "## What the ratios are made of",
        "",
        "Spark jobs: the jobs one run of each side started (a job pays scheduling and a pass). Above the "
        "reference: pipeline - reference seconds (constant across scales = fixed cost; growing = per-row "
        "cost). Floor: a measurement of the least a design of this shape must do, as a ratio of the "
        "reference: a floor above the target proves the target out of reach for that design.",
        "",
        "| scale | stage | Spark jobs pipeline / reference | above the reference s | floor | floor s | floor ratio |",
        "| ---: | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for scale in sorted(results["scales"], key=int):
        for stage, st in results["scales"][scale]["stages"].items():
            if stage not in TARGETS and stage not in UNTARGETED:
                continue
            ref = st["reference"]["seconds"]
            above = st["pipeline"]["seconds"] - ref
            jobs = f"{_jobs(st['pipeline'])} / {_jobs(st['reference'])}"
            named = st.get("floors") or {"-": None}
            for name, floor in named.items():
                fs = "-" if floor is None else _fmt(floor["seconds"])
                fr = "-" if floor is None or not ref else _fmt(floor["seconds"] / ref)
                lines.append(f"| {scale}x | {stage} | {jobs} | {_fmt(above)} | {name} | {fs} | {fr} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The published table: machine, per scale and stage the times, ratio and peak memory, the verdicts."""
    m = results["machine"]
    lines = [
        "# flightdeck benchmarks",
        "",
        f"Run {results['started']} ({results['total_seconds']:.0f} s in all), `{results['command']}`.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), {m['memory_gib']} GiB; "
        f"{m['platform']}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". Load average at start: {m['load_avg_at_start']}.",
        "",
        f"Spark `{results['spark']['master']}`; each time is the median of {results['repeats']} runs after one "
        "warm-up; peak memory is the RSS of the Python process and its JVM, sampled every 0.2 s over the "
        "warm-up and the runs; load 1m is the range of the machine's 1-minute load average around the two "
        "measurements (above 2 means other work shared the 2 cores)."
        + (
            f" From {results['single_run_from']}x up, each measurement is one run without a warm-up "
            "(the session is warm from the smaller scales)."
            if results.get("single_run_from") and max(map(int, results["scales"])) >= results["single_run_from"]
            else ""
        ),
        "",
        "| scale | rows | stage | pipeline s | reference s | ratio | target | peak MB | load 1m | extra |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scale in sorted(results["scales"], key=int):
        sc = results["scales"][scale]
        for stage in [name for name in [*TARGETS, *UNTARGETED] if name in sc["stages"]]:
            st = sc["stages"][stage]
            target = f"≤ {TARGETS[stage][0]}" if stage in TARGETS else "-"
            extra = _extra(stage, st, results)
            lines.append(
                f"| {scale}x | {sc['bronze_rows']:,} | {stage} | {_fmt(st['pipeline']['seconds'])} | "
                f"{_fmt(st['reference']['seconds'], 3)} | {_fmt(ratio(st))} | {target} | "
                f"{_fmt(st['pipeline']['peak_rss_mb'], 0)} | {_load(st)} | {extra} |"
            )
    v = results["verdicts"]
    lines += ["", "| target (issue 8) | today | met? |", "| --- | --- | --- |"]
    for stage, (target, ref) in TARGETS.items():
        if stage in v:
            verdict = _met(v[stage]["met"])
            if v[stage].get("contended"):
                verdict += f" (untrusted: load up to {v[stage]['max_load']} on {m['usable_cpus']} CPUs)"
            lines.append(f"| {stage} ≤ {target}x {ref} | {_fmt(v[stage]['ratio'])}x | {verdict} |")
    orch = v["orchestration"]
    if orch["met"] is None:
        lines.append(f"| orchestration ≤ 1.15x or ≤ 2 s/task | {orch['note']} | not measured |")
    else:
        lines.append(
            f"| orchestration ≤ 1.15x or ≤ 2 s/task | {orch['ratio_exact']}x, {orch['overhead_per_task']} s/task "
            f"({results['orchestration']['measured_from']}) | {_met(orch['met'])} |"
        )
    for stage in [name for name in TARGETS if name in v["growth"]]:
        g = v["growth"][stage]
        if g:
            lines.append(
                f"| {stage}: time grows no faster than data {g['from']}→{g['to']} | "
                f"data x{g['data_growth']}, time x{g['time_growth']}, memory x{g['memory_growth']} | {_met(g['met'])} |"
            )
    lines.append(f"| bounded peak memory | highest peak {_fmt(v['peak_rss_mb'], 0)} MB (Python + JVM) | see growth |")
    notes = results.get("notes") or []
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    lines += floors(results)
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "latest.json", out_dir / "latest.md"
    js.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    md.write_text(markdown(results))
    return js, md
