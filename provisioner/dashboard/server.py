"""The dashboard's HTTP server: stdlib ThreadingHTTPServer, jinja2 pages, a log stream.

Routes (every one behind the gate of `auth`):
  GET  /                              apps and hosts
  GET  /apps/APP                      one app
  GET  /apps/APP/metrics.json         its metrics, for the charts the page draws
  GET  /apps/APP/logs                 its logs: the newest lines, then new ones (server-sent events)
  POST /apps/APP/actions/ACTION       restart, scale, rollback, maintenance-on, maintenance-off
  GET  /static/FILE                   the CSS and the script
"""

from __future__ import annotations

import html
import json
import queue
import re
import sys
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from provisioner import logs as lg
from provisioner.context import Context
from provisioner.dashboard import auth, gather, launch
from provisioner.dashboard.actions import Activities
from provisioner.dashboard.views import short_time
from provisioner.errors import DynoformError, NotFound
from provisioner.model.names import APP_NAME_RE
from provisioner.ops import logs
from provisioner.ops import metrics as metrics_ops
from provisioner.paths import resource_dir

HISTORY_LINES = 100
STREAM_SECONDS = 600.0  # a stream ends after this; the browser's EventSource opens a new one
HEARTBEAT_SECONDS = 15.0
MAX_STREAMS = 8  # each one observes the whole fleet every few seconds
MAX_FORM_BYTES = 4096
STATIC = {"style.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
# The page loads only our own files; nothing inline runs, no other site may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
APP_ROUTE = re.compile(r"/apps/([^/]+)(/metrics\.json|/logs|/actions/[a-z-]+)?")


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(resource_dir("templates") / "dashboard"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = short_time
    env.filters["clock"] = lambda t: datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
    return env


class Server(ThreadingHTTPServer):
    """One Context for every request (operations share it across threads, as their fan-outs do)."""

    daemon_threads = True

    def __init__(self, ctx: Context, port: int, token: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.ctx = ctx
        self.gate = auth.Gate(token or auth.new_token(), self.server_address[1])
        self.pages = templates()
        self.activities = Activities(ctx)
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self.launcher: Path | None = None

    @property
    def url(self) -> str:
        return self.gate.url()

    def launch_page(self) -> Path:
        """A private file:// page that goes on to `url`: what to open a browser on."""
        self.launcher = launch.write(self.url)
        return self.launcher

    def forget_launch_page(self) -> None:
        """Once a browser holds a session (or the server stops), the token's file goes."""
        path, self.launcher = self.launcher, None
        if path is not None:
            launch.remove(path)

    def server_close(self) -> None:
        self.forget_launch_page()
        super().server_close()


def serve(ctx: Context, port: int = 0, token: str | None = None) -> Server:
    """A dashboard bound to 127.0.0.1:port (0: any free port); `serve_forever()` runs it."""
    ctx.platform(create=False)  # NoPlatform now, not on the first page
    return Server(ctx, port, token)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "dynoform-dashboard"
    sys_version = ""

    # --- entry points --------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: request lines would carry the token of the first one."""

    # --- dispatch ------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        if method == "POST":  # answered with a redirect or an error: a fresh connection after
            self.close_connection = True
        headers = auth.header_map(self.headers.items())
        verdict = self.server.gate.verdict(method, parts.path, parts.query, headers)
        if verdict.status == 303:
            assert verdict.location is not None and verdict.set_cookie is not None
            self.server.forget_launch_page()
            self._enter(verdict.location, verdict.set_cookie)
            return
        if not verdict.ok:
            self._text(verdict.status, f"{verdict.status} {verdict.reason}\n")
            return
        try:
            self._route(method, parts.path, parts.query)
        except NotFound as exc:
            self._page(404, "error.html", title="Not found", message=str(exc))
        except DynoformError as exc:
            self._page(500, "error.html", title="Error", message=str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - one broken page must not stop the server
            sys.stderr.write(f"dashboard: {method} {parts.path}: {type(exc).__name__}: {exc}\n")
            self._page(500, "error.html", title="Error", message=f"{type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str, query: str) -> None:
        ctx = self.server.ctx
        if method == "GET" and path == "/":
            self._page(200, "overview.html", view=gather.overview(ctx), title="Apps")
            return
        if method == "GET" and path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
            return
        match = APP_ROUTE.fullmatch(path)
        app = unquote(match.group(1)) if match else ""
        if not match or not APP_NAME_RE.fullmatch(app):
            raise NotFound(f"no page {path}")
        rest = match.group(2) or ""
        if method == "POST" and rest.startswith("/actions/"):
            self._action(app, rest.removeprefix("/actions/"))
        elif method == "GET" and rest == "":
            view = gather.app_page(ctx, app)
            activities = self.server.activities.of(app)
            self._page(200, "app.html", view=view, activities=activities, title=app)
        elif method == "GET" and rest == "/metrics.json":
            self._json(200, metrics(ctx, app, dict(parse_qsl(query)).get("since", "3600")))
        elif method == "GET" and rest == "/logs":
            self._stream_logs(app)
        else:
            raise NotFound(f"no page {method} {path}")

    def _action(self, app: str, action: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_FORM_BYTES:
            self._text(413, "form too large\n")
            return
        form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", errors="replace")))
        self.server.ctx.store.app(app)  # NotFound before a thread starts
        try:
            self.server.activities.start(app, action, form)
        except DynoformError as exc:  # a bad form: nothing started
            self._page(400, "error.html", title="Not done", message=str(exc))
            return
        self._redirect(f"/apps/{app}#activity")

    # --- the log stream ------------------------------------------------------------------
    def _stream_logs(self, app: str) -> None:
        """The newest lines, then each new one, as server-sent events until the browser goes
        (or the tail ends: the browser's EventSource then opens a new stream)."""
        if not self.server.streams.acquire(blocking=False):
            self._text(503, f"too many log streams open (at most {MAX_STREAMS})\n")
            return
        try:
            self.server.ctx.store.app(app)
            self._stream_tail(app)
        finally:
            self.server.streams.release()

    def _stream_tail(self, app: str) -> None:
        ctx = self.server.ctx
        lines: queue.Queue[lg.LogLine] = queue.Queue(maxsize=10000)
        tail = logs.Tail(ctx, app, lambda line: _offer(lines, line))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Connection", "close")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        threading.Thread(target=_run_tail, args=(tail,), daemon=True).start()
        try:
            for line in self._history(app):
                self._event(line)
            self._send(b": history sent\n\n")
            while not tail.stop.is_set():
                try:
                    self._event(lines.get(timeout=HEARTBEAT_SECONDS))
                except queue.Empty:
                    self._send(b": ping\n\n")
            while not lines.empty():  # the tail's last words, its error among them
                self._event(lines.get_nowait())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            tail.stop.set()

    def _history(self, app: str) -> list[lg.LogLine]:
        """The newest lines; an error is a line of the stream (its headers are sent)."""
        try:
            return logs.history(self.server.ctx, app, HISTORY_LINES)
        except DynoformError as exc:
            return [lg.LogLine(time.time(), "dynoform", "dashboard", f"no history: {exc}")]

    def _event(self, line: lg.LogLine) -> None:
        data = json.dumps({"text": line.format(), "source": line.source}, ensure_ascii=False)
        self._send(f"data: {data}\n\n".encode())

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    # --- answers -------------------------------------------------------------------------
    def _page(self, status: int, name: str, **values: Any) -> None:
        body = self.server.pages.get_template(name).render(**values).encode()
        self._answer(status, "text/html; charset=utf-8", body)

    def _json(self, status: int, data: Any) -> None:
        self._answer(status, "application/json", json.dumps(data, default=str).encode())

    def _text(self, status: int, text: str) -> None:
        self._answer(status, "text/plain; charset=utf-8", text.encode())

    def _static(self, name: str) -> None:
        if name not in STATIC:
            raise NotFound(f"no file {name}")
        body = (resource_dir("templates") / "dashboard" / "static" / name).read_bytes()
        self._answer(200, STATIC[name], body)

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()

    def _enter(self, location: str, cookie: str) -> None:
        """Set the session cookie, then go on by a refresh rather than a 303: after a redirect
        the browser counts the request as coming from where the first one did (the file://
        launch page: another site) and keeps the SameSite=Strict cookie to itself."""
        href = html.escape(location, quote=True)
        body = f'<!DOCTYPE html>\n<meta http-equiv="refresh" content="0; url={href}">\n'
        self.send_response(200)
        self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body.encode())))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body.encode())

    def _answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _run_tail(tail: logs.Tail) -> None:
    try:
        tail.run(STREAM_SECONDS)
    except Exception:  # noqa: BLE001, S110 - already the stream's last line; the stream ends
        pass


def _offer(lines: queue.Queue[lg.LogLine], line: lg.LogLine) -> None:
    """A browser that reads too slowly loses lines rather than growing the server's memory."""
    try:
        lines.put_nowait(line)
    except queue.Full:
        pass


def metrics(ctx: Context, app: str, since: str) -> dict[str, Any]:
    """The app's metrics for the charts; `available: false` with the reason when there are none."""
    ctx.store.app(app)
    seconds = int(since) if since.isdigit() else 3600
    try:
        data = metrics_ops.app_metrics(ctx, app, since_s=seconds).to_json()
    except DynoformError as exc:
        return {"available": False, "reason": f"metrics not available: {exc}"}
    return {"available": True, **data}
