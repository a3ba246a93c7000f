"""Postgres from DATABASE_URL with pg8000 (pure Python), one connection per process."""

import os
import ssl
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native

_conn = None


def connect() -> pg8000.native.Connection:
    url = urlsplit(os.environ["DATABASE_URL"])
    # RDS wants TLS (`?sslmode=require`); the self-hosted add-on is on the private network.
    sslmode = parse_qs(url.query).get("sslmode", ["disable"])[0]
    context = None
    if sslmode in ("require", "verify-full"):
        context = ssl.create_default_context()
        if sslmode == "require":  # encrypted, server not verified (libpq's meaning)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return pg8000.native.Connection(
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        host=url.hostname or "localhost",
        port=url.port or 5432,
        database=url.path.lstrip("/"),
        ssl_context=context,
        timeout=10,
    )


def run(sql: str, **params):
    """Run one statement, reconnecting once if the connection went away (a server restart)."""
    global _conn
    for attempt in (1, 2):
        try:
            if _conn is None:
                _conn = connect()
            return _conn.run(sql, **params)
        except (pg8000.exceptions.InterfaceError, OSError):
            _conn = None
            if attempt == 2:
                raise
    return None
