"""Add-ons: kinds, plans, names, attachments, connection URLs, SQL and config rendering (pure).

An add-on is a database or cache owned by one app and attached to any number of apps; each
attachment is a config var (`DATABASE_URL`, `REDIS_URL`, or `<NAME>_URL`) holding the URL.
Owner and attachments record the app's immutable id beside its name: a later app that takes a
renamed (or destroyed) app's name never matches them. Records made before app ids existed have
no id and match by name (such apps' id is their name).
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioner.errors import DynoformError, ValidationError

POSTGRES = "postgres"
REDIS = "redis"
KINDS = (POSTGRES, REDIS)
SELF_HOSTED = "self-hosted"
MANAGED = "managed"
PROVIDERS = (SELF_HOSTED, MANAGED)

# Plans: sizes for the managed provider; the self-hosted one records the plan and shares a host.
PLANS: dict[str, dict[str, dict[str, Any]]] = {
    POSTGRES: {
        "small": {"instance_class": "db.t4g.micro", "storage_gib": 20},
        "medium": {"instance_class": "db.t4g.small", "storage_gib": 50},
        "large": {"instance_class": "db.m7g.large", "storage_gib": 100},
    },
    REDIS: {
        "small": {"node_type": "cache.t4g.micro", "maxmemory_mb": 64},
        "medium": {"node_type": "cache.t4g.small", "maxmemory_mb": 256},
        "large": {"node_type": "cache.m7g.large", "maxmemory_mb": 1024},
    },
}
DEFAULT_PLAN = "small"
DEFAULT_VAR = {POSTGRES: "DATABASE_URL", REDIS: "REDIS_URL"}
ALIASES = {"postgres": POSTGRES, "postgresql": POSTGRES, "heroku-postgresql": POSTGRES}
ALIASES.update({"redis": REDIS, "heroku-redis": REDIS})

_ADDON_NAME_RE = re.compile(r"(postgres|redis)-[a-z0-9]{6}")
_AS_RE = re.compile(r"[A-Z][A-Z0-9_]{0,40}")
REDIS_FIRST_PORT = 6380
REDIS_LAST_PORT = 6479
POSTGRES_PORT = 5432


def database_name(addon: str) -> str:
    """An add-on's database and user name: its name with underscores (valid unquoted SQL)."""
    return addon.replace("-", "_")


def _is_app(name: str, app_id: str, app: str, wanted_id: str) -> bool:
    return app_id == wanted_id if app_id else name == app


@dataclass
class Attachment:
    app: str
    var: str
    app_id: str = ""

    def is_for(self, app: str, app_id: str) -> bool:
        return _is_app(self.app, self.app_id, app, app_id)


@dataclass
class Addon:
    """The stored record (`addons/<name>.json`); `secret` never leaves the state store."""

    name: str
    kind: str
    plan: str
    provider: str
    app: str  # the owner, the app it was created for
    app_id: str = ""  # the owner's id
    state: str = "creating"
    created_at: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)  # where it lives (host, endpoint...)
    secret: str = ""

    @property
    def db_name(self) -> str:
        return database_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Addon:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["attachments"] = [Attachment(**a) for a in data.get("attachments", [])]
        return cls(**fields)

    def public(self) -> dict[str, Any]:
        """What `addons:info --json` shows: everything but the password."""
        data = self.to_dict()
        data.pop("secret")
        return data

    def owned_by(self, app: str, app_id: str) -> bool:
        return _is_app(self.app, self.app_id, app, app_id)

    def attached_to(self, app: str, app_id: str) -> Attachment | None:
        return next((a for a in self.attachments if a.is_for(app, app_id)), None)

    def rename_app(self, old: str, app_id: str, new: str) -> bool:
        """The app `old` (id app_id) is now called `new`: its ownership and attachments say so,
        with the id; True when the record changed."""
        before = self.to_dict()
        if self.owned_by(old, app_id):
            self.app, self.app_id = new, app_id
        for attachment in self.attachments:
            if attachment.is_for(old, app_id):
                attachment.app, attachment.app_id = new, app_id
        return self.to_dict() != before


@dataclass
class Backup:
    """One backup of a Postgres add-on, kept in its record's `resource["backups"]`: a pg_dump
    in the platform bucket (`size`, self-hosted) or an RDS snapshot (`snapshot`, managed)."""

    id: str
    addon: str
    created_at: str
    size: int | None = None
    snapshot: str | None = None

    @property
    def ref(self) -> str:
        """What pg:backups prints and pg:backups:restore takes: `postgres-1a2b3c:b2026...`."""
        return f"{self.addon}:{self.id}"

    @property
    def scheduled(self) -> bool:
        """Taken by the schedule (ids `a...`, as Heroku's), not captured by hand (`b...`)."""
        return self.id.startswith(SCHEDULED_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backup:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def backups_of(addon: Addon) -> list[Backup]:
    return [Backup.from_dict(b) for b in addon.resource.get("backups", [])]


SCHEDULED_PREFIX = "a"


def new_backup_id(now: datetime, scheduled: bool = False) -> str:
    return (SCHEDULED_PREFIX if scheduled else "b") + now.strftime("%Y%m%d%H%M%S")


# scheduled backups: one schedule per Postgres add-on, beside its record ---------------------------
_AT_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def time_zone(name: str) -> tzinfo:
    """UTC, or an IANA zone name (Europe/Paris) that zoneinfo knows."""
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"time zone {name!r}", "UTC or an IANA zone name like Europe/Paris"
        ) from None


