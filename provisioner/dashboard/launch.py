"""The page a browser is opened on: it goes on to the token's address, which thus stays off
command lines (`xdg-open URL` and the browser it starts show their argv to every local user in
/proc/*/cmdline). As Jupyter does: a 0600 file in a 0700 directory, opened as file://, removed
once the browser has its session cookie or when the server stops."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path


def page(url: str) -> str:
    """A refresh, not a script: the browser may block scripts of file:// pages."""
    href = html.escape(url, quote=True)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
        f'<meta http-equiv="refresh" content="0; url={href}">\n'
        "<title>dynoform dashboard</title></head>\n"
        f'<body><p><a href="{href}">Open the dashboard</a></p></body></html>\n'
    )


def write(url: str) -> Path:
    """The page in a new private directory (mkdtemp makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="dynoform-dashboard-"))
    path = folder / "open.html"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(page(url))
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)
