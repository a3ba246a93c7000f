"""Counts visits in Postgres (DATABASE_URL) and queues jobs in Redis (REDIS_URL)."""

import json
import os
import socket
from urllib.parse import parse_qs

import db

_redis = None


def redis_client():
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    return _redis


def _facts() -> dict:
    return {
        "dyno": os.environ.get("DYNO", "unknown"),
        "release": os.environ.get("DYNOFORM_RELEASE")
        or os.environ.get("HEROKU_RELEASE_VERSION", "unknown"),
        "host": socket.gethostname(),
    }


def visit() -> dict:
    rows = db.run("UPDATE visits SET count = count + 1 WHERE id = 1 RETURNING count")
    return {"count": rows[0][0], **_facts()}


def count() -> dict:
    rows = db.run("SELECT count FROM visits WHERE id = 1")
    return {"count": rows[0][0] if rows else 0, **_facts()}


def enqueue(query: dict) -> dict:
    n = int(query.get("n", ["1"])[0])
    client = redis_client()
    jobs = [json.dumps({"from": _facts()["dyno"], "n": i}) for i in range(n)]
    if jobs:
        client.rpush("jobs", *jobs)
    client.incrby("enqueued", n)
    return {"enqueued": int(client.get("enqueued") or 0), "queued": client.llen("jobs")}


def processed() -> dict:
    client = redis_client()
    by = {k.decode(): int(v) for k, v in client.hgetall("processed_by").items()}
    return {"processed": int(client.get("processed") or 0), "queued": client.llen("jobs"), "by": by}


def route(path: str, query: dict) -> tuple[str, dict]:
    if path == "/":  # the router's health check: answers without the add-ons
        return "200 OK", {"paths": ["/json", "/count", "/enqueue?n=5", "/processed"], **_facts()}
    if path == "/json":
        return "200 OK", visit()
    if path == "/count":
        return "200 OK", count()
    if path in ("/enqueue", "/processed"):
        if "REDIS_URL" not in os.environ:
            return "503 Service Unavailable", {"error": "no REDIS_URL: addons:create redis"}
        return "200 OK", enqueue(query) if path == "/enqueue" else processed()
    return "404 Not Found", {"error": "not found"}


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        status, data = route(environ.get("PATH_INFO", "/"), query)
    except KeyError as exc:
        status, data = "503 Service Unavailable", {"error": f"missing config var {exc}"}
    body = json.dumps(data).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]
