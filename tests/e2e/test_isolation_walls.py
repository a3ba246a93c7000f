"""Walls between tenants and the platform, end to end on the local cloud.

- Dynos and builds (uids 40000-49999) cannot reach the cloud API endpoint (moto on the bridge
  gateway: the state bucket, every host's user-data), while the host itself (root) still
  fetches and stores slugs there and deploys work; nor any host's sshd.
- `pg:psql` never puts the database URL or its password on a command line, where every user
  of the host could read it in /proc/*/cmdline.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from e2e_support import EXAMPLES, Url, cli, get, new_app
from test_builds import write_buildpack

from provisioner.localcloud import endpoint_url

pytestmark = pytest.mark.cloud

# Lists the buckets at the endpoint (moto answers without a signature); prints how it went.
PROBE = """import sys, time, urllib.error, urllib.request
started = time.monotonic()
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
        print('probe: reached', response.status, flush=True)
except urllib.error.HTTPError as exc:
    print('probe: reached', exc.code, flush=True)
except OSError as exc:
    print('probe: refused', type(exc).__name__, f'{time.monotonic() - started:.1f}s', flush=True)
"""
PROBE_RE = re.compile(r"probe: (reached \d+|refused \w+ ([\d.]+)s)")


def probe_result(output: str) -> tuple[str, float]:
    found = PROBE_RE.search(output)
    assert found, output[-1500:]
    return found.group(1).split()[0], float(found.group(2) or 0)


def runner_ids(fleet: list[dict[str, object]]) -> list[str]:
    return sorted(str(h["id"]) for h in fleet)


def as_root(host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return cli("hosts:exec", host, "--", "sudo", "-n", *argv, check=False)


def root_reaches(endpoint: str, fleet: list[dict[str, object]]) -> None:
    """The hosts themselves (root) still use the endpoint: slugs, sources, caches."""
    for host in runner_ids(fleet):
        code = as_root(host, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "--max-time", "5", endpoint)  # fmt: skip
        assert code.stdout.strip() == "200", (host, code.stdout, code.stderr[-300:])


def test_a_dyno_cannot_reach_the_cloud_api(app_name: str, fleet: list[dict[str, object]]) -> None:
    endpoint = endpoint_url()  # http://198.18.0.1:4566 on the shared cloud
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    ran = cli("run", "-a", app_name, "--", "python3", "-c", PROBE, endpoint)
    outcome, seconds = probe_result(ran.stdout + ran.stderr)
    assert outcome == "refused", f"a one-off dyno reached {endpoint}"
    assert seconds < 5  # refused at once, not left to time out
    root_reaches(endpoint, fleet)


# Connects to port 22 of each address; prints how it went, one line each.
SSH_PROBE = """import socket, sys
for address in sys.argv[1:]:
    try:
        with socket.create_connection((address, 22), timeout=5) as sock:
            print('ssh', address, 'reached', flush=True)
    except OSError as exc:
        print('ssh', address, 'refused', type(exc).__name__, flush=True)
"""


def test_a_dyno_cannot_reach_the_sshd_of_its_host_or_another(
    app_name: str, fleet: list[dict[str, object]]
) -> None:
    """The controller judges a host by its sshd's answer: no dyno may tie it up."""
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    addresses = ["127.0.0.1", *sorted(str(h["private_ip"]) for h in fleet)]
    ran = cli("run", "-a", app_name, "--", "python3", "-c", SSH_PROBE, *addresses)
    lines = [line for line in (ran.stdout + ran.stderr).splitlines() if line.startswith("ssh ")]
    assert [line.split()[1] for line in lines] == addresses, ran.stdout + ran.stderr
    assert all(line.split()[2] == "refused" for line in lines), lines


def test_a_build_cannot_reach_the_cloud_api(
    app_name: str, fleet: list[dict[str, object]], tmp_path: Path
) -> None:
    endpoint = endpoint_url()
    pack = write_buildpack(
        tmp_path / "probe-pack",
        detect="echo Probe",
        compile=f"python3 -c {shlex.quote(PROBE)} {shlex.quote(endpoint)}",
        release="echo ---",
    )
    cli("buildpacks:set", str(pack), "-a", app_name)
    deployed = cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    outcome, seconds = probe_result(deployed.stderr)
    assert outcome == "refused", f"the build reached {endpoint}"
    assert seconds < 5
    assert get(Url.of_app(app_name), "/")[0] == 200  # the host still stored and fetched the slug
    root_reaches(endpoint, fleet)


# Every process's command line on a host, one a line (run as root there).
SCAN = """import os
for pid in os.listdir('/proc'):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            print(f.read().replace(b'\\0', b' ').decode(errors='replace'))
    except (OSError, NotADirectoryError):
        pass
"""


@pytest.fixture
def postgres_app(fleet: object) -> Iterator[str]:
    """A deployed app with a Postgres add-on (the add-on host is made on first use)."""
    app = new_app("wpg")
    addon = ""
    try:
        addon = cli("addons:create", "postgres", "-a", app).stdout.strip()
        cli("deploy", "-a", app, str(EXAMPLES / "procfile"))
        yield app
    finally:
        cli("apps:destroy", "-a", app, "--confirm", app, check=False)
        if addon:
            cli("addons:destroy", addon, "--confirm", addon, check=False)


def test_pg_psql_keeps_the_database_password_off_every_command_line(
    postgres_app: str, fleet: list[dict[str, object]]
) -> None:
    url = cli("config:get", "-a", postgres_app, "DATABASE_URL").stdout.strip()
    password = unquote(urlsplit(url).password or "")
    assert len(password) >= 16
    host = runner_ids(fleet)[0]  # one-off dynos run on the first host
    sql = "select 'it''s' as quoted, pg_sleep(6)"
    argv = [sys.executable, "-m", "provisioner", "-t", "local", "pg:psql", "-a", postgres_app]
    psql = subprocess.Popen(
        [*argv, "-c", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    scans, seen = [], False
    deadline = time.monotonic() + 120
    while psql.poll() is None and time.monotonic() < deadline:
        scan = as_root(host, "python3", "-c", SCAN).stdout
        scans.append(scan)
        if "pg_sleep" in scan:  # psql is running: its command line is in this scan
            seen = True
            scans.append(as_root(host, "python3", "-c", SCAN).stdout)
            break
    out, err = psql.communicate(timeout=120)
    assert psql.returncode == 0, err[-1500:]
    assert "it's" in out  # the quote in the SQL arrived as typed
    assert seen, "never saw psql running on the host"
    lines = [line for scan in scans for line in scan.splitlines()]
    leaks = [line for line in lines if password in line or url in line]
    assert not leaks, "the password is on a command line: " + leaks[0].replace(password, "<pw>")
