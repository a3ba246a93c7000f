"""A plain WSGI app whose dependencies uv installs from uv.lock: shows the dyno, the release and
that the dev group (ruff) stayed out of the slug."""

import importlib.util
import json
import os


def application(environ, start_response):
    facts = {
        "app": "dynoform python-uv example",
        "dyno": os.environ.get("DYNO", "unknown"),
        "release": os.environ.get("DYNOFORM_RELEASE", "unknown"),
        "dev_group_installed": importlib.util.find_spec("ruff") is not None,
    }
    body = json.dumps(facts).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
