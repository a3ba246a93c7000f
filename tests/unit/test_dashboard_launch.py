"""The browser opens a private file:// page, never the token's address on a command line."""

from __future__ import annotations

import http.client
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from provisioner.cli import dashboard as cli_dashboard
from provisioner.context import Context
from provisioner.dashboard import launch
from provisioner.dashboard.server import Server
from provisioner.targets import Target

TOKEN = "launch-test-token"
URL = f"http://127.0.0.1:8700/?token={TOKEN}"


def test_the_page_goes_on_to_the_address() -> None:
    assert launch.page(URL) == (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
        f'<meta http-equiv="refresh" content="0; url={URL}">\n'
        "<title>dynoform dashboard</title></head>\n"
        f'<body><p><a href="{URL}">Open the dashboard</a></p></body></html>\n'
    )
    assert '"><script>' not in launch.page('http://x/?a="><script>')


def test_the_page_is_private_and_removed_with_its_directory() -> None:
    path = launch.write(URL)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert TOKEN in path.read_text()
    finally:
        launch.remove(path)
    assert not path.parent.exists()


def test_the_command_opens_the_file_not_the_token_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dash = Server(Context(Target("nowhere", kind="local")), 0, TOKEN)
    opened: list[tuple[str, Path]] = []

    def browse(url: str) -> bool:
        assert dash.launcher is not None
        opened.append((url, dash.launcher))
        return True

    def serve_forever() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dash, "serve_forever", serve_forever)
    monkeypatch.setattr(cli_dashboard.server, "serve", lambda ctx, port: dash)
    monkeypatch.setattr(cli_dashboard, "g", lambda: SimpleNamespace(ctx=None))
    monkeypatch.setattr(cli_dashboard, "_has_display", lambda: True)
    monkeypatch.setattr(cli_dashboard.webbrowser, "open", browse)
    cli_dashboard.dashboard(port=0, no_browser=False)
    [(url, path)] = opened
    assert url == path.as_uri() and url.startswith("file:///") and TOKEN not in url
    assert capsys.readouterr().out == dash.url + "\n"  # the printed address keeps the token
    assert not path.exists() and not path.parent.exists()  # gone when the server stopped


def test_the_file_goes_once_the_browser_has_its_cookie() -> None:
    dash = Server(Context(Target("nowhere", kind="local")), 0, TOKEN)
    try:
        path = dash.launch_page()
        assert path.exists()
        conn = http.client.HTTPConnection("127.0.0.1", dash.gate.port, timeout=5)
        conn.request("GET", f"/?token={TOKEN}")
        dash.handle_request()
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.getheader("Set-Cookie", "").startswith(dash.gate.cookie_name + "=")
        assert not path.parent.exists() and dash.launcher is None
    finally:
        dash.server_close()
