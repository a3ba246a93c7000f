"""Add-on model: names, vars, URLs, SQL and Redis config (pure)."""

from __future__ import annotations

import pytest

from provisioner.errors import DynoformError, ValidationError
from provisioner.model import addons as m


def test_kinds_plans_and_providers() -> None:
    assert m.normalize_kind("postgresql") == "postgres"
    assert m.normalize_kind("heroku-redis:mini") == "redis"
    with pytest.raises(ValidationError):
        m.normalize_kind("mysql")
    assert m.validate_plan("postgres", "small") == "small"
    with pytest.raises(ValidationError, match="plan 'huge'"):
        m.validate_plan("redis", "huge")
    with pytest.raises(ValidationError):
        m.validate_provider("cloud")


def test_names_and_passwords_are_fresh_and_valid() -> None:
    names = {m.new_addon_name("postgres") for _ in range(50)}
    assert len(names) == 50
    assert all(m.validate_addon_name(n) for n in names)
    with pytest.raises(ValidationError):
        m.validate_addon_name("postgres-x; drop")
    password = m.new_password()
    assert len(password) == 48 and password.isalnum()
    assert m.new_password() != password


def test_attachment_var() -> None:
    assert m.attachment_var("postgres", None) == "DATABASE_URL"
    assert m.attachment_var("redis", None) == "REDIS_URL"
    assert m.attachment_var("postgres", "analytics") == "ANALYTICS_URL"
    assert m.attachment_var("postgres", "CACHE_URL") == "CACHE_URL"
    with pytest.raises(ValidationError):
        m.attachment_var("redis", "1bad")
    with pytest.raises(ValidationError):
        m.attachment_var("redis", "a b")


def test_var_already_set_is_refused_with_its_owner() -> None:
    other = m.Addon("postgres-aaaaaa", "postgres", "small", "self-hosted", "shop")
    other.attachments.append(m.Attachment("shop", "DATABASE_URL"))
    m.check_var_free({"OTHER": "1"}, "DATABASE_URL", [other], "shop")
    with pytest.raises(DynoformError, match="add-on postgres-aaaaaa"):
        m.check_var_free({"DATABASE_URL": "x"}, "DATABASE_URL", [other], "shop")
    with pytest.raises(DynoformError, match="set by hand"):
        m.check_var_free({"REDIS_URL": "x"}, "REDIS_URL", [other], "shop")


def test_urls_quote_credentials() -> None:
    assert m.postgres_url("u", "p@ss/w", "10.0.0.5", 5432, "db") == (
        "postgres://u:p%40ss%2Fw@10.0.0.5:5432/db"
    )
    assert m.postgres_url("u", "p", "h", 5432, "db", tls=True).endswith("/db?sslmode=require")
    assert m.redis_url("abc", "h", 6380) == "redis://:abc@h:6380"
    assert m.redis_url("abc", "h", 6379, tls=True) == "rediss://:abc@h:6379"


def test_record_round_trip_and_public_view_hides_the_password() -> None:
    addon = m.Addon("redis-abc123", "redis", "small", "self-hosted", "shop", secret="s3cret")
    addon.attachments.append(m.Attachment("shop", "REDIS_URL"))
    again = m.Addon.from_dict(addon.to_dict())
    assert again == addon
    assert "secret" not in addon.public()
    assert "s3cret" not in str(addon.public())
    assert addon.db_name == "redis_abc123"
    # a record without app ids (made before they existed) matches by name
    assert again.attached_to("shop", "shop") == m.Attachment("shop", "REDIS_URL")
    assert again.attached_to("other", "other") is None


def test_owner_and_attachments_match_the_app_id_not_a_name_someone_took_later() -> None:
    addon = m.Addon("postgres-abc123", "postgres", "small", "self-hosted", "shop", "0a1b2c3d4e5f")
    addon.attachments.append(m.Attachment("shop", "DATABASE_URL", "0a1b2c3d4e5f"))
    addon.attachments.append(m.Attachment("admin", "SHOP_URL", "1f2e3d4c5b6a"))
    assert addon.owned_by("shop", "0a1b2c3d4e5f") and addon.attached_to("shop", "0a1b2c3d4e5f")
    # a new app called shop (another id) neither owns nor is attached
    assert not addon.owned_by("shop", "9999aaaabbbb")
    assert addon.attached_to("shop", "9999aaaabbbb") is None
    # a renamed app matches under its new name by its id, before its record says so
    assert addon.attached_to("shop-v2", "0a1b2c3d4e5f") is not None


