"""A throwaway PostgreSQL database beside the one DATABASE_URL names (the e2e tests' and
bin/benchmark's: each run gets its own, dropped afterwards)."""

import uuid
from urllib.parse import urlsplit, urlunsplit


def fresh_postgres(url: str, prefix: str):
    """(URL of a new empty database, a function that drops it)."""
    import psycopg

    parts = urlsplit(url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = dict(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(parts._replace(path=f"/{name}")), drop
