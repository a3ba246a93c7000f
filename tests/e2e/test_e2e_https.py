"""HTTPS by default on the local cloud: the web URL, the redirect, and the router's headers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from e2e_support import Url, cli, cli_json, request
from tls_support import tls_get, user_cert

pytestmark = pytest.mark.cloud

ECHO_APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Echo).serve_forever()
"""


def _echo_app(tmp_path: Path) -> Path:
    src = tmp_path / "echo"
    src.mkdir()
    (src / "app.py").write_text(ECHO_APP)
    (src / "Procfile").write_text("web: python3 app.py\n")
    return src


def _wait_ok(url: Url, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = request(url, "/")
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered 200: {last}")


def _router_lines(state_dir: str, request_id: str, timeout: float = 3.0) -> list[str]:
    """Router log lines naming the request id (HAProxy logs just after it answers)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        text = (Path(state_dir) / "router.log").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if f"request_id={request_id} " in ln]
        if lines:
            return lines
        time.sleep(0.1)
    return lines


def test_https_web_url_redirect_and_router_headers(app_name: str, tmp_path: Path) -> None:
    cli("deploy", "-a", app_name, str(_echo_app(tmp_path)))
    info = cli_json("apps:info", "-a", app_name)
    assert isinstance(info, dict)
    assert re.fullmatch(rf"https://{app_name}\.localhost:\d+/", str(info["web_url"])), info
    url = Url.of_app(app_name)
    _wait_ok(url)  # verified against the local CA (e2e_support.connect)
    status = cli_json("local", "status")
    assert isinstance(status, dict)
    assert status["ca_cert"] and Path(status["ca_cert"]).exists()

    # The app sees Heroku's router headers; the client's own X-Forwarded-For is kept in front.
    request_id = f"e2e-{uuid.uuid4().hex}"
    started_ms = time.time() * 1000
    response = request(
        url, "/headers", {"X-Request-Id": request_id, "X-Forwarded-For": "203.0.113.9"}
    )
    assert response.status == 200
    seen = json.loads(response.body)  # type: ignore[attr-defined]
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == "443"
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-request-id"] == request_id
    assert abs(int(seen["x-request-start"]) - started_ms) < 10_000
    assert seen["via"] == "1.1 dynoform"
    assert seen["host"].startswith(f"{app_name}.localhost")
    lines = _router_lines(status["state_dir"], request_id)
    assert lines and f"host={app_name}.localhost" in lines[0] and "protocol=https" in lines[0]

    # No (or an invalid) X-Request-Id: the router makes one, and logs that one.
    for sent in ({}, {"X-Request-Id": "short"}):
        seen = json.loads(request(url, "/", sent).body)  # type: ignore[attr-defined]
        made = seen["x-request-id"]
        assert re.fullmatch(r"[0-9a-f-]{36}", made), made
        assert _router_lines(status["state_dir"], made)
        assert seen["x-forwarded-for"] == "127.0.0.1"

    # Plain HTTP to the same host: a permanent redirect to the HTTPS URL.
    http_ports = [
        int(str(ln["local_url"]).rsplit(":", 1)[1])
        for lb in status["load_balancers"]
        for ln in lb["listeners"]
        if ln["protocol"] == "HTTP" and ln["local_url"] and lb["name"] == "dynoform-dynoform"
    ]
    assert http_ports, status["load_balancers"]
    redirect = request(Url(url.host, http_ports[0], "http"), "/a/b?c=1")
    assert redirect.status == 301
    assert redirect.getheader("Location") == f"https://{url.host}:{url.port}/a/b?c=1"

    # curl, as a user would, verifying against the local CA (it resolves *.localhost itself).
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-fsS", "--max-time", "10", "--cacert", status["ca_cert"], info["web_url"]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["x-forwarded-proto"] == "https"


DJANGO_APP = """\
# A Django app set up as Heroku's getting-started app is: it trusts X-Forwarded-Proto and
# redirects every plain-HTTP request to HTTPS, so it renders only behind an HTTPS router.
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="e2e-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.security.SecurityMiddleware"],
    SECURE_SSL_REDIRECT=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)


def index(request):
    return HttpResponse(f"<h1>Getting started with Django</h1><p>secure={request.is_secure()}</p>")


