"""Log drains end to end, on the controlled platform: a TCP syslog server on this machine,
reached by the hosts over the bridge, gets a request's router line and app line within 10 s,
as Heroku's octet-counted RFC 5424 frames carrying the drain's token."""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_support import Controlled, Url, get, wait_for

from provisioner import paths
from provisioner.localcloud import GATEWAY
from provisioner.localcloud.accesslog import AccessLogs
from provisioner.localfiles import LocalCloud
from provisioner.ops import drainship

pytestmark = pytest.mark.cloud


class Syslog:
    """A TCP syslog server on every address of this machine (the hosts come over the bridge)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("0.0.0.0", 0))
        self.port = self.listener.getsockname()[1]
        self.data = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()

    def _receive(self, conn: socket.socket) -> None:
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk

    def frames(self) -> list[str]:
        found, data = [], self.data
        while data:
            length, _, rest = data.partition(b" ")
            found.append(rest[: int(length)].decode())
            data = rest[int(length) :]
        return found


class RouterDelivery:
    """The local cloud's router lines into buckets, as its daemon does once it runs code that
    has accesslog.py: a daemon started before that (it runs until `local down`) gets it here."""

    def __init__(self, world: Controlled) -> None:
        self.stop = threading.Event()
        self.elbv2 = world.aws.elbv2
        self.logs = AccessLogs(
            LocalCloud(paths.local_state_dir()).router_log, self.elbv2, world.aws.s3
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            lbs = self.elbv2.describe_load_balancers()["LoadBalancers"]
            self.logs.deliver((lb["LoadBalancerName"], lb["LoadBalancerArn"]) for lb in lbs)


@pytest.fixture
def drained_app(controlled: Controlled, tmp_path: Path) -> Iterator[tuple[str, Syslog, Url]]:
    server = Syslog()
    delivery = None
    if not LocalCloud(paths.local_state_dir()).status().get("access_logs"):
        delivery = RouterDelivery(controlled)
        delivery.thread.start()
    (tmp_path / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    app = f"dr-{secrets.token_hex(3)}"
    controlled.cli("apps:create", app, "--no-remote")
    try:
        added = controlled.cli("drains:add", f"syslog://{GATEWAY}:{server.port}", "-a", app)
        assert re.fullmatch(r"d\.[0-9a-f-]{36}\n", added.stdout), added.stdout
        added_at = time.monotonic()
        controlled.cli("deploy", "-a", app, str(tmp_path))
        # The shippers read the drains at most CACHE_SECONDS late (the README: a new drain gets
        # lines within about 5 s); a deploy may now take less than that.
        time.sleep(max(0.0, added_at + drainship.CACHE_SECONDS + 0.5 - time.monotonic()))
        web_url = urlsplit(str(controlled.json("apps:info", "-a", app)["web_url"]))
        yield app, server, Url(str(web_url.hostname), int(web_url.port or 443), web_url.scheme)
    finally:
        server.listener.close()
        if delivery is not None:
            delivery.stop.set()
        controlled.cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def test_a_syslog_drain_gets_router_and_app_lines(
    controlled: Controlled, drained_app: tuple[str, Syslog, Url]
) -> None:
    app, server, url = drained_app
    token = controlled.json("drains", "-a", app)[0]["token"]
    path = f"/drain-{secrets.token_hex(4)}"
    asked = time.monotonic()
    assert get(url, path)[0] == 404  # http.server: no such file, and a line about it

    def both() -> list[str] | None:
        mine = [f for f in server.frames() if path in f]
        router = [f for f in mine if f" {token} router router - - at=info method=GET " in f]
        dyno = [f for f in mine if re.search(rf" {token} app web\.1 - - .*GET {path} ", f)]
        return [*router, *dyno] if router and dyno else None

    try:
        router, dyno = wait_for("the request's router and app lines at the drain", both, 10, 0.2)
    except AssertionError:
        print("frames with the path:", [f for f in server.frames() if path in f])
        print("drains:", controlled.json("drains", "-a", app))
        print(controlled.cli("controller:status", "-n", "30", check=False).stdout)
        raise
    print(f"router and app lines at the drain after {time.monotonic() - asked:.1f} s")
    assert time.monotonic() - asked < 10
    assert re.match(r"<158>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 ", router), router
    assert "dyno=web.1 " in router and " status=404 " in router, router
    assert dyno.endswith("\n") and dyno.count("\n") == 1
    # systemd's words about the dyno, as on Heroku. Those of the deploy may have come before
    # the shippers knew the drain (they read drains at most 5 s late): a restart's come after.
    controlled.cli("ps:restart", "web", "-a", app)
    wait_for(
        "systemd's words about the restarted dyno at the drain",
        lambda: [
            f for f in server.frames() if f" {token} dynoform web.1 - - Starting process" in f
        ],
        15,
        0.2,
    )
    counted = wait_for(
        "the shippers' counts",
        lambda: (d := controlled.json("drains", "-a", app)[0])["sent"] >= 3 and d,
        20,
    )
    assert counted["dropped"] == 0 and counted["url"] == f"syslog://{GATEWAY}:{server.port}"
