"""`dashboard`: a web page of the platform's apps and hosts, on 127.0.0.1 behind a token."""

from __future__ import annotations

import os
import sys
import webbrowser

import typer

from provisioner.cli.common import g, status
from provisioner.dashboard import server


def dashboard(
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the address."),
) -> None:
    """Serve the dashboard until interrupted; prints its address, which holds a secret token.

    Example: dynoform dashboard --port 8700 --no-browser
    """
    dash = server.serve(g().ctx, port)
    sys.stdout.write(dash.url + "\n")  # data: stdout, whole (a terminal must not wrap it)
    sys.stdout.flush()
    status("dashboard: open the address above (keep it secret); Ctrl-C stops it")
    if not no_browser and _has_display():
        webbrowser.open(dash.launch_page().as_uri())  # the token stays off command lines
    try:
        dash.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        dash.server_close()


def _has_display() -> bool:
    """Without one, webbrowser would start a text browser in this terminal."""
    return sys.platform == "darwin" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def register(root: typer.Typer) -> None:
    root.command("dashboard")(dashboard)
