"""A plain WSGI app (no framework), served by gunicorn: shows which dyno and release answered.

The release comes from DYNOFORM_RELEASE (set by dynoform in every dyno, e.g. "v3"), falling
back to Heroku's HEROKU_RELEASE_VERSION so the app also runs there unchanged.
"""

import html
import json
import os
import socket


def _facts() -> dict[str, str]:
    return {
        "app": "dynoform python example",
        "dyno": os.environ.get("DYNO", "unknown"),
        "release": os.environ.get("DYNOFORM_RELEASE")
        or os.environ.get("HEROKU_RELEASE_VERSION", "unknown"),
        "host": socket.gethostname(),
    }


def application(environ, start_response):
    facts = _facts()
    if environ.get("PATH_INFO") == "/json":
        body = json.dumps(facts).encode()
        content_type = "application/json"
    else:
        rows = "".join(
            f"<li>{html.escape(k)}: <b>{html.escape(v)}</b></li>" for k, v in facts.items()
        )
        body = f"<!doctype html><title>dynoform</title><h1>Hello from {html.escape(facts['dyno'])}</h1><ul>{rows}</ul>\n".encode()
        content_type = "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
