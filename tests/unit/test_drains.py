"""Log drains, pure: URLs, Heroku's syslog frames, HTTPS batch headers, the bounded buffer,
ALB access-log lines, journal entries as lines."""

from __future__ import annotations

import pytest

from provisioner.aws import accesslogs
from provisioner.errors import ValidationError
from provisioner.localcloud.accesslog import split_by_lb
from provisioner.model import drains as m
from provisioner.ops import drainship

TS = 1796076000.123456  # 2026-11-30T22:00:00.123456+00:00
TOKEN = "d.0f7e2f5a-3b1c-4d2e-8f90-123456789abc"


def test_syslog_frame_is_heroku_rfc5424() -> None:
    line = m.Line(TS, "shop", "app", "web.1", "hello world")
    assert m.frame(line, TOKEN) == (
        f"<190>1 2026-11-30T22:00:00.123456+00:00 {TOKEN} app web.1 - - hello world\n"
    )


def test_router_and_platform_frames() -> None:
    """Heroku's facilities: local3 for the router's lines, local0 for the platform's."""
    router = m.Line(TS, "shop", "router", "router", 'at=info method=GET path="/"')
    event = m.Line(TS, "shop", "dynoform", "controller", "web.1 started again")
    assert m.frame(router, TOKEN) == (
        f'<158>1 2026-11-30T22:00:00.123456+00:00 {TOKEN} router router - - at=info method=GET path="/"\n'
    )
    assert m.frame(event, TOKEN) == (
        f"<134>1 2026-11-30T22:00:00.123456+00:00 {TOKEN} dynoform controller - - web.1 started again\n"
    )


def test_https_bodies_are_herokus() -> None:
    """Heroku's HTTPS drains: HOSTNAME `host`, one `-` (no STRUCTURED-DATA), the token only in
    the Logplex-Drain-Token header; octet-counted, each frame ending in a newline."""
    lines = [
        m.Line(TS, "shop", "app", "web.3", "State changed from starting to up"),
        m.Line(TS, "shop", "router", "router", "at=info method=GET"),
    ]
    app = "<190>1 2026-11-30T22:00:00.123456+00:00 host app web.3 - State changed from starting to up\n"
    router = "<158>1 2026-11-30T22:00:00.123456+00:00 host router router - at=info method=GET\n"
    assert m.https_body(lines) == f"{len(app)} {app}{len(router)} {router}".encode()


def test_octet_counting_counts_bytes_not_characters() -> None:
    assert m.octet_counted("é\n") == b"3 \xc3\xa9\n"
    lines = [m.Line(TS, "a", "app", "web.1", "x"), m.Line(TS, "a", "app", "web.2", "y")]
    frame = f"<190>1 2026-11-30T22:00:00.123456+00:00 {TOKEN} app web.1 - - x\n"
    assert (
        m.stream(lines, TOKEN)
        == (
            f"{len(frame)} {frame}{len(frame)} {frame.replace('web.1', 'web.2').replace(' x', ' y')}"
        ).encode()
    )
    assert len(frame) == 95


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("syslog://logs.example.com:514", "syslog", "logs.example.com", 514),
        ("syslog+tls://logs.example.com:6514", "syslog+tls", "logs.example.com", 6514),
        ("https://u:p@logs.example.com/in?x=1", "https", "logs.example.com", 443),
        ("https://198.18.0.1:8443/", "https", "198.18.0.1", 8443),
    ],
)
def test_parse_url(url: str, scheme: str, host: str, port: int) -> None:
    parsed = m.parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.url) == (scheme, host, port, url)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://x:1", "drain URL: 'ftp://x:1': must start with syslog://, syslog+tls:// or https://"),
        ("syslog://logs.example.com", "drain URL: 'syslog://logs.example.com' has no port (syslog://host:port)"),
        ("syslog://:514", "drain URL: 'syslog://:514' has no host"),
        ("syslog://h:99999", "drain URL: 'syslog://h:99999' is not a URL (Port out of range 0-65535)"),
        ("syslog://h:514/path", "drain URL: 'syslog://h:514/path': a syslog drain is only host:port"),
        ("https://user:secret@h/x y", "drain URL: 'https://***@h/x y' has a space in it"),
        ("syslog://a..b:514", "drain URL: 'syslog://a..b:514': 'a..b' is no host name"),
        ("logs.example.com:514", "drain URL: 'logs.example.com:514': must start with syslog://, syslog+tls:// or https://"),
    ],
)  # fmt: skip
def test_bad_urls_say_why_in_one_line_without_secrets(url: str, error: str) -> None:
    with pytest.raises(ValidationError) as caught:
        m.parse_url(url)
    assert caught.value.message == error
    assert "secret" not in caught.value.message


