"""Keep a bearer token for Prometheus: an Airflow JWT from the api-server's ``/auth/token``.

    python deploy/prometheus/airflow_token.py --url http://airflow-api-server:8080 \
        --out /token/airflow.jwt [--every 3600] [--once] [--chown 65534:65534]

The flightdeck metrics endpoint (``/flightdeck/metrics``) answers only to logged-in Airflow
users, like the page: Airflow checks a JWT sent as ``Authorization: Bearer``. Prometheus sends
the token it reads from a file at every scrape (``authorization.credentials_file`` in
prometheus.yml), so this loop logs in with the admin user (``AIRFLOW_ADMIN_USER``, default
``admin``; password ``AIRFLOW_ADMIN_PASSWORD``) and rewrites that file atomically (mode 0600)
well before the token expires (Airflow's ``[api_auth] jwt_expiration_time``, a day by default);
``--chown`` hands the file to the user Prometheus runs as (``nobody`` in its image). The token is
never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from flightdeck.ops.airflow_api import AirflowApi, AirflowApiError

log = logging.getLogger("flightdeck.airflow_token")


def write_token(url: str, out: Path, username: str, password: str, owner: tuple[int, int] | None = None) -> None:
    """Log in once and replace ``out`` with the new token (readable by its owner only)."""
    token = AirflowApi(url.rstrip("/"), username, password).token()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".token-")
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.chmod(tmp, 0o600)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, out)
    log.info("wrote a fresh Airflow token to %s", out)


def main(argv: list[str]) -> int:
    """Write the token now, then (without --once) again every --every seconds; retry while Airflow is down."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True, help="Airflow api-server base URL")
    p.add_argument("--out", required=True, type=Path, help="token file Prometheus reads (credentials_file)")
    p.add_argument("--every", type=float, default=3600.0, help="seconds between refreshes")
    p.add_argument("--once", action="store_true", help="write one token and exit")
    p.add_argument("--chown", default="", help="UID:GID to own the token file (the user Prometheus runs as)")
    args = p.parse_args(argv)
    owner: tuple[int, int] | None = None
    if args.chown:
        uid, _, gid = args.chown.partition(":")
        owner = (int(uid), int(gid or uid))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    username = os.environ.get("AIRFLOW_ADMIN_USER", "admin")
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
    if not password:
        log.error("AIRFLOW_ADMIN_PASSWORD is not set: the token is obtained with the admin login")
        return 2
    while True:
        try:
            write_token(args.url, args.out, username, password, owner)
        except AirflowApiError as err:
            if args.once:
                log.error("could not obtain an Airflow token: %s", err)
                return 1
            log.warning("could not obtain an Airflow token (retrying in 10 s): %s", err)
            time.sleep(10)
            continue
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
