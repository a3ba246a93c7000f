"""Log drains against moto and real sockets: the records and the CLI, the leader shipping
events and router lines (an ALB access log in the bucket) to a TCP syslog server, and the
outlets' TLS, HTTPS batches and retries."""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import platform_cli

from provisioner import authority, events
from provisioner.aws import accesslogs
from provisioner.aws.platform import add_shard
from provisioner.context import Context
from provisioner.localcloud.accesslog import AccessLogs
from provisioner.model import drains as m
from provisioner.model.release import Release
from provisioner.ops import drains, drainship
from provisioner.store import now_iso
from provisioner.targets import get_target

ALB = (
    "http 2026-11-30T22:40:00.123456Z app/df-t1/50dc6c495c0c9188 203.0.113.7:2817 "
    '10.42.1.5:20001 0.000 0.012 0.000 200 200 34 366 "GET http://{host}:80/cart HTTP/1.1" '
    '"curl/8.0" - - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1 '
    '"Root=1-5" "{host}" "-" 0 2026-11-30T22:40:00.111000Z "forward" "-" "-" '
    '"10.42.1.5:20001" "200" "-" "-"'
)


class Syslog:
    """A TCP syslog server on loopback that keeps what it got."""

    def __init__(self, wrap: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.wrap = wrap
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()

    def _receive(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
            while chunk := conn.recv(65536):
                self.data += chunk
        except OSError:
            pass

    def frames(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = parse_frames(self.data)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} frames not received: {self.data!r}")

    def close(self) -> None:
        self.listener.close()


def parse_frames(data: bytes) -> list[str]:
    found = []
    while data:
        length, _, rest = data.partition(b" ")
        found.append(rest[: int(length)].decode())
        data = rest[int(length) :]
    return found


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: Any, capsys: Any) -> Iterator[Any]:
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        yield call


@pytest.fixture
def syslog() -> Iterator[Syslog]:
    server = Syslog()
    try:
        yield server
    finally:
        server.close()


def test_drain_commands(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", "ftp://x", "-a", "shop")[2] == (
        "error: drain URL: 'ftp://x': must start with syslog://, syslog+tls:// or https://\n"
    )
    code, out, err = cli("drains:add", "https://user:s3cret@logs.example.com/in", "-a", "shop")
    assert code == 0 and "s3cret" not in out + err
    token = out.strip()
    assert m.token_of(token.removeprefix("d.")) == token
    assert err.endswith("added drain https://***@logs.example.com/in: app, router and dynoform lines go there within seconds\n")  # fmt: skip
    assert cli("drains", "add", "syslog://logs.example.com:514", "-a", "shop")[0] == 0
    code, _, err = cli("drains:add", "syslog://logs.example.com:514", "-a", "shop")
    assert err == "error: drain URL: syslog://logs.example.com:514 is a drain of shop already\n"
    listed = json.loads(cli("drains", "-a", "shop", "--json")[1])
    assert [(d["url"], d["sent"], d["dropped"]) for d in listed] == [
        ("https://***@logs.example.com/in", 0, 0),
        ("syslog://logs.example.com:514", 0, 0),
    ]
    assert listed[0]["token"] == token and "s3cret" not in cli("drains", "-a", "shop")[1]
    assert cli("drains:remove", "https://***@logs.example.com/in", "-a", "shop")[2] == (
        "removed drain https://***@logs.example.com/in\n"
    )
    assert cli("drains:remove", "syslog://other:1", "-a", "shop")[2] == (
        "error: shop has no drain syslog://other:1 (hint: see `dynoform drains -a shop`)\n"
    )
    ctx = Context(get_target("t1"))
    assert drains.indexed(ctx.store.docs) == ["shop"]
    platform = ctx.platform(create=False)
    attrs = ctx.aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=platform.lb_arn)
    on = {a["Key"]: a["Value"] for a in attrs["Attributes"]}
    assert (on["access_logs.s3.enabled"], on["access_logs.s3.bucket"]) == ("true", platform.bucket)
    policy = json.loads(ctx.aws.s3.get_bucket_policy(Bucket=platform.bucket)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["DynoformAlbAccessLogs"]
    assert cli("drains:remove", listed[1]["token"], "-a", "shop")[2] == (
        "no drain is left on the platform: the load balancer's access logs are off\n"
        "removed drain syslog://logs.example.com:514\n"
    )
    attrs = ctx.aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=platform.lb_arn)
    assert {a["Key"]: a["Value"] for a in attrs["Attributes"]}["access_logs.s3.enabled"] == "false"
    assert json.loads(cli("drains", "-a", "shop", "--json")[1]) == []
    assert drains.indexed(ctx.store.docs) == []