def test_rename_app_rewrites_owner_and_attachments_with_the_id() -> None:
    legacy = m.Addon("redis-abc123", "redis", "small", "self-hosted", "shop")
    legacy.attachments = [m.Attachment("shop", "REDIS_URL"), m.Attachment("admin", "SHOP_URL")]
    assert legacy.rename_app("shop", "shop", "store")
    assert (legacy.app, legacy.app_id) == ("store", "shop")
    assert legacy.attachments == [
        m.Attachment("store", "REDIS_URL", "shop"),
        m.Attachment("admin", "SHOP_URL"),
    ]
    assert not legacy.rename_app("shop", "shop", "store")  # nothing left to change
    assert not legacy.rename_app("store", "0a1b2c3d4e5f", "shop")  # another app called store
    assert legacy.rename_app("admin", "1f2e3d4c5b6a", "back-office")  # no id yet: by name
    assert legacy.attachments[1] == m.Attachment("back-office", "SHOP_URL", "1f2e3d4c5b6a")
    other = m.Addon("redis-def456", "redis", "small", "self-hosted", "admin", "1f2e3d4c5b6a")
    other.attachments = [m.Attachment("admin", "REDIS_URL", "1f2e3d4c5b6a")]
    assert other.rename_app("admin", "1f2e3d4c5b6a", "back-office")
    assert other.app == "back-office" and other.attachments[0].app == "back-office"


def test_free_port() -> None:
    assert m.free_port(set()) == 6380
    assert m.free_port({6380, 6381, 6383}) == 6382
    with pytest.raises(DynoformError):
        m.free_port(set(range(6380, 6480)))


def test_create_sql_is_idempotent_and_quotes() -> None:
    sql = m.create_database_sql("postgres_abc123", "pa'ss")
    assert 'CREATE ROLE "postgres_abc123" LOGIN\' WHERE NOT EXISTS' in sql
    assert "ALTER ROLE \"postgres_abc123\" LOGIN PASSWORD 'pa''ss';" in sql
    assert "\\gexec" in sql
    assert 'REVOKE ALL ON DATABASE "postgres_abc123" FROM PUBLIC;' in sql
    assert "TEMPLATE template0 ENCODING ''UTF8''" in sql
    with pytest.raises(ValidationError):
        m.create_database_sql('x"; drop', "p")
    assert m.drop_database_sql("postgres_abc123") == (
        'DROP DATABASE IF EXISTS "postgres_abc123" WITH (FORCE);\n'
        'DROP ROLE IF EXISTS "postgres_abc123";\n'
    )


def test_commands_keep_secrets_off_the_command_line() -> None:
    for argv in (
        m.psql_argv(),
        m.pg_dump_argv("postgres_abc123", "/w/a.dump"),
        m.pg_restore_argv("postgres_abc123", "/w/a.dump"),
    ):
        assert argv[:4] == ["runuser", "-u", "postgres", "--"]
    assert "--role=postgres_abc123" in m.pg_restore_argv("postgres_abc123", "/w/a.dump")
    assert m.empty_database_sql("postgres_abc123") == 'DROP OWNED BY "postgres_abc123";\n'


def test_redis_conf() -> None:
    conf = m.redis_conf("redis-abc123", "198.18.0.5", 6381, "secret")
    lines = conf.splitlines()
    assert "bind 198.18.0.5" in lines
    assert "port 6381" in lines
    assert "requirepass secret" in lines
    assert "dir /var/lib/redis/redis-abc123" in lines
    assert "pidfile /run/redis-redis-abc123/redis-server.pid" in lines
    assert m.redis_unit("redis-abc123") == "redis-server@redis-abc123.service"


def test_addon_role_listens_on_the_private_address_with_passwords() -> None:
    from provisioner import playbook as pb

    role, templates = pb.load_role("addon")
    role = pb.Role(
        role.name,
        {**role.vars, "private_ip": "198.18.0.9", "vpc_cidr": "198.18.0.0/16"},
        role.specs,
    )
    steps = role.steps(pb.HostFacts(memory_bytes=4 << 30, cpus=2), templates)
    files = {s.path: s.content.decode() for s in steps if isinstance(s, pb.File)}
    conf = files["/etc/postgresql/17/main/conf.d/60-dynoform.conf"]
    assert "listen_addresses = '198.18.0.9'" in conf
    assert "password_encryption = 'scram-sha-256'" in conf
    hba = [line.split() for line in files["/etc/postgresql/17/main/pg_hba.conf"].splitlines()]
    network = [line for line in hba if line and line[0] == "host"]
    assert network == [["host", "sameuser", "all", "198.18.0.0/16", "scram-sha-256"]]
    packages = next(s for s in steps if isinstance(s, pb.Packages)).packages
    assert {"postgresql", "redis-server", "curl"} <= set(packages)