def parse_backup_time(text: str) -> tuple[str, str]:
    """`--at '02:00 UTC'` (Heroku's form; the zone is UTC when left out) -> ("02:00", "UTC")."""
    parts = text.split()
    if not 1 <= len(parts) <= 2 or not (found := _AT_RE.fullmatch(parts[0])):
        raise ValidationError(f"--at {text!r}", "HH:MM and a time zone, like '02:00 UTC'")
    zone = parts[1] if len(parts) == 2 else "UTC"
    hour, minute = int(found.group(1)), int(found.group(2))
    return f"{hour:02d}:{minute:02d}", "UTC" if time_zone(zone) is UTC else zone


@dataclass
class BackupSchedule:
    """A daily backup of one Postgres add-on (`addons/<name>/schedule.json`). `last_due` is the
    scheduled instant last claimed: the leader that writes it first (a conditional write)
    takes that backup, so it is taken once across the fleet."""

    addon: str
    at: str  # HH:MM in zone
    zone: str  # UTC or an IANA name
    since: str  # when it was set (ISO, UTC): instants before it are not due
    last_due: str | None = None
    last_started: str | None = None
    last_backup: str | None = None  # the id of the last scheduled backup taken
    last_error: str | None = None

    @property
    def when(self) -> str:
        return f"{self.at} {self.zone}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupSchedule:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def normalize_kind(service: str) -> str:
    kind = ALIASES.get(service.lower().split(":")[0])
    if kind is None:
        raise ValidationError(f"add-on service {service!r}", f"one of {', '.join(KINDS)}")
    return kind


def validate_plan(kind: str, plan: str) -> str:
    if plan not in PLANS[kind]:
        raise ValidationError(f"plan {plan!r}", f"one of {', '.join(PLANS[kind])}")
    return plan


def validate_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise ValidationError(f"provider {provider!r}", f"one of {', '.join(PROVIDERS)}")
    return provider


def validate_addon_name(name: str) -> str:
    if not _ADDON_NAME_RE.fullmatch(name):
        raise ValidationError(f"add-on name {name!r}", "like postgres-1a2b3c or redis-1a2b3c")
    return name


