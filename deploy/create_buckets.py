"""Create the lake and MLflow buckets on the S3 endpoint, if missing (idempotent).

    python deploy/create_buckets.py BUCKET [BUCKET ...]

Uses boto3 with the usual environment: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``. docker-compose.yaml runs it once
(service ``s3-init``) before MLflow and Airflow start.
"""

from __future__ import annotations

import os
import sys
import time


def create_buckets(names: list[str], attempts: int = 30) -> list[str]:
    """Create each bucket unless it exists; returns the ones created. Retries while the store starts."""
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError

    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    for attempt in range(attempts):
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except (EndpointConnectionError, ClientError):
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    created = []
    for name in names:
        if name not in existing:
            s3.create_bucket(Bucket=name)
            created.append(name)
    return created


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    made = create_buckets(sys.argv[1:])
    print(f"buckets {sys.argv[1:]} ready (created: {made or 'none'})")
