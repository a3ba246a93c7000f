"""Logs as Heroku shows them (pure): journald entries and router lines -> one merged stream.

2026-11-26T02:02:17.123456+00:00 app[web.1]: message
2026-11-26T02:02:17.125000+00:00 dynoform[web.1]: Process exited with status 3
2026-11-26T02:02:17.130000+00:00 router: at=info method=GET path="/" ... dyno=web.1 status=200
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model.names import safe_name
from provisioner.plan.units import UNIT_PREFIX, parse_unit_name

DEFAULT_LINES = 100
MAX_LINES = 1500  # Logplex keeps at most 1,500 lines
SOURCES = ("app", "dynoform", "router")

_EXIT_RE = re.compile(r"Main process exited, code=(\w+), status=(\d+)/?(\w*)")
_RESTART_RE = re.compile(r"Scheduled restart job, restart counter is at (\d+)")
_RESULT_RE = re.compile(r"Failed with result '([\w-]+)'")
_ROUTER_RE = re.compile(r"^(\S+) router\[[^\]]*\]: (.*)$")
_ROUTER_FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class LogLine:
    ts: float  # seconds since the epoch, microsecond precision
    source: str  # app, dynoform or router
    dyno: str  # web.1, run.3, api; "" for router lines without a known dyno
    message: str
    host: str = ""

    @property
    def timestamp(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="microseconds")

    def format(self) -> str:
        if self.source == "router":
            return f"{self.timestamp} router: {self.message}"
        return f"{self.timestamp} {self.source}[{self.dyno}]: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "source": self.source,
            "dyno": self.dyno,
            "message": self.message,
            "host": self.host,
        }


def clean(text: str) -> str:
    """One line of text: control bytes escaped, so a log line can never forge another."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\n", "\\n"))


def message_text(value: Any) -> str:
    """journald's MESSAGE: a string, or a list of bytes for binary data."""
    if isinstance(value, list):
        return bytes(int(b) & 0xFF for b in value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def journal_argv(app: str, lines: int) -> list[str]:
    """History of one app's dynos on a host, systemd's messages about them included."""
    return [
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "-n",
        str(lines),
        "-u",
        f"{UNIT_PREFIX}{app}.*",
    ]


def follow_argv(app: str) -> list[str]:
    """New entries from now on: the app's own output OR anything systemd says (filtered later)."""
    return [
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "-f",
        "-n",
        "0",
        f"DYNOFORM_APP={app}",
        "+",
        "_PID=1",
    ]


def platform_event(message: str) -> str | None:
    """systemd's words about a dyno unit, in Heroku's words (None: not worth showing)."""
    if message.startswith("Starting "):
        return "Starting process"
    if message.startswith("Started "):
        return "State changed from starting to up"
    if exit_match := _EXIT_RE.search(message):
        kind, status, name = exit_match.groups()
        if kind == "exited":
            return f"Process exited with status {status}"
        return f"Process killed by signal {name or status}"
    if restart := _RESTART_RE.search(message):
        return f"Restarting (restart {restart.group(1)})"
    if result := _RESULT_RE.search(message):
        if result.group(1) == "oom-kill":
            return "Memory limit exceeded: process killed (R15)"
        return f"State changed to crashed ({result.group(1)})"
    if message.startswith("Stopping "):
        return "Stopping all processes with SIGTERM"
    if message.startswith("Stopped "):
        return "State changed to down"
    return None


def parse_journal_entry(entry: Mapping[str, Any], app: str, host: str = "") -> LogLine | None:
    """One `journalctl -o json` object -> a log line of this app, or None."""
    ts = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1_000_000
    message = message_text(entry.get("MESSAGE"))
    if str(entry.get("_PID")) == "1":
        unit = str(entry.get("UNIT") or entry.get("USER_UNIT") or "")
        instance = parse_unit_name(unit)
        if instance is None or instance.app != app:
            return None
        event = platform_event(message.split(": ", 1)[-1] if unit in message else message)
        return LogLine(ts, "dynoform", instance.name, event, host) if event else None
    if entry.get("DYNOFORM_APP") == app and entry.get("DYNOFORM_DYNO"):
        return LogLine(ts, "app", str(entry["DYNOFORM_DYNO"]), clean(message), host)
    if entry.get("SYSLOG_IDENTIFIER") == "dynoform" and entry.get("DYNOFORM_APP") == app:
        return LogLine(
            ts, "dynoform", str(entry.get("DYNOFORM_DYNO") or "api"), clean(message), host
        )
    return None


def parse_router_line(
    line: str, hostnames: Iterable[str], dynos: Mapping[str, str]
) -> LogLine | None:
    """A line of the local cloud's router.log for one of the app's hostnames.

    dynos maps HAProxy's server name (ip-port, as the router logs it) to the dyno name.
    """
    match = _ROUTER_RE.match(line.strip())
    if not match:
        return None
    stamp, rest = match.groups()
    fields = dict(_ROUTER_FIELD_RE.findall(rest))
    host = fields.get("host", "").split(":", 1)[0].lower()
    if host not in {h.lower() for h in hostnames}:
        return None
    try:
        ts = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    server = fields.get("dyno", "")
    dyno = dynos.get(server, server)
    rest = re.sub(r"\bdyno=\S*", f"dyno={dyno}", rest)
    rest = re.sub(r" backend=\S*", "", rest)
    return LogLine(ts, "router", dyno, clean(rest))


def check_options(lines: int, source: str | None) -> None:
    """How many lines of history, and from which source: within what Heroku allows."""
    if not 0 <= lines <= MAX_LINES:
        raise ValidationError("--num", f"must be between 0 and {MAX_LINES}")
    if source and source not in SOURCES:
        raise ValidationError("--source", "must be one of " + ", ".join(SOURCES))


def select(
    lines: Iterable[LogLine], ps: str | None = None, source: str | None = None
) -> list[LogLine]:
    """Filter by dyno (`web.1`) or type (`web`), and by source."""
    result = []
    for line in lines:
        if source and line.source != source:
            continue
        if ps and line.dyno != ps and line.dyno.rpartition(".")[0] != ps:
            continue
        result.append(line)
    return result


def merge(lines: Iterable[LogLine], limit: int) -> list[LogLine]:
    """The newest `limit` lines of all sources, oldest first."""
    return sorted(set(lines))[-limit:] if limit else []


def server_name(ip: str, port: int) -> str:
    """How the local router names a target (as the local cloud's HAProxy does)."""
    return safe_name(f"{ip}:{port}")