def new_addon_name(kind: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return f"{kind}-" + "".join(secrets.choice(alphabet) for _ in range(6))


def new_password() -> str:
    """48 hex digits: valid for RDS, ElastiCache auth tokens, URLs and SQL literals alike."""
    return secrets.token_hex(24)


def attachment_var(kind: str, as_name: str | None) -> str:
    """`--as FOO` gives FOO_URL; without it the kind's default var."""
    if not as_name:
        return DEFAULT_VAR[kind]
    name = as_name.upper()
    name = name.removesuffix("_URL")
    if not _AS_RE.fullmatch(name):
        raise ValidationError(
            f"--as {as_name!r}", "letters, digits and underscores, a letter first"
        )
    return f"{name}_URL"


def check_var_free(config: dict[str, str], var: str, addons: list[Addon], app: str) -> None:
    """Refuse to overwrite a var set by hand or by another add-on."""
    if var not in config:
        return
    owner = next(
        (a.name for a in addons if any(t.app == app and t.var == var for t in a.attachments)), None
    )
    what = f"add-on {owner}" if owner else "a config var set by hand"
    raise DynoformError(
        f"{var} is already set on {app} ({what})", "pick another name with --as NAME"
    )


def postgres_url(
    user: str, password: str, host: str, port: int, database: str, tls: bool = False
) -> str:
    """tls adds `?sslmode=require` (RDS for PostgreSQL 15+ refuses plain connections)."""
    query = "?sslmode=require" if tls else ""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgres://{credentials}@{host}:{port}/{database}{query}"


def redis_url(password: str, host: str, port: int, tls: bool = False) -> str:
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://:{quote(password, safe='')}@{host}:{port}"


def free_port(used: set[int], first: int = REDIS_FIRST_PORT, last: int = REDIS_LAST_PORT) -> int:
    for port in range(first, last + 1):
        if port not in used:
            return port
    raise DynoformError("no free port for another add-on on the add-on host", "destroy one first")


# self-hosted Postgres: SQL fed to psql on stdin (never on a command line) ------------------------
def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValidationError(f"SQL name {name!r}", "lowercase letters, digits and underscores")
    return f'"{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_database_sql(name: str, password: str) -> str:
    """Role and database `name`, owned by the role, closed to every other role; idempotent."""
    ident, lit = _ident(name), _literal(name)
    return "\n".join(
        [
            f"SELECT 'CREATE ROLE {ident} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = {lit})\\gexec",
            f"ALTER ROLE {ident} LOGIN PASSWORD {_literal(password)};",
            f"SELECT 'CREATE DATABASE {ident} OWNER {ident} TEMPLATE template0 "
            "ENCODING ''UTF8'' LC_COLLATE ''C.UTF-8'' LC_CTYPE ''C.UTF-8''' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = {lit})\\gexec",
            f"REVOKE ALL ON DATABASE {ident} FROM PUBLIC;",
            f"GRANT ALL ON DATABASE {ident} TO {ident};",
            "",
        ]
    )


def drop_database_sql(name: str) -> str:
    ident = _ident(name)
    return f"DROP DATABASE IF EXISTS {ident} WITH (FORCE);\nDROP ROLE IF EXISTS {ident};\n"


def psql_argv(database: str = "postgres") -> list[str]:
    """psql as the postgres superuser over the local socket, SQL on stdin, stop on errors."""
    return [
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        database,
    ]


# pg:psql runs this in a one-off dyno (python3 -I -c PSQL_EXEC VAR [SQL]). It reads the URL
# from the dyno's own environment and hands libpq its parts as PG* variables, so neither the
# URL nor the password ever enters an argv (/proc/*/cmdline is readable by every user).
PSQL_EXEC = """import os, sys
from urllib.parse import parse_qsl, unquote, urlsplit
var, sql = sys.argv[1], sys.argv[2:]
url = urlsplit(os.environ.get(var, ''))
if url.scheme not in ('postgres', 'postgresql'):
    sys.exit(f'pg:psql: ${var} is not a postgres:// URL')
params = {'sslmode': 'PGSSLMODE', 'sslrootcert': 'PGSSLROOTCERT', 'connect_timeout':
          'PGCONNECT_TIMEOUT', 'application_name': 'PGAPPNAME', 'options': 'PGOPTIONS',
          'channel_binding': 'PGCHANNELBINDING', 'target_session_attrs': 'PGTARGETSESSIONATTRS'}
env = dict(os.environ)
try:
    port = url.port
except ValueError:
    sys.exit(f'pg:psql: ${var} has no valid port')
parts = {'PGHOST': url.hostname, 'PGPORT': port, 'PGUSER': unquote(url.username or ''),
         'PGPASSWORD': unquote(url.password or ''), 'PGDATABASE': unquote(url.path[1:])}
for key, value in parse_qsl(url.query):
    if key not in params:
        sys.exit(f'pg:psql: ${var} has a parameter pg:psql does not know: {key}')
    parts[params[key]] = value
env.update({k: str(v) for k, v in parts.items() if v})
argv = ['psql', '-v', 'ON_ERROR_STOP=1'] + (['-c', sql[0]] if sql else [])
try:
    os.execvpe('psql', argv, env)
except OSError as exc:
    sys.exit(f'pg:psql: cannot run psql: {exc}')
"""


def psql_dyno_command(var: str, sql: str | None = None) -> str:
    """The one-off dyno's command line for pg:psql: names the var, never holds its value; SQL
    is one quoted word (the dyno's shell evals the line: quotes in SQL survive)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
        raise ValidationError(f"config var {var!r}", "a POSIX name")
    argv = ["exec", "/usr/bin/python3", "-I", "-c", PSQL_EXEC, var]
    return shlex.join(argv + ([sql] if sql is not None else []))


def pg_dump_argv(database: str, path: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "--no-owner", "--no-privileges",
            "-d", database, "-f", path]  # fmt: skip


def pg_restore_argv(database: str, path: str) -> list[str]:
    """Restore as the add-on's own role, so it owns every object it gets."""
    return ["runuser", "-u", "postgres", "--", "pg_restore", "--no-owner", "--no-privileges",
            "--exit-on-error", f"--role={database}", "-d", database, path]  # fmt: skip


def empty_database_sql(name: str) -> str:
    """Before a restore: drop everything the add-on's role owns in its database."""
    return f"DROP OWNED BY {_ident(name)};\n"


# self-hosted Redis: one redis-server@<name> instance per add-on ---------------------------------
def redis_unit(name: str) -> str:
    return f"redis-server@{name}.service"


def redis_conf_path(name: str) -> str:
    return f"/etc/redis/redis-{name}.conf"


def redis_data_dir(name: str) -> str:
    return f"/var/lib/redis/{name}"


def redis_conf(name: str, address: str, port: int, password: str, memory_mb: int = 64) -> str:
    """redis.conf for one add-on: its own port, password, data directory and memory cap."""
    return "\n".join(
        [
            f"# dynoform add-on {name}",
            f"bind {address}",
            "protected-mode yes",
            f"port {port}",
            f"requirepass {password}",
            f"dir {redis_data_dir(name)}",
            "appendonly yes",
            "dbfilename dump.rdb",
            f"pidfile /run/redis-{name}/redis-server.pid",
            'logfile ""',
            "supervised systemd",
            "daemonize no",
            f"maxmemory {memory_mb}mb",
            "maxmemory-policy noeviction",
            "",
        ]
    )


def backup_key(addon: str, backup_id: str) -> str:
    return f"addon-backups/{addon}/{backup_id}.dump"