def test_keys_in_drain_urls_are_masked(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    for key in ("KEY1", "KEY2"):
        url = f"https://intake.example.com/api/v2/logs?dd-api-key={key}"
        assert cli("drains:add", url, "-a", "shop")[0] == 0
    code, out, err = cli("drains", "-a", "shop")
    assert "KEY" not in out + err and "/…?dd-api-key=***" in out
    masked = "https://intake.example.com/…?dd-api-key=***"
    assert cli("drains:remove", masked, "-a", "shop")[2] == (
        f"error: drain URL: {masked} is 2 drains: name one by its token\n"
    )
    assert len(json.loads(cli("drains", "-a", "shop", "--json")[1])) == 2


def test_a_gone_shippers_buffer_and_error_are_not_shown(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    token = cli("drains:add", "syslog://logs.example.com:514", "-a", "shop")[1].strip()
    ctx = Context(get_target("t1"))
    docs = ctx.store.docs
    figures = {"sent": 5, "dropped": 1, "buffered": 7, "error": "x refused"}
    docs.put(
        "drains/stats/shop/i-gone.json",
        {"drains": {token: figures}, "at": "2026-01-01T00:00:00+00:00"},
    )
    docs.put(
        "drains/stats/shop/i-live.json",
        {"drains": {token: {**figures, "error": ""}}, "at": now_iso()},
    )
    (listed,) = json.loads(cli("drains", "-a", "shop", "--json")[1])
    assert (listed["sent"], listed["dropped"], listed["buffered"], listed["last_error"]) == (
        10,
        2,
        7,
        None,
    )
    assert cli("apps:destroy", "-a", "shop", "--confirm", "shop")[0] == 0
    assert docs.keys("drains/stats/shop/") == []


def test_the_leader_mends_the_index_of_apps_with_drains(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", "syslog://logs.example.com:514", "-a", "shop")[0] == 0
    assert cli("apps:rename", "store", "-a", "shop")[0] == 0  # the index still says shop
    ctx = Context(get_target("t1"))
    assert drains.indexed(ctx.store.docs) == ["shop"]
    shipper = drainship.Shipper(lambda: ctx.store.docs, "i-test")
    try:
        drainship.LeaderLines(shipper).tick(ctx, lambda: None)
        assert drains.indexed(ctx.store.docs) == ["store"]
        assert [d.url for d in shipper.drains("store")] == ["syslog://logs.example.com:514"]
        assert shipper.drains("shop") == []
    finally:
        shipper.close()


def test_an_app_out_of_the_index_has_its_senders_closed(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", "syslog://127.0.0.1:9", "-a", "shop")[0] == 0
    ctx = Context(get_target("t1"))
    now = [0.0]
    shipper = drainship.Shipper(lambda: ctx.store.docs, "i-test", clock=lambda: now[0])
    try:
        shipper.ship(_line("x"))
        (outlet,) = shipper.outlets.values()
        assert cli("drains:remove", "syslog://127.0.0.1:9", "-a", "shop")[0] == 0
        now[0] += drainship.CACHE_SECONDS
        assert shipper.drains("shop") == []
        assert shipper.outlets == {} and shipper.known == {} and outlet.stop.is_set()
    finally:
        shipper.close()


def _logs_on(ctx: Context) -> list[str]:
    found = []
    for shard in ctx.platform(create=False).all_shards:
        attrs = ctx.aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=shard.lb_arn)
        on = {a["Key"]: a["Value"] for a in attrs["Attributes"]}
        found.append(on.get("access_logs.s3.enabled", "false"))
    return found


def test_the_leader_keeps_every_shards_access_logs_as_the_index_says(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", "syslog://127.0.0.1:9", "-a", "shop")[0] == 0
    ctx = Context(get_target("t1"))
    ctx.remember_platform(add_shard(ctx.aws, ctx.target, ctx.platform(create=False)))
    assert _logs_on(ctx) == ["true", "false"]  # a shard made since the drain was added
    shipper = drainship.Shipper(lambda: ctx.store.docs, "i-test")
    leader = drainship.LeaderLines(shipper)
    ctx.aws.s3.delete_bucket_policy(Bucket=ctx.platform(create=False).bucket)
    try:
        leader.tick(ctx, lambda: None)
        assert _logs_on(ctx) == ["true", "true"]
        with pytest.raises(ctx.aws.s3.exceptions.ClientError):  # the controller leaves it be
            ctx.aws.s3.get_bucket_policy(Bucket=ctx.platform(create=False).bucket)
        assert cli("apps:destroy", "-a", "shop", "--confirm", "shop")[0] == 0
        docs = ctx.store.docs
        key = f"{accesslogs.PREFIX}/AWSLogs/123456789012/elasticloadbalancing/x.log"
        docs.s3.put_object(Bucket=docs.bucket, Key=key, Body=b"late\n")
        leader.reindexed_at = -drainship.REINDEX_SECONDS
        leader.tick(ctx, lambda: None)
        assert _logs_on(ctx) == ["false", "false"] and drains.indexed(docs) == []
        assert accesslogs.pending(docs.s3, docs.bucket) == []  # nobody's: deleted all the same
    finally:
        shipper.close()


def test_a_drain_url_refused_since_it_was_stored_stops_no_other(cli: Any) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", "syslog://127.0.0.1:9", "-a", "shop")[0] == 0
    ctx = Context(get_target("t1"))
    record = ctx.store.docs.get(drains.drains_key("shop"))
    assert record is not None
    bad = {**record.data["drains"][0], "url": "syslog://a..b:514", "token": "d.bad"}
    record.data["drains"].insert(0, bad)
    ctx.store.docs.put(drains.drains_key("shop"), record.data)
    shipper = drainship.Shipper(lambda: ctx.store.docs, "i-test")
    try:
        shipper.ship(_line("x"))
        assert [token for _, token in shipper.outlets] == [record.data["drains"][1]["token"]]
    finally:
        shipper.close()


def test_leader_ships_events_and_router_lines(cli: Any, syslog: Syslog) -> None:
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", f"syslog://127.0.0.1:{syslog.port}", "-a", "shop")[0] == 0
    ctx = Context(get_target("t1"))
    docs = ctx.store.docs
    shipper = drainship.Shipper(lambda: docs, "i-test")
    leader = drainship.LeaderLines(shipper)
    try:
        leader.tick(ctx, lambda: None)  # from now on
        events.record(docs, "controller", "web.1 started again on host i-1", "shop")
        made = [
            Release(v, "Deploy 1a2b3c4", "me@laptop", now_iso(), status)
            for v, status in ((1, "succeeded"), (2, "pending"))
        ]
        for release in made:
            ctx.store.create_release("shop", lambda _v, r=release: r, {"SECRET": "hunter2-config"})
        host = f"shop.{ctx.target.app_domain}"
        key = f"{accesslogs.PREFIX}/AWSLogs/123456789012/elasticloadbalancing/x.log.gz"
        body = gzip.compress(
            (ALB.format(host=host) + "\n" + ALB.format(host="other") + "\n").encode()
        )
        docs.s3.put_object(Bucket=docs.bucket, Key=key, Body=body)
        leader.servers_at = time.monotonic()  # no fleet in moto to look the dyno up on
        leader.tick(ctx, lambda: None)
        event, release, router = syslog.frames(3)
        token = drains.read(docs, "shop").drains[0].token
        assert event.endswith(f" {token} dynoform controller - - web.1 started again on host i-1\n")
        assert release.endswith(
            f" {token} dynoform api - - Release v1 created by me@laptop: Deploy 1a2b3c4\n"
        )
        assert router == (
            f"<158>1 2026-11-30T22:40:00.123456+00:00 {token} router router - - at=info "
            f'method=GET path="/cart" host={host} request_id=Root=1-5 fwd="203.0.113.7" '
            "dyno=10.42.1.5:20001 connect=0ms service=12ms status=200 bytes=366 protocol=http\n"
        )
        assert accesslogs.pending(docs.s3, docs.bucket) == []  # shipped, deleted
        versions = docs.s3.list_object_versions(Bucket=docs.bucket, Prefix=accesslogs.PREFIX)
        assert versions.get("Versions", []) == versions.get("DeleteMarkers", []) == []
        shipper.reported_at = -drainship.REPORT_SECONDS
        shipper.report()
        assert [(d.sent, d.dropped) for d in drains.drains(ctx, "shop")] == [(3, 0)]
        assert b"hunter2" not in syslog.data  # no config value went out
    finally:
        shipper.close()


def test_a_bad_object_or_app_stops_no_other_lines(cli: Any, syslog: Syslog) -> None:
    for app in ("aaa", "shop"):
        assert cli("apps:create", app)[0] == 0
        assert cli("drains:add", f"syslog://127.0.0.1:{syslog.port}", "-a", app)[0] == 0
    ctx = Context(get_target("t1"))
    docs = ctx.store.docs
    shipper = drainship.Shipper(lambda: docs, "i-test")
    leader = drainship.LeaderLines(shipper)
    try:
        leader.tick(ctx, lambda: None)  # from now on
        docs.put(events.event_key(events.app_prefix("aaa"), time.time()), {"bad": "event"})
        events.record(docs, "controller", "web.1 started again", "shop")
        host = f"shop.{ctx.target.app_domain}"
        prefix = f"{accesslogs.PREFIX}/AWSLogs/123456789012/elasticloadbalancing"
        good = gzip.compress((ALB.format(host=host) + "\n").encode())
        docs.s3.put_object(Bucket=docs.bucket, Key=f"{prefix}/a.log.gz", Body=good[:20])
        docs.s3.put_object(Bucket=docs.bucket, Key=f"{prefix}/b.log.gz", Body=good)
        leader.servers_at = time.monotonic()  # no fleet in moto to look the dyno up on
        leader.tick(ctx, lambda: None)
        event, router = syslog.frames(2)
        assert event.endswith(" dynoform controller - - web.1 started again\n")
        assert f"host={host}" in router
        assert accesslogs.pending(docs.s3, docs.bucket) == []
        said = [(e.source, e.message) for e in events.recent(docs, 5)]
        assert any(
            source == "drains" and f"router lines of {prefix}/a.log.gz unreadable" in text
            for source, text in said
        )
    finally:
        shipper.close()


def _line(text: str) -> m.Line:
    return m.Line(1796076000.5, "shop", "app", "web.1", text)


def _outlet(url: str, ca: str = "") -> drainship.Outlet:
    return drainship.Outlet(m.Drain(url, "d.t", ""), ca, threading.Event())


def test_a_drain_that_is_down_gets_its_lines_later() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    outlet = _outlet(f"syslog://127.0.0.1:{port}")
    try:
        outlet.buffer.add(_line("first"))
        deadline = time.monotonic() + 5
        while not outlet.error and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ConnectionRefusedError" in outlet.error and len(outlet.buffer) == 1
        server = Syslog()
        server.listener.close()
        server.listener = socket.create_server(("127.0.0.1", port))
        server.thread = threading.Thread(target=server._serve, daemon=True)
        server.thread.start()
        outlet.buffer.add(_line("second"))
        assert [f.rsplit(" - - ", 1)[1] for f in server.frames(2)] == ["first\n", "second\n"]
        assert outlet.counts() == m.Counts(sent=2, dropped=0, buffered=0, error="")
        server.close()
    finally:
        outlet.close()


def test_a_drain_down_for_long_drops_its_oldest_lines_and_drains_says_how_many(cli: Any) -> None:
    """The whole way of a drop: a shipper's outlet to a drain nobody listens on keeps the
    newest BUFFER_LINES, counts the others dropped, reports them, and `drains --json` shows
    them with the last error."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    assert cli("apps:create", "shop")[0] == 0
    assert cli("drains:add", f"syslog://127.0.0.1:{port}", "-a", "shop")[0] == 0
    ctx = Context(get_target("t1"))
    shipper = drainship.Shipper(lambda: ctx.store.docs, "i-test")
    try:
        for n in range(m.BUFFER_LINES + 7):
            shipper.ship(_line(f"line {n}"))
        (outlet,) = shipper.outlets.values()
        deadline = time.monotonic() + 5
        while not outlet.error and time.monotonic() < deadline:
            time.sleep(0.05)
        shipper.report()
        (shown,) = json.loads(cli("drains", "-a", "shop", "--json")[1])
        assert (shown["sent"], shown["dropped"], shown["buffered"]) == (0, 7, m.BUFFER_LINES)
        assert "ConnectionRefusedError" in shown["last_error"], shown
        assert outlet.buffer.items[0][1].message == "line 7"  # the oldest went
        table = cli("drains", "-a", "shop")[1].splitlines()
        assert table[0].split()[:6] == ["URL", "TOKEN", "SENT", "DROPPED", "BUFFERED", "LAST"]
        assert table[1].split()[2:5] == ["0", "7", str(m.BUFFER_LINES)], table
    finally:
        shipper.close()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    ca = authority.make_ca()
    issued = authority.issue(ca, ["localhost"])
    (tmp_path / "cert.pem").write_bytes(issued.cert_pem + issued.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem")
    return server, ca.cert_pem.decode()


def _https_server(
    handler: type[http.server.BaseHTTPRequestHandler], context: ssl.SSLContext
) -> http.server.ThreadingHTTPServer:
    """An HTTPS server on a free loopback port, serving in a thread (shut it down after)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_syslog_tls_verifies_the_server(tls: tuple[ssl.SSLContext, str]) -> None:
    context, ca = tls
    server = Syslog(wrap=context)
    trusting, doubting = (
        _outlet(f"syslog+tls://localhost:{server.port}", ca),
        _outlet(f"syslog+tls://localhost:{server.port}"),
    )
    try:
        doubting.buffer.add(_line("never"))
        trusting.buffer.add(_line("over tls"))
        assert server.frames(1)[0].endswith(" d.t app web.1 - - over tls\n")
        deadline = time.monotonic() + 5
        while not doubting.error and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "CERTIFICATE_VERIFY_FAILED" in doubting.error and len(doubting.buffer) == 1
    finally:
        trusting.close()
        doubting.close()
        server.close()


def test_https_drain_posts_logplex_batches(tls: tuple[ssl.SSLContext, str]) -> None:
    context, ca = tls
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(200 if len(got) > 1 else 503)  # the first one fails: retried
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = _https_server(Handler, context)
    outlet = _outlet(f"https://user:pw@localhost:{server.server_address[1]}/logs", ca)
    try:
        outlet.buffer.add(_line("a"))
        outlet.buffer.add(_line("b"))
        deadline = time.monotonic() + 10
        while outlet.buffer.sent < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outlet.counts() == m.Counts(sent=2, dropped=0, buffered=0, error="")
        headers, body = got[-1]
        assert len(got) == 2 and got[0][1] == body  # the same batch again after the 503
        assert (headers["Content-Type"], headers["Logplex-Msg-Count"]) == (
            "application/logplex-1",
            "2",
        )
        assert (headers["Logplex-Drain-Token"], headers["Authorization"]) == (
            "d.t",
            "Basic dXNlcjpwdw==",
        )
        assert parse_frames(body) == [
            "<190>1 2026-11-30T22:00:00.500000+00:00 host app web.1 - a\n",
            "<190>1 2026-11-30T22:00:00.500000+00:00 host app web.1 - b\n",
        ]
    finally:
        outlet.close()
        server.shutdown()


def test_https_drain_does_not_follow_redirects(tls: tuple[ssl.SSLContext, str]) -> None:
    context, ca = tls
    got: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            got.append(self.command)
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = _answer  # noqa: N815 - http.server's names

        def log_message(self, *_: Any) -> None:
            pass

    server = _https_server(Handler, context)
    outlet = _outlet(f"https://user:pw@localhost:{server.server_address[1]}/logs?k=SECRET", ca)
    try:
        outlet.buffer.add(_line("a"))
        deadline = time.monotonic() + 5
        while not outlet.error and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outlet.error.endswith(
            f" HTTP 302 from https://***@localhost:{server.server_address[1]}/logs?k=***"
        )
        assert got == ["POST"] and outlet.counts().sent == 0 and len(outlet.buffer) == 1
    finally:
        outlet.close()
        server.shutdown()


def test_the_local_router_delivers_access_logs_like_the_alb(cli: Any, tmp_path: Path) -> None:
    ctx = Context(get_target("t1"))
    platform = ctx.platform(create=False)
    name = ctx.aws.elbv2.describe_load_balancers(LoadBalancerArns=[platform.lb_arn])[
        "LoadBalancers"
    ][0]["LoadBalancerName"]
    log = tmp_path / "router.log"
    log.write_text("2026-11-30T22:00:00+00:00 router[old]: at=info before the first call\n")
    logs = AccessLogs(log, ctx.aws.elbv2, ctx.aws.s3)
    lbs = [(name, platform.lb_arn)]
    assert logs.deliver(lbs) == 0  # from the log's end on
    mine = f"2026-11-30T22:00:01+00:00 router[{name}]: at=info host=shop.example.com\n"
    with log.open("a") as fh:
        fh.write(mine + "2026-11-30T22:00:01+00:00 router[someone-else]: at=info\npartial")
    assert logs.deliver(lbs) == 0  # access logs are off: nothing written
    assert accesslogs.enable(ctx.aws, platform.lb_arn, platform.bucket, local=True)
    with log.open("a") as fh:
        fh.write(" line\n" + mine)
    assert logs.deliver(lbs) == 1
    (key,) = accesslogs.pending(ctx.aws.s3, platform.bucket)
    assert key.startswith("router-logs/local/") and key.endswith(f"-{name}.log")
    assert list(accesslogs.read(ctx.aws.s3, platform.bucket, key)) == [mine.strip()]
