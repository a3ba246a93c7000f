"""The dashboard's server over real HTTP on 127.0.0.1: the gate, redirects, static files.

No page here reads the platform (those run on the local cloud: tests/e2e/test_dashboard.py)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

import pytest

from provisioner.context import Context
from provisioner.dashboard.server import MAX_STREAMS, Server
from provisioner.targets import Target

TOKEN = "unit-test-token"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    dash = Server(Context(Target("nowhere", kind="local")), 0, TOKEN)
    thread = threading.Thread(target=dash.serve_forever, daemon=True)
    thread.start()
    yield dash
    dash.shutdown()
    dash.server_close()


def ask(
    server: Server, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.gate.port, timeout=5)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def cookie(server: Server) -> dict[str, str]:
    """What a browser sends after visiting the token's address."""
    set_cookie = ask(server, f"/?token={TOKEN}").headers["Set-Cookie"]
    return {"Cookie": set_cookie.split(";")[0]}


def test_the_address_names_the_bound_port(server: Server) -> None:
    assert server.url == f"http://127.0.0.1:{server.gate.port}/?token={TOKEN}"
    assert server.server_address[0] == "127.0.0.1"


def test_without_the_token_every_path_gets_401(server: Server) -> None:
    for path in ("/", "/apps/shop", "/static/style.css", "/apps/shop/logs", "/nothing"):
        response = ask(server, path)
        assert response.status == 401, path
        assert b"token" in response.body  # type: ignore[attr-defined]
    assert ask(server, "/?token=wrong").status == 401


def test_the_token_turns_into_a_cookie_and_leaves_the_address(server: Server) -> None:
    response = ask(server, f"/apps/shop?token={TOKEN}&since=60")
    assert response.status == 200  # a refresh, so that the Strict cookie goes with what follows
    assert response.body == (  # type: ignore[attr-defined]
        b'<!DOCTYPE html>\n<meta http-equiv="refresh" content="0; url=/apps/shop?since=60">\n'
    )
    name, rest = response.headers["Set-Cookie"].split("=", 1)
    assert name == server.gate.cookie_name and TOKEN not in rest
    assert rest.endswith("; Path=/; HttpOnly; SameSite=Strict")


def test_static_files_come_with_the_cookie_and_strict_headers(server: Server) -> None:
    response = ask(server, "/static/dashboard.js", headers=cookie(server))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"EventSource" in response.body  # type: ignore[attr-defined]
    assert ask(server, "/static/../auth.py", headers=cookie(server)).status == 404


def test_unknown_pages_and_bad_app_names_are_404(server: Server) -> None:
    for path in ("/nothing", "/apps/Not_An_App", "/apps/shop/secrets"):
        assert ask(server, path, headers=cookie(server)).status == 404, path


def test_a_cross_origin_post_is_refused_before_anything_runs(server: Server) -> None:
    headers = {**cookie(server), "Origin": "http://evil.example", "Content-Length": "0"}
    assert ask(server, "/apps/shop/actions/restart", "POST", headers).status == 403


def test_log_streams_beyond_the_cap_get_503(server: Server) -> None:
    """Each stream observes the whole fleet every few seconds: a ninth is refused at once."""
    taken = 0
    while server.streams.acquire(blocking=False):
        taken += 1
    try:
        assert taken == MAX_STREAMS == 8
        response = ask(server, "/apps/shop/logs", headers=cookie(server))
        assert response.status == 503
        assert response.body == b"too many log streams open (at most 8)\n"  # type: ignore[attr-defined]
    finally:
        for _ in range(taken):
            server.streams.release()
