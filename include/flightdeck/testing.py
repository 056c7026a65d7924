"""Support for tests that run real services on this machine: free ports and PostgreSQL databases.

The integration tests (end to end, scale-out) put Airflow's metadata and MLflow's backend
store in the machine's PostgreSQL, as a production deployment would. They must fail,
never skip, when it is not there: :func:`fresh_database` raises :class:`PostgresUnavailable`
with a message saying so.
"""

from __future__ import annotations

import os
import socket
from typing import Any

# The PostgreSQL the tests use (trust auth on loopback); FLIGHTDECK_TEST_PG_* override it.
PG: dict[str, Any] = {
    "host": os.environ.get("FLIGHTDECK_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("FLIGHTDECK_TEST_PG_PORT", "5432")),
    "user": os.environ.get("FLIGHTDECK_TEST_PG_USER", "postgres"),
}


class PostgresUnavailable(RuntimeError):
    """The tests' PostgreSQL cannot be reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_uri(db: str) -> str:
    """The SQLAlchemy URI of a database of the tests' PostgreSQL (psycopg2 driver)."""
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


def _admin() -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as err:
        raise PostgresUnavailable(
            f"PostgreSQL is required at {PG['host']}:{PG['port']} (user {PG['user']}) for this test: {err}"
        ) from err
    conn.autocommit = True
    return conn


def drop_database(name: str) -> None:
    """Drop a database if it exists (closing its connections)."""
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def fresh_database(name: str) -> str:
    """Drop and create a database; returns its name.

    Raises:
        PostgresUnavailable: PostgreSQL is not reachable.
    """
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name
