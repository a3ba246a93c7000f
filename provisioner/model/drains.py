"""Log drains (pure): drain URLs, Heroku's syslog frames, HTTPS batches, a bounded buffer, and
the ALB's access-log lines read as router lines.

A frame is RFC 5424 as Heroku's Logplex writes it to syslog drains, the drain's token as
HOSTNAME (logplex_syslog_utils:to_msg):

    <190>1 2026-11-30T22:19:59.123456+00:00 d.0f7e… app web.1 - - hello

and as Heroku writes it into HTTPS drains' bodies: HOSTNAME `host`, no STRUCTURED-DATA (the
token is in the Logplex-Drain-Token header):

    <190>1 2026-11-30T22:19:59.123456+00:00 host app web.1 - hello

Either travels octet-counted (RFC 6587): `LEN SP FRAME`, LEN the frame's length in bytes. The
frame ends with a newline, counted, as Logplex's do. PRI is Heroku's facility for the source
(app lines local7, router lines local3, platform lines local0), severity info.
"""

from __future__ import annotations

import base64
import re
import shlex
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from provisioner.errors import ValidationError
from provisioner.model.names import safe_name

SCHEMES = ("syslog", "syslog+tls", "https")
# <PRI> by source, as Heroku's: local7.info (app), local3.info (router), local0.info (platform)
PRI = {"app": 190, "router": 158, "dynoform": 134}
BUFFER_LINES = 10_000  # per drain and shipper: older lines are dropped beyond it
BUFFER_BYTES = 8 * 1024 * 1024  # and beyond this many bytes of messages
MESSAGE_BYTES = 10_000  # a longer message is cut there (Heroku's Logplex truncates at 10 KB)
HTTPS_BATCH = 500  # lines per POST
CONTENT_TYPE = "application/logplex-1"
URL_FIELD = "drain URL"
_TOKEN_RE = re.compile(r"d\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# URLs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrainUrl:
    url: str  # as given (with any credentials: never printed, never logged)
    scheme: str  # syslog, syslog+tls or https
    host: str
    port: int

    @property
    def masked(self) -> str:
        return mask(self.url)

    @property
    def tls(self) -> bool:
        return self.scheme != "syslog"


def parse_url(url: str) -> DrainUrl:
    """A drain URL, checked: `syslog://host:port`, `syslog+tls://host:port`, `https://…`."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(URL_FIELD, f"{mask(text)!r} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValidationError(
            URL_FIELD, f"{mask(text)!r}: must start with syslog://, syslog+tls:// or https://"
        )
    if not parts.hostname:
        raise ValidationError(URL_FIELD, f"{mask(text)!r} has no host")
    try:
        parts.hostname.encode("idna")  # what getaddrinfo does: else it raises in the sender
    except UnicodeError:
        raise ValidationError(
            URL_FIELD, f"{mask(text)!r}: {parts.hostname!r} is no host name"
        ) from None
    if any(c.isspace() for c in text):
        raise ValidationError(URL_FIELD, f"{mask(text)!r} has a space in it")
    if scheme == "https":
        return DrainUrl(text, scheme, parts.hostname, port or 443)
    if port is None:
        raise ValidationError(URL_FIELD, f"{mask(text)!r} has no port (syslog://host:port)")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValidationError(URL_FIELD, f"{mask(text)!r}: a syslog drain is only host:port")
    return DrainUrl(text, scheme, parts.hostname, port)


def mask(url: str) -> str:
    """The URL with what may be a secret hidden: user and password, every query value (Datadog's
    `?dd-api-key=`), a path of more than one segment (Sumo Logic's key is in it). What
    listings, messages and figures show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    path = "/…" if parts.path.strip("/").count("/") >= 1 else parts.path
    query = "&".join(
        f"{item.partition('=')[0]}=***" if "=" in item else "***"
        for item in parts.query.split("&")
        if item
    )
    fragment = "***" if parts.fragment else ""
    return urlunsplit(SplitResult(parts.scheme, netloc, path, query, fragment))


def basic_auth(url: str) -> str | None:
    """The Authorization header for user:pass@ in an https URL."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    pair = f"{parts.username}:{parts.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(SplitResult(parts.scheme, parts.netloc.rpartition("@")[2], *parts[2:]))


# records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Drain:
    url: str  # credentials included: the store holds it; nothing prints it unmasked
    token: str  # d.<uuid>, the HOSTNAME of its frames
    added_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Drain:
        return cls(str(data["url"]), str(data["token"]), str(data.get("added_at", "")))


def token_of(uuid_text: str) -> str:
    token = f"d.{uuid_text.lower()}"
    if not _TOKEN_RE.fullmatch(token):
        raise ValidationError("drain token", f"{token!r} is not d.<uuid>")
    return token


@dataclass(frozen=True)
class Counts:
    """One shipper's figures for one drain."""

    sent: int = 0
    dropped: int = 0
    buffered: int = 0
    error: str = ""

    def plus(self, other: Counts) -> Counts:
        return Counts(
            self.sent + other.sent,
            self.dropped + other.dropped,
            self.buffered + other.buffered,
            self.error or other.error,
        )


# frames ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One log line to ship: Heroku's source (app, router, dynoform) and process (web.1)."""

    ts: float
    app: str
    source: str
    process: str
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MESSAGE_BYTES // 4:  # else it cannot be longer in bytes
            cut = self.message.encode("utf-8", errors="replace")[:MESSAGE_BYTES]
            object.__setattr__(self, "message", cut.decode("utf-8", errors="ignore"))

    @property
    def size(self) -> int:
        """What it takes in a buffer, about."""
        return len(self.message) + 100


def timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def frame(line: Line, token: str) -> str:
    """One RFC 5424 message as Heroku's syslog drains get it:
    `<PRI>1 TIME TOKEN SOURCE PROCESS - - MSG\\n`."""
    return _message(line, token, "- -")


def https_frame(line: Line) -> str:
    """One message as Heroku's HTTPS drains get it: `<PRI>1 TIME host SOURCE PROCESS - MSG\\n`."""
    return _message(line, "host", "-")


def _message(line: Line, hostname: str, after: str) -> str:
    pri = PRI.get(line.source, PRI["app"])
    procid = line.process or line.source
    message = line.message.replace("\n", " ")
    return f"<{pri}>1 {timestamp(line.ts)} {hostname} {line.source} {procid} {after} {message}\n"


def octet_counted(text: str) -> bytes:
    data = text.encode("utf-8", errors="replace")
    return str(len(data)).encode() + b" " + data


def stream(lines: Iterable[Line], token: str) -> bytes:
    """What a syslog drain gets: the frames, octet-counted, one after the other."""
    return b"".join(octet_counted(frame(line, token)) for line in lines)


def https_body(lines: Iterable[Line]) -> bytes:
    """The body of one POST to an HTTPS drain: its frames, octet-counted."""
    return b"".join(octet_counted(https_frame(line)) for line in lines)


def https_headers(count: int, token: str, frame_id: str, url: str) -> dict[str, str]:
    """Heroku's HTTPS drain headers for one batch (Authorization from the URL's user:pass)."""
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Logplex-Msg-Count": str(count),
        "Logplex-Frame-Id": frame_id,
        "Logplex-Drain-Token": token,
        "User-Agent": "dynoform-logplex/1",
    }
    auth = basic_auth(url)
    if auth:
        headers["Authorization"] = auth
    return headers


# the buffer -----------------------------------------------------------------------------------
class Buffer:
    """Lines waiting for one drain, at most `limit` and `max_bytes`: the oldest go (and are counted dropped)
    when more come. A sender takes a batch, and acks it once sent; lines dropped meanwhile
    are not acked twice (each line has a sequence number)."""

    def __init__(self, limit: int = BUFFER_LINES, max_bytes: int = BUFFER_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: deque[tuple[int, Line]] = deque()
        self.next_seq = 0
        self.sent = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def add(self, line: Line) -> None:
        with self.lock:
            self.items.append((self.next_seq, line))
            self.next_seq += 1
            self.bytes += line.size
            while len(self.items) > self.limit or self.bytes > self.max_bytes:
                self.bytes -= self.items.popleft()[1].size
                self.dropped += 1
            self.ready.set()

    def batch(self, size: int) -> list[tuple[int, Line]]:
        with self.lock:
            if len(self.items) <= size:
                self.ready.clear()
            return [self.items[i] for i in range(min(size, len(self.items)))]

    def ack(self, last_seq: int) -> None:
        """The lines up to sequence number last_seq reached the drain."""
        with self.lock:
            while self.items and self.items[0][0] <= last_seq:
                self.bytes -= self.items.popleft()[1].size
                self.sent += 1
            if self.items:
                self.ready.set()

    def __len__(self) -> int:
        return len(self.items)


def backoff(failures: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds before retrying a drain that failed `failures` times in a row."""
    return min(cap, base * 2 ** max(0, failures - 1)) if failures else 0.0


# ALB access logs ------------------------------------------------------------------------------
def alb_router_line(line: str) -> str | None:
    """One line of an ALB access log -> a line as the local router writes it
    (`TIME router[LB]: at=info method=… host=… dyno=IP-PORT …`), None for other lines.
    Fields: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html
    """
    try:
        f = shlex.split(line)
    except ValueError:
        return None
    if len(f) < 19 or f[0] not in ("http", "https", "h2"):
        return None
    stamp, lb, client, target = f[1], f[2], f[3], f[4]
    method, _, rest = f[12].partition(" ")
    url = rest.rpartition(" ")[0] or rest
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or f[18]
    dyno = safe_name(target) if target != "-" else ""
    service = _ms(f[6])
    status = f[8] if f[8] != "-" else "502"
    level = "error" if target == "-" else "info"  # no target answered: H-codes on Heroku
    message = (
        f'at={level} method={method} path="{path}" host={host} request_id={f[17]} '
        f'fwd="{client.rpartition(":")[0]}" dyno={dyno} connect={_ms(f[5])}ms '
        f"service={service}ms status={status} bytes={f[11]} protocol={f[0]}"
    )
    name = lb.split("/")[1] if lb.count("/") >= 2 else lb  # app/NAME/ID
    return f"{stamp} router[{safe_name(name)}]: {message}"


def _ms(seconds: str) -> int:
    try:
        value = float(seconds)
    except ValueError:
        return -1
    return -1 if value < 0 else round(value * 1000)
