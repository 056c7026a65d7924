"""flightdeck: an Airflow-orchestrated batch ML platform.

The package is import-light on purpose: DAG files import it at parse time, so
heavy libraries (pyspark, mlflow, xgboost, great_expectations) are imported
inside the functions that need them.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# flightdeck's processes do not phone home: MLflow's usage telemetry (on by default since MLflow 3)
# fetches its config and flushes its queue at exit over the network, which cost every job that
# touched MLflow seconds at exit (a second per timed-out request; see docs/DECISIONS.md, issue 20).
# A value the user set wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