def test_credentials_are_masked_and_sent_as_basic_auth() -> None:
    url = "https://user:s3cret@logs.example.com/drain?t=1"
    assert m.mask(url) == "https://***@logs.example.com/drain?t=***"
    assert m.mask("syslog://h:514") == "syslog://h:514"
    assert m.without_credentials(url) == "https://logs.example.com/drain?t=1"
    assert m.https_headers(2, TOKEN, "f-1", url) == {
        "Content-Type": "application/logplex-1",
        "Logplex-Msg-Count": "2",
        "Logplex-Frame-Id": "f-1",
        "Logplex-Drain-Token": TOKEN,
        "User-Agent": "dynoform-logplex/1",
        "Authorization": "Basic dXNlcjpzM2NyZXQ=",
    }


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://http-intake.logs.datadoghq.com/api/v2/logs?dd-api-key=KEY&ddsource=heroku",
         "https://http-intake.logs.datadoghq.com/…?dd-api-key=***&ddsource=***"),
        ("https://endpoint4.collection.sumologic.com/receiver/v1/http/SECRETKEY",
         "https://endpoint4.collection.sumologic.com/…"),
        ("https://logs.example.com/in?SECRET", "https://logs.example.com/in?***"),
        ("https://logs.example.com/in#SECRET", "https://logs.example.com/in#***"),
        ("syslog+tls://logs.example.com:6514", "syslog+tls://logs.example.com:6514"),
    ],
)  # fmt: skip
def test_mask_hides_keys_in_queries_and_paths(url: str, masked: str) -> None:
    assert m.mask(url) == masked
    assert "SECRET" not in m.mask(url) and "KEY" not in m.mask(url)


def test_token_is_d_uuid() -> None:
    assert m.token_of("0F7E2F5A-3B1C-4D2E-8F90-123456789ABC") == TOKEN
    with pytest.raises(ValidationError):
        m.token_of("nope")


def test_buffer_keeps_the_newest_lines_within_its_bound() -> None:
    buffer = m.Buffer(limit=3)
    for i in range(5):
        buffer.add(m.Line(TS + i, "a", "app", "web.1", str(i)))
    assert buffer.dropped == 2
    batch = buffer.batch(2)
    assert [line.message for _, line in batch] == ["2", "3"]
    buffer.add(m.Line(TS, "a", "app", "web.1", "5"))  # "2" is dropped while the batch is out
    buffer.ack(batch[-1][0])
    assert (buffer.sent, buffer.dropped, len(buffer)) == (1, 3, 2)
    assert [line.message for _, line in buffer.batch(10)] == ["4", "5"]


def test_buffer_is_bounded_by_bytes_and_messages_are_cut_at_10_kb() -> None:
    long = m.Line(TS, "a", "app", "web.1", "é" * 6000)  # 12,000 bytes
    assert len(long.message.encode()) == 10_000 and long.message == "é" * 5000
    assert m.Line(TS, "a", "app", "web.1", "x" * 9999).message == "x" * 9999
    buffer = m.Buffer(max_bytes=25_000)
    for i in range(4):
        buffer.add(m.Line(TS, "a", "app", "web.1", str(i) * 10_000))
    assert (len(buffer), buffer.dropped, buffer.bytes) == (2, 2, 20_200)
    buffer.ack(buffer.batch(1)[-1][0])
    assert (len(buffer), buffer.sent, buffer.bytes) == (1, 1, 10_100)


