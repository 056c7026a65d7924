"""Command-line plumbing shared by every Spark job in ``jobs/``.

Each job is ``spark-submit jobs/<name>.py --partition ... --config ...``; this
module parses those arguments the same way for all of them and sets up logging. A job hands
its result on with :meth:`flightdeck.core.documents.RunDocument.emit`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from flightdeck.core.config import JOBS_DIR, PipelineConfig, load_config
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, parse_partitions


def parser(prog: str, description: str, *, partition: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every job shares."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    if partition:
        p.add_argument(
            "--partition",
            required=True,
            help="date partition(s): YYYY-MM-DD, a comma list, or a range FIRST..LAST (e.g. 2024-01-01..2024-01-31)",
        )
    p.add_argument("--config", default=None, help="pipeline YAML (default: $FLIGHTDECK_CONFIG or the flights config)")
    p.add_argument(
        "--run-key", default=None, help="key of the orchestrator run; hand-off documents go under runs/<key>/"
    )
    return p


def setup(args: argparse.Namespace) -> tuple[PipelineConfig, Lake]:
    """Configure logging and load the config named on the command line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep task logs readable
    cfg = load_config(args.config)
    return cfg, Lake(cfg.lake.root)


def partitions(args: argparse.Namespace) -> list[dt.date]:
    return parse_partitions(args.partition)


def run(main_fn: Any, argv: Sequence[str] | None) -> int:
    """Run a job's main, turning user errors (:class:`FlightdeckError`) into one clear line and exit code 2.

    Anything else is a bug or an outage: it propagates with its full traceback (and exit code 1).
    """
    try:
        main_fn(list(sys.argv[1:] if argv is None else argv))
    except FlightdeckError as err:
        logging.getLogger("flightdeck").error("%s: %s", type(err).__name__, err)
        print(f"flightdeck: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


def load_job(name: str) -> ModuleType:
    """Import ``jobs/<name>.py`` as a module (tests and benchmarks call its ``main(argv)`` in-process)."""
    import importlib.util

    path = JOBS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"flightdeck_job_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no Spark job {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
