"""`dynoform dashboard` in headless Chromium: an app with its dynos and releases, config var
names without their values, the live log tail, an action through the same operation as the
CLI, and 401 for requests without the token."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get, wait_for
from headless import Browser

from provisioner.dashboard import launch

pytestmark = pytest.mark.cloud
SECRET = "not-for-the-page-7c1e"
SIZE = (1200, 800)


@pytest.fixture
def dashboard() -> Iterator[str]:
    """The address the command prints (with its token), while the command runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "dashboard", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "DYNOFORM_TARGET": "local"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url, url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fetch(
    url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), int(parts.port or 80), timeout=60)
    try:
        conn.request(method, path, body="" if method == "POST" else None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def session_cookie(url: str) -> dict[str, str]:
    """The cookie a browser gets from the printed address: a session id, not the token."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), int(parts.port or 80), timeout=60)
    try:
        conn.request("GET", f"/?{parts.query}")
        response = conn.getresponse()
        response.read()
        set_cookie = response.getheader("Set-Cookie") or ""
    finally:
        conn.close()
    assert set_cookie.startswith(f"dynoform_dashboard_{parts.port}="), set_cookie
    assert parts.query.removeprefix("token=") not in set_cookie
    return {"Cookie": set_cookie.split(";")[0]}


def test_the_dashboard_shows_an_app_and_refuses_requests_without_the_token(
    app_name: str, dashboard: str, tmp_path: Path
) -> None:
    cli("config:set", f"DASHBOARD_SECRET={SECRET}", "-a", app_name)
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    dynos = cli_json("ps", "-a", app_name)
    assert isinstance(dynos, list) and len(dynos) == 1
    host = dynos[0]["host"]
    url = Url.of_app(app_name)
    mark = f"/dash-{secrets.token_hex(4)}"
    assert get(url, mark)[0] == 404  # a router line to find in the tail
    for _ in range(20):  # figures for the charts
        assert get(url, "/")[0] == 200

    for path in ("/", f"/apps/{app_name}", "/static/style.css", "/?token=wrong"):
        assert fetch(dashboard, path)[0] == 401, path

    port = urlsplit(dashboard).port
    cookie = session_cookie(dashboard)
    status, body = fetch(dashboard, f"/apps/{app_name}/metrics.json", headers=cookie)
    assert status == 200 and json.loads(body)["available"] is True, body  # counted: metrics' tests
    launch_page = launch.write(dashboard)  # what the command opens a browser on
    with Browser(tmp_path / "profile", SIZE) as browser:
        browser.open(launch_page.as_uri())
        browser.wait_for(f"document.querySelector('a.app[href=\"/apps/{app_name}\"]') !== null")
        launch.remove(launch_page)  # the command's server removes its own once the cookie is set
        overview = browser.html()
        assert "1 up" in overview and host in overview
        assert re.search(r'<td class="num">\d+\.\d\d \d+\.\d\d \d+\.\d\d</td>', overview)  # load
        if keep := os.environ.get("DYNOFORM_DASHBOARD_SCREENSHOT"):
            browser.screenshot(Path(keep).with_suffix(".overview.png"))

        browser.open(dashboard.replace("/?", f"/apps/{app_name}?"))
        browser.wait_for(f"document.getElementById('logs').textContent.includes('{mark}')")
        browser.wait_for("document.querySelectorAll('#metrics svg').length === 3")
        page = browser.html()
        assert f'<h1 id="app-name">{app_name}</h1>' in page
        assert "<td>web.1</td>" in page and host in page
        assert '<span class="badge state-up">up</span>' in page
        assert "<td>v2 <span" in page and "<td>v1</td>" in page  # v2 current
        assert "<code>DASHBOARD_SECRET</code>" in page and SECRET not in page
        browser.screenshot(tmp_path / "app.png")
    png = (tmp_path / "app.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20]), int.from_bytes(png[20:24])) == SIZE
    if keep := os.environ.get("DYNOFORM_DASHBOARD_SCREENSHOT"):  # the README's picture
        shutil.copy(tmp_path / "app.png", keep)

    for path in ("/", f"/apps/{app_name}"):
        started = time.monotonic()
        assert fetch(dashboard, path, headers=cookie)[0] == 200
        print(f"GET {path}: {time.monotonic() - started:.2f} s")  # noqa: T201 - for -s runs
    action = f"/apps/{app_name}/actions/maintenance-on"
    assert fetch(dashboard, action, "POST", cookie)[0] == 403  # no Origin: not our page
    ours = {**cookie, "Origin": f"http://127.0.0.1:{port}"}
    assert fetch(dashboard, action, "POST", ours)[0] == 303
    wait_for(
        "maintenance on through the CLI's operation",
        lambda: (
            "Maintenance off</button>" in fetch(dashboard, f"/apps/{app_name}", headers=cookie)[1]
        ),
        timeout=60,
    )