class _Body:
    """An S3 body that is read in pieces only."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        assert 0 < size <= 65536, "read whole"
        piece, self.data = self.data[:size], self.data[size:]
        return piece

    def close(self) -> None:
        self.closed = True


class _S3:
    def __init__(self, body: _Body) -> None:
        self.body = body

    def get_object(self, Bucket: str, Key: str) -> dict[str, _Body]:  # noqa: N803 - boto3's
        return {"Body": self.body}


def test_access_log_objects_are_read_as_a_stream() -> None:
    import gzip

    text = "".join(f"line {i}\n" for i in range(20_000)) + "last"
    for key, data in (("a.log.gz", gzip.compress(text.encode())), ("local/a.log", text.encode())):
        body = _Body(data)
        lines = accesslogs.read(_S3(body), "b", key)
        assert next(lines) == "line 0"
        assert list(lines)[-2:] == ["line 19999", "last"] and body.closed


def test_backoff_doubles_to_a_cap() -> None:
    assert [m.backoff(n) for n in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


ALB = (
    "https 2026-11-30T22:40:00.123456Z app/df-shop/50dc6c495c0c9188 203.0.113.7:2817 "
    "10.42.1.5:20001 0.000 0.012 0.000 200 200 34 366 "
    '"GET https://shop.example.com:443/cart?id=3 HTTP/1.1" "curl/8.0" '
    "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 "
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/df-shop/6d0ecf831eec9f09 "
    '"Root=1-58337262-36d228ad5d99923122bbe354" "shop.example.com" "arn:aws:acm:x" 0 '
    '2026-11-30T22:40:00.111000Z "forward" "-" "-" "10.42.1.5:20001" "200" "-" "-"'
)


def test_alb_access_log_line_as_a_router_line() -> None:
    assert m.alb_router_line(ALB) == (
        '2026-11-30T22:40:00.123456Z router[df-shop]: at=info method=GET path="/cart?id=3" '
        "host=shop.example.com request_id=Root=1-58337262-36d228ad5d99923122bbe354 "
        'fwd="203.0.113.7" dyno=10.42.1.5:20001 connect=0ms service=12ms status=200 '
        "bytes=366 protocol=https"
    )
    assert m.alb_router_line("not a log line") is None


def test_local_router_lines_by_load_balancer() -> None:
    lines = [
        "2026-11-30T22:40:00+00:00 router[df-a]: at=info host=x",
        "2026-11-30T22:40:01+00:00 router[df-b]: at=info host=y",
        "Proxy lb-x stopped",
    ]
    assert split_by_lb(lines) == {"df-a": [lines[0]], "df-b": [lines[1]]}


def test_journal_entries_as_lines() -> None:
    app_entry = {
        "__REALTIME_TIMESTAMP": "1796076000123456",
        "MESSAGE": "hello",
        "DYNOFORM_APP": "shop",
        "DYNOFORM_DYNO": "web.1",
    }
    assert drainship.journal_line(app_entry, "i-1") == m.Line(
        1796076000.123456, "shop", "app", "web.1", "hello"
    )
    other = {"__REALTIME_TIMESTAMP": "1", "MESSAGE": "sshd says", "_PID": "77"}
    assert drainship.journal_line(other, "i-1") is None


def test_journal_follow_argv() -> None:
    assert drainship.journal_follow_argv("/x/c") == [
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "--output-fields=MESSAGE,DYNOFORM_APP,DYNOFORM_DYNO,SYSLOG_IDENTIFIER,_PID,UNIT,USER_UNIT",
        "--cursor-file=/x/c",
        "-f",
        "-n",
        "0",
    ]


def test_alb_log_delivery_policy_by_region() -> None:
    old = accesslogs.delivery_statement("df-b", "111122223333", "us-east-1")
    assert old == {
        "Sid": "DynoformAlbAccessLogs",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::127311923021:root"},
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::df-b/router-logs/AWSLogs/111122223333/*",
    }
    new = accesslogs.delivery_statement("df-b", "111122223333", "ap-southeast-4")
    assert new["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}


def test_an_outlet_keeps_sending_after_any_failure() -> None:
    """An exception other than OSError (http.client.IncompleteRead, a bug) is retried later:
    the sender thread does not die."""
    import http.client
    import threading

    stop = threading.Event()
    outlet = drainship.Outlet(m.Drain("syslog://127.0.0.1:9", TOKEN, ""), "", stop)
    outlet.close()  # the real sender is not wanted: start one that fails once, then sends
    outlet.thread.join(5)
    outlet.stop.clear()
    sent: list[list[m.Line]] = []

    def send(lines: list[m.Line]) -> None:
        if not sent and not outlet.error:
            raise http.client.IncompleteRead(b"par")
        sent.append(lines)

    outlet._send = send  # type: ignore[method-assign]
    outlet.buffer.add(m.Line(TS, "a", "app", "web.1", "x"))
    thread = threading.Thread(target=outlet._run, daemon=True)
    thread.start()
    for _ in range(50):
        if sent:
            break
        thread.join(0.1)
    outlet.close()
    thread.join(5)
    assert [[line.message for line in batch] for batch in sent] == [["x"]]
    assert outlet.buffer.sent == 1


def test_deleting_objects_raises_on_per_key_errors() -> None:
    from provisioner.aws.state import delete_versions
    from provisioner.errors import DynoformError

    class S3:
        def get_paginator(self, _: str) -> S3:
            return self

        def paginate(self, **_: str) -> list[dict[str, list[dict[str, str]]]]:
            return [{"Versions": [{"Key": "router-logs/x.gz", "VersionId": "v1"}]}]

        def delete_objects(self, **_: object) -> dict[str, list[dict[str, str]]]:
            error = {"Key": "router-logs/x.gz", "Code": "AccessDenied", "Message": "Access Denied"}
            return {"Errors": [error]}

    with pytest.raises(DynoformError) as caught:
        delete_versions(S3(), "b", "router-logs/x.gz")
    assert caught.value.message == (
        "could not delete 1 object(s) under 'router-logs/x.gz' in b: "
        "router-logs/x.gz: AccessDenied Access Denied"
    )


def test_a_shipper_writes_its_figures_again_while_unchanged() -> None:
    """Unchanged figures are written again every REFRESH_SECONDS: fresh ones tell a live
    shipper from a gone one (whose buffer and error `drains` no longer shows)."""

    class Docs:
        puts: list[str] = []

        def put(self, key: str, _: object) -> None:
            self.puts.append(key)

    docs, now = Docs(), [100.0]
    shipper = drainship.Shipper(lambda: docs, "i-1", clock=lambda: now[0])  # type: ignore[arg-type, return-value]
    shipper.figures = lambda: {"shop": {TOKEN: {"sent": 1}}}  # type: ignore[method-assign]
    for step in (0.0, drainship.REPORT_SECONDS, drainship.REFRESH_SECONDS):
        now[0] += step
        shipper.report()
    assert docs.puts == ["drains/stats/shop/i-1.json"] * 2