def _run_psql_command(tmp_path, url: str, sql: str | None) -> tuple[int, list[str], dict, str]:
    """pg:psql's dyno command, eval'd by bash as dyno-launch does, with a psql that records
    its argv and environment instead of connecting."""
    import subprocess

    fake = tmp_path / "bin" / "psql"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {tmp_path}/argv\nenv -0 > {tmp_path}/env\n')
    fake.chmod(0o755)
    command = m.psql_dyno_command("DATABASE_URL", sql)
    done = subprocess.run(
        ["/bin/bash", "-c", 'eval "$1"', "dyno", command],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", "DATABASE_URL": url, "PGSSLMODE": "allow"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode:
        return done.returncode, [], {}, done.stderr
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    env = dict(e.split("=", 1) for e in (tmp_path / "env").read_text().split("\0")[:-1])
    return 0, argv, env, command


def test_psql_in_a_dyno_gets_the_url_only_through_its_environment(tmp_path) -> None:
    password = "p@ss:w/rd 'q\"%"
    url = m.postgres_url("postgres_abc", password, "198.18.0.7", 5432, "postgres_abc", tls=True)
    sql = "select 'it''s', \"col\" from t where x = '$HOME' -- `ls`"
    code, argv, env, command = _run_psql_command(tmp_path, url, sql)
    assert code == 0, command
    assert argv == ["-v", "ON_ERROR_STOP=1", "-c", sql]  # SQL as one word, untouched
    assert env["PGHOST"] == "198.18.0.7" and env["PGPORT"] == "5432"
    assert env["PGUSER"] == env["PGDATABASE"] == "postgres_abc"
    assert env["PGPASSWORD"] == password
    assert env["PGSSLMODE"] == "require"  # the URL's parameters win, as in a conninfo
    for secret in (password, "p%40ss", url):
        assert secret not in command and all(secret not in a for a in argv)

    code, argv, env, _ = _run_psql_command(tmp_path, url.replace("?sslmode=require", ""), None)
    assert code == 0 and argv == ["-v", "ON_ERROR_STOP=1"]  # interactive
    assert env["PGSSLMODE"] == "allow"  # left as the app set it


def test_psql_in_a_dyno_refuses_what_it_cannot_pass_on(tmp_path) -> None:
    code, _, _, err = _run_psql_command(tmp_path, "redis://:x@h:1", "select 1")
    assert code == 1 and "$DATABASE_URL is not a postgres:// URL" in err
    code, _, _, err = _run_psql_command(tmp_path, "postgres://u:p@h:1/d?sslfoo=1", "select 1")
    assert code == 1 and "does not know: sslfoo" in err and "u:p@" not in err
    code, _, _, err = _run_psql_command(tmp_path, "postgres://u:secret@h:99999/d", None)
    assert code == 1 and "no valid port" in err and "secret" not in err
    with pytest.raises(ValidationError):
        m.psql_dyno_command("DATABASE_URL; id")


def test_backup_records_keep_their_stored_shape() -> None:
    from datetime import UTC, datetime

    assert m.new_backup_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "b20260102030405"
    dump = m.Backup("b20260102030405", "postgres-abc123", "2026-01-02T03:04:05Z", size=123)
    assert dump.ref == "postgres-abc123:b20260102030405"
    assert dump.to_dict() == {
        "id": "b20260102030405", "addon": "postgres-abc123",
        "created_at": "2026-01-02T03:04:05Z", "size": 123,
    }  # fmt: skip
    addon = m.Addon("postgres-abc123", "postgres", "small", "managed", "shop")
    snap = {"id": "b1", "addon": addon.name, "created_at": "t", "snapshot": "df-plat-x-b1"}
    addon.resource["backups"] = [dump.to_dict(), snap]
    assert m.backups_of(addon) == [dump, m.Backup("b1", addon.name, "t", snapshot="df-plat-x-b1")]
    assert m.backups_of(addon)[1].to_dict() == snap
    assert m.database_name("postgres-abc123") == addon.db_name == "postgres_abc123"
