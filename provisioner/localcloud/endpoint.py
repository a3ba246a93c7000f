"""The local cloud's AWS endpoint: moto's WSGI app on a threaded HTTP server that keeps its
connections, as AWS's endpoints do.

moto's own server (werkzeug's) answers every request with `Connection: close`, since Python's
http.server cannot tell where a request's body ends if the app leaves some of it unread. So
every AWS call paid a new TCP connection and a new server thread: about 1.5 ms of a call's
~5 ms here, and a deploy makes ~45 calls, most of them one after another. This handler reads
a request's body (its Content-Length) before the app runs, so the next request starts where
it should, and keeps the connection unless the client asks to close it. A chunked body (no
Content-Length) is served as before, with the connection closed after it.
"""

from __future__ import annotations

import io
import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

IDLE_TIMEOUT_S = 60  # an idle kept connection's thread ends after this


class KeepAliveHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_S
    keep = False

    def setup(self) -> None:
        super().setup()
        # The head and the body go out in separate writes: without NODELAY the second waits
        # for the client's delayed ACK (40 ms) on a kept connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self) -> None:
        length = self.headers.get("Content-Length", "")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self.keep = not (self.close_connection or chunked or (length and not length.isdigit()))
        if not self.keep:
            super().run_wsgi()
            return
        wire = self.rfile
        self.rfile = io.BytesIO(wire.read(int(length)) if length else b"")
        try:
            super().run_wsgi()
        finally:
            self.rfile = wire

    def send_header(self, keyword: str, value: str) -> None:
        if self.keep and keyword.lower() == "connection" and value.lower() == "close":
            return  # werkzeug closes every connection; this one is safe to keep
        super().send_header(keyword, value)


class Endpoint:
    """moto served on `address:port` (port 0: any free one) in a thread of this process."""

    def __init__(self, address: str, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app: Any = DomainDispatcherApplication(create_backend_app)
        self.server: BaseWSGIServer = make_server(
            address, port, app, threaded=True, request_handler=KeepAliveHandler
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
