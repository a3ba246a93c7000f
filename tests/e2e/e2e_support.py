"""What the end-to-end tests share: running the real CLI, requests through the router."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def cli(
    *args: str,
    check: bool = True,
    timeout: float = 600,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `dynoform ARGS` as a user would, on the local target."""
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {}), "DYNOFORM_TARGET": "local"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"dynoform {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def cli_json(*args: str) -> object:
    return json.loads(cli(*args, "--json").stdout)


@dataclass(frozen=True)
class Url:
    host: str
    port: int
    scheme: str = "https"

    @classmethod
    def of_app(cls, app: str) -> Url:
        info = cli_json("apps:info", "-a", app)
        assert isinstance(info, dict)
        parts = urlsplit(str(info["web_url"]))
        return cls(str(parts.hostname), int(parts.port or 443), parts.scheme)


def connect(url: Url, timeout: float = 5.0) -> http.client.HTTPConnection:
    """A connection to the local router for the app (HTTPS checked against the local CA)."""
    from provisioner.localcloud import ca

    return ca.router_connection(url.host, url.port, url.scheme, timeout)


def request(
    url: Url, path: str = "/", headers: dict[str, str] | None = None, timeout: float = 5.0
) -> http.client.HTTPResponse:
    """One request (body read) through the local router with the app's Host header."""
    conn = connect(url, timeout)
    try:
        conn.request("GET", path, headers={"Host": url.host, **(headers or {})})
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        return response
    finally:
        conn.close()


def get(url: Url, path: str = "/json", timeout: float = 5.0) -> tuple[int, bytes]:
    """One request through the local router (HAProxy on loopback) with the app's Host header."""
    response = request(url, path, timeout=timeout)
    return response.status, response.body  # type: ignore[attr-defined]


def dyno_of(url: Url) -> dict[str, str]:
    status, body = get(url)
    assert status == 200, (status, body[:200])
    return dict(json.loads(body))


@dataclass
class Background:
    """A loop in a thread of its own for the length of a `with` block."""

    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        raise NotImplementedError


@dataclass
class Load(Background):
    """A bounded request loop (about `rate` a second) counting every failed request.

    By default each request has a connection of its own. `keep_alive`: one client connection
    for all (a new one only after the router closed it), so every request but a connection's
    first goes to a dyno over the router's pooled connections; with `method="POST"`, requests
    the router never sends twice."""

    url: Url
    rate: float = 20.0
    max_seconds: float = 300.0
    keep_alive: bool = False
    method: str = "GET"
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    releases: set[str] = field(default_factory=set)
    _conn: http.client.HTTPConnection | None = field(default=None, init=False)

    def _get(self) -> tuple[int, bytes]:
        if not self.keep_alive:
            return self._send(connect(self.url), close=True)
        if self._conn is None:
            self._conn = connect(self.url)
        try:
            return self._send(self._conn)
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = None
            raise

    def _send(self, conn: http.client.HTTPConnection, close: bool = False) -> tuple[int, bytes]:
        try:
            body = b"" if self.method == "POST" else None
            conn.request(self.method, "/json", body=body, headers={"Host": self.url.host})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            if close:
                conn.close()

    def _loop(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            started = time.monotonic()
            try:
                status, body = self._get()
                if status == 200:
                    self.ok += 1
                    self.releases.add(json.loads(body)["release"])
                else:
                    self.failures.append(f"HTTP {status}: {body[:120]!r}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))


def new_app(prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cli("apps:create", name, "--no-remote")
    return name


def cli_at_once(
    commands: list[list[str]], timeout: float = 600, env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run each `dynoform ARGS` in its own thread, all released at the same moment; the
    results in the order of commands (nothing checked: the caller judges them)."""
    start = threading.Barrier(len(commands))
    results: list[subprocess.CompletedProcess[str] | None] = [None] * len(commands)

    def one(i: int) -> None:
        start.wait()
        results[i] = cli(*commands[i], check=False, timeout=timeout, env=env)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout + 30)
    assert all(r is not None for r in results), "a command did not finish"
    return [r for r in results if r is not None]


# A platform with a working controller ----------------------------------------------------------
CONTROLLED_TARGET = "ctltest"
CONTROLLED_CIDR = "198.18.192.0/18"  # apart from the default platform's and test_fleet's ranges


@dataclass
class Controlled:
    """The controlled platform: its own target, VPC range, config dir and key, with its
    controller running (the suite's shared platform has its controller paused)."""

    env: dict[str, str]
    aws: Any
    platform: str

    def cli(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return cli("-t", CONTROLLED_TARGET, *args, env=self.env, check=check, timeout=timeout)

    def json(self, *args: str) -> Any:
        return json.loads(self.cli("--json", *args).stdout)

    def runners(self) -> list[dict[str, Any]]:
        return [h for h in self.json("hosts") if h["role"] == "runner"]

    @contextmanager
    def deployed(self, prefix: str, source: Path) -> Iterator[tuple[str, Url]]:
        """A new app `<prefix>-<hex>` of `source`, deployed: (its name, its URL); destroyed
        afterwards, even when the test fails."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.cli("apps:create", name, "--no-remote")
        try:
            self.cli("deploy", "-a", name, str(source), timeout=900)
            web_url = urlsplit(str(self.json("apps:info", "-a", name)["web_url"]))
            yield name, Url(str(web_url.hostname), int(web_url.port or 443), web_url.scheme)
        finally:
            self.cli("apps:destroy", "-a", name, "--confirm", name, check=False)


def wait_for(what: str, check: Callable[[], Any], timeout: float, step: float = 1.0) -> Any:
    """check()'s first truthy result within timeout s; else fail, saying the last one."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
