#!/bin/sh
# Start SeaweedFS (master + volume + filer + S3 gateway in one process) with one S3 identity
# whose keys come from the environment (.env): the S3 API refuses anonymous requests.
set -eu
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY in .env}"
: "${S3_SECRET_KEY:?set S3_SECRET_KEY in .env}"
umask 077
config=/tmp/s3-identities.json
cat >"$config" <<JSON
{"identities": [{"name": "flightdeck",
  "credentials": [{"accessKey": "${S3_ACCESS_KEY}", "secretKey": "${S3_SECRET_KEY}"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
exec weed server -dir=/data -s3 -s3.port=8333 -s3.config="$config"
