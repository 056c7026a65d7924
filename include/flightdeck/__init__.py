"""flightdeck: an Airflow-orchestrated batch ML platform.

The package is import-light on purpose: DAG files import it at parse time, so
heavy libraries (pyspark, mlflow, xgboost, great_expectations) are imported
inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
