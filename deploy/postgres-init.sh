#!/usr/bin/env bash
# Separate databases for Airflow and MLflow: MLflow's migrations rewrite the
# `alembic_version` table, which Airflow's also uses, so they must never share one.
# MLflow's basic-auth app keeps its users and permissions in a third one; Marquez (lineage) its own.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" -v marquez_pw="$MARQUEZ_DB_PASSWORD" <<'SQL'
CREATE USER airflow WITH PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE USER mlflow WITH PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE USER marquez WITH PASSWORD :'marquez_pw';
CREATE DATABASE marquez OWNER marquez;
SQL