urlpatterns = [path("", index)]
application = get_wsgi_application()
"""


def test_django_with_ssl_redirect_renders_through_the_web_url(
    app_name: str, tmp_path: Path
) -> None:
    src = tmp_path / "django"
    src.mkdir()
    (src / "app.py").write_text(DJANGO_APP)
    (src / "requirements.txt").write_text("django>=4.2,<6\ngunicorn==23.0.0\n")
    (src / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT app:application\n")
    cli("deploy", "-a", app_name, str(src), timeout=900)
    url = Url.of_app(app_name)
    assert url.scheme == "https"
    _wait_ok(url, timeout=60)
    page = request(url, "/")
    assert page.status == 200
    assert b"Getting started with Django" in page.body  # type: ignore[attr-defined]
    assert b"secure=True" in page.body  # type: ignore[attr-defined]


def _served(port: int, host: str, cafile: Path, timeout: float = 20.0) -> dict[str, str]:
    """The echo app's view of a request to `host` (SNI and Host), once the router serves it
    with a certificate `cafile` verifies."""
    deadline = time.monotonic() + timeout
    answer = ""
    while time.monotonic() < deadline:
        answer = tls_get(port, host, cafile, "/headers")
        if answer.startswith("200 "):
            return dict(json.loads(answer[4:]))
        time.sleep(0.3)
    raise AssertionError(f"https://{host}:{port}/ never verified and answered: {answer}")


def test_custom_domain_certificates_automatic_and_your_own(app_name: str, tmp_path: Path) -> None:
    cli("deploy", "-a", app_name, str(_echo_app(tmp_path)))
    url = Url.of_app(app_name)
    _wait_ok(url)
    local_ca = Path(str(cli_json("local", "status")["ca_cert"]))  # type: ignore[index]
    domain = f"www.{app_name}.example.test"
    # Not a domain of the app yet: the router has only its default certificate for it.
    assert "CERTIFICATE_VERIFY_FAILED" in tls_get(url.port, domain, local_ca)

    added = cli("domains:add", domain, "-a", app_name)
    assert f"curl --resolve {domain}:{url.port}:127.0.0.1" in added.stderr
    seen = _served(url.port, domain, local_ca)  # the automatic certificate, from the local CA
    assert seen["host"] == f"{domain}:{url.port}" and seen["x-forwarded-proto"] == "https"
    certs = cli_json("certs", "-a", app_name)
    assert isinstance(certs, list)
    assert [(c["kind"], c["domains"], c["status"], c["serving"]) for c in certs] == [
        ("auto", [domain], "issued", True)
    ]
    domains = cli_json("domains", "-a", app_name)
    assert isinstance(domains, list)
    assert {
        "hostname": domain,
        "kind": "custom",
        "certificate": "auto: issued (serving)",
    } in domains

    # Your own certificate (leaf + intermediate, a root only the client trusts) replaces it.
    own = user_cert(tmp_path / "own", [domain])
    crt, key = own.write(tmp_path / "own")
    row = cli_json("certs:add", str(crt), str(key), "-a", app_name)
    assert isinstance(row, dict) and row["kind"] == "custom" and row["domains"] == [domain]
    assert _served(url.port, domain, own.root)["host"].startswith(domain)
    certs = cli_json("certs", "-a", app_name)
    assert isinstance(certs, list) and [c["kind"] for c in certs] == ["custom"]
    assert key.read_bytes().decode().splitlines()[1] not in cli("certs", "-a", app_name).stdout

    # Renewed in place (another CA this time): the same certificate id serves the new one.
    renewed = user_cert(tmp_path / "renewed", [domain])
    crt2, key2 = renewed.write(tmp_path / "renewed")
    row2 = cli_json("certs:update", row["id"], str(crt2), str(key2), "-a", app_name)
    assert isinstance(row2, dict) and row2["id"] == row["id"]
    assert _served(url.port, domain, renewed.root)["host"].startswith(domain)

    # Removed again: the automatic certificate comes back; the domain removed: nothing left.
    cli("certs:remove", row["id"], "-a", app_name)
    _served(url.port, domain, local_ca)
    cli("domains:remove", domain, "-a", app_name)
    assert cli_json("certs", "-a", app_name) == []
    _wait_ok(url)  # the app's own URL never stopped serving
