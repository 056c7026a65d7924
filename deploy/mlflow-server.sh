#!/usr/bin/env bash
# Start the MLflow tracking server as the scale-out stack runs it: PostgreSQL backend store,
# artifacts proxied to S3, and the basic-auth app (every request needs a login).
#
#   deploy/mlflow-server.sh --host 0.0.0.0 --port 5000 --allowed-hosts mlflow,mlflow:5000,...
#
# Everything else comes from the environment; nothing has a default:
#   MLFLOW_BACKEND_STORE_URI       postgresql+psycopg2://mlflow:<pw>@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION   s3://<bucket>/artifacts   (with MLFLOW_S3_ENDPOINT_URL, AWS_* keys)
#   MLFLOW_AUTH_DATABASE_URI       postgresql+psycopg2://mlflow:<pw>@postgres:5432/mlflow_auth (users, permissions)
#   MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD   the admin created on first start
#   MLFLOW_FLASK_SERVER_SECRET_KEY the auth app's CSRF/session key (same on every replica)
# tests/scaleout/test_mlflow_server.py starts the server through this script.
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_AUTH_ADMIN_USERNAME}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"

# The auth app reads its store from an ini file: write one that only this user can read
# (it holds the database password). configparser treats '%' specially: double it.
umask 077
config_dir="$(mktemp -d)"
trap 'rm -rf "$config_dir"' EXIT
export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"
cat >"$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI//%/%%}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI

mlflow_bin="${MLFLOW_BIN:-mlflow}"
# Not exec: the trap removes the ini file when the server stops.
"$mlflow_bin" server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; rm -rf "$config_dir"' TERM INT
wait "$server"
