"""Builds of apps that share a build host cannot reach each other (dynoform issue 15, items 1, 2
and the build half of 7), end to end on the local cloud with buildpacks written here.

Each app builds as its own dyno user in a sandbox: app A's build code, running while app B's
build is in progress on the same host, finds nothing of B (directories, cache, source, config
vars, processes) and can neither signal B nor write outside its own space. What a build leaves
behind is untrusted: results swapped for symlinks are refused, its disk space is capped, a bad
`.slugignore` gets one clear line, and its output reaches the terminal neutralised.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, cli, cli_json

from provisioner.aws.session import Aws
from provisioner.aws.state import bucket_name
from provisioner.targets import LOCAL_TARGET

pytestmark = pytest.mark.cloud

B_MARK = "sleep 25.1"  # B's long-running build process, recognisable in a process list


def write_buildpack(pack: Path, compile_body: str) -> Path:
    """A buildpack that always detects, runs compile_body (sh) and declares no defaults."""
    (pack / "bin").mkdir(parents=True)
    bodies = {"detect": "echo Probe", "compile": compile_body, "release": "echo ---"}
    for name, body in bodies.items():
        script = pack / "bin" / name
        script.write_text(f"#!/bin/sh\n{textwrap.dedent(body).strip()}\n")
        script.chmod(0o755)
    return pack


def build_host_of(app: str, host_ids: list[str]) -> str:
    """The host an app builds on (ops/deploy.py build_host: by a hash of the name)."""
    ordered = sorted(host_ids)
    return ordered[int(hashlib.sha256(app.encode()).hexdigest(), 16) % len(ordered)]


def runner_ids() -> list[str]:
    rows = cli_json("hosts")
    assert isinstance(rows, list)
    return [
        str(h["id"])
        for h in rows
        if h["state"] == "running" and h["bootstrapped"] and h["role"] == "runner"
    ]


@pytest.fixture
def two_apps_on_one_host(fleet: object) -> Iterator[tuple[str, str, str]]:
    """Two new apps whose builds land on the same host, and that host's id."""
    hosts = runner_ids()
    first = f"iso-a-{secrets.token_hex(3)}"
    while True:
        second = f"iso-b-{secrets.token_hex(3)}"
        if build_host_of(second, hosts) == build_host_of(first, hosts):
            break
    for name in (first, second):
        cli("apps:create", name, "--no-remote")
    try:
        yield first, second, build_host_of(first, hosts)
    finally:
        for name in (first, second):
            cli("apps:destroy", "-a", name, "--confirm", name, check=False)


def deploy_argv(app: str, source: Path) -> list[str]:
    return [sys.executable, "-m", "provisioner", "-t", "local", "deploy", "-a", app, str(source)]


def spy_buildpack(tmp: Path, other: str, other_pids: list[str]) -> Path:
    """App A's build code: each thing it tries against app B prints one PROBE line, whose value
    is what it got (listings, file bytes, processes) or WROTE / KILLED / refused."""
    pids = " ".join(other_pids)
    return write_buildpack(
        tmp / "spy-pack",
        f"""
        B={other}
        probe() {{ echo "PROBE $1: $2"; }}
        probe "my user" "$(id -un)"
        for dir in /srv /srv/dynoform /srv/dynoform/builds /srv/dynoform/builds/$B \\
            /srv/dynoform/builds/$B/* /srv/dynoform/cache /srv/dynoform/apps; do
          probe "list $dir" "$(ls -A "$dir" 2>/dev/null | tr '\\n' ' ')"
        done
        probe "find /srv" "$(find /srv 2>/dev/null | tr '\\n' ' ')"
        for file in /srv/dynoform/builds/$B/*/env/B_SECRET /srv/dynoform/builds/$B/*/source.tgz \\
            /srv/dynoform/builds/$B/*/build.log /srv/dynoform/cache/$B.tar \\
            /srv/dynoform/cache/$B/*; do
          probe "read $file" "$(head -c 100 "$file" 2>/dev/null | od -An -c | tr -s ' \\n' ' ')"
        done
        probe "processes" "$(ps -eo user=,pid=,args= 2>&1 | paste -sd ';' -)"
        probe "environs" "$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep B_SECRET)"
        for pid in {pids} $(pgrep -f '{B_MARK}'); do
          probe "environ of $pid" "$(tr '\\0' ' ' < /proc/$pid/environ 2>/dev/null)"
          probe "kill $pid" "$(kill -9 $pid 2>/dev/null && echo KILLED || echo refused)"
        done
        for path in /srv/x /srv/dynoform/x /srv/dynoform/builds/x /srv/dynoform/builds/$B/x \\
            /srv/dynoform/cache/x /etc/x /var/lib/x /var/x /usr/local/x /opt/x /root/x /home/x \\
            /srv/dynoform/builds/$B/*/app/x /srv/dynoform/builds/$B/*/env/x; do
          probe "write $path" "$( (echo x > "$path") 2>/dev/null && echo WROTE || echo refused)"
        done
        probe "write own /tmp" "$( (echo x > /tmp/x) 2>/dev/null && echo WROTE || echo refused)"
        """,
    )


def test_a_build_finds_nothing_of_another_apps_build_on_its_host(
    two_apps_on_one_host: tuple[str, str, str], tmp_path: Path
) -> None:
    spy, victim, host = two_apps_on_one_host
    secret = f"b-secret-{secrets.token_hex(8)}"
    cli("config:set", f"B_SECRET={secret}", "-a", victim)
    slow = write_buildpack(
        tmp_path / "slow-pack",
        f"""
        set -e
        export B_SECRET="$(cat "$3/B_SECRET")"
        echo "-----> B build started"
        {B_MARK}
        echo "-----> B build done"
        """,
    )
    cli("buildpacks:set", str(slow), "-a", victim)
    victim_deploy = subprocess.Popen(
        deploy_argv(victim, EXAMPLES / "procfile"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert victim_deploy.stderr is not None
    seen = []
    for line in victim_deploy.stderr:  # B's build holds its host while A's runs
        seen.append(line)
        if "B build started" in line:
            break
    found = cli("hosts:exec", host, "--", "pgrep", "-f", B_MARK, check=False).stdout.split()
    assert found, "B's build process is not on the host: " + "".join(seen)[-800:]
    cli("buildpacks:set", str(spy_buildpack(tmp_path, victim, found)), "-a", spy)
    spied = cli("deploy", "-a", spy, str(EXAMPLES / "procfile"), check=False)
    out, err = victim_deploy.communicate(timeout=300)
    victim_out = "".join(seen) + err

    probes = dict(re.findall(r"^PROBE (.*?): ?(.*)$", spied.stderr, flags=re.MULTILINE))
    assert len(probes) > 20, spied.stderr[-2000:]
    # Nothing of B shows or gives way to A's build code...
    assert secret not in spied.stderr + spied.stdout, _with(probes, secret)
    assert not [k for k, v in probes.items() if victim in v], _with(probes, victim)
    assert not [k for k, v in probes.items() if k.startswith(("read ", "environ")) and v], probes
    assert B_MARK not in probes["processes"], probes["processes"]
    assert not [k for k, v in probes.items() if v == "KILLED"], _with(probes, "kill")
    assert not [k for k, v in probes.items() if v == "WROTE" and k != "write own /tmp"]
    assert probes["write own /tmp"] == "WROTE"
    # ... which ran as A's own user, on the same host as B's build.
    assert probes["my user"].startswith("dyno-iso-a-"), probes["my user"]
    assert cli_json("builds", "-a", spy)[0]["host"] == host  # type: ignore[index]
    assert cli_json("builds", "-a", victim)[0]["host"] == host  # type: ignore[index]
    # B never noticed: its build and release went through.
    assert victim_deploy.returncode == 0, victim_out[-2000:]
    assert "B build done" in victim_out
    assert [r["version"] for r in cli_json("releases", "-a", victim)] == [2, 1]  # type: ignore[index]


def _with(probes: dict[str, str], word: str) -> str:
    return "\n".join(f"{k}: {v}" for k, v in probes.items() if word in k or word in v)


def swapper_buildpack(tmp: Path, name: str, target: str) -> Path:
    """Build code that, once the runner has written its result, swaps `name` in the build's
    directory for a symlink to `target`, and ignores SIGTERM while it waits."""
    return write_buildpack(
        tmp / f"swap-{name}",
        f"""
        work=$(dirname "$3")
        (
          trap '' TERM HUP
          while [ ! -e "$work/result.json" ]; do sleep 0.05; done
          ln -sf {target} "$work/.swap" && mv -f "$work/.swap" "$work/{name}"
        ) </dev/null >/dev/null 2>&1 &
        echo "-----> armed: {name} -> {target}"
        """,
    )


def slug_objects(app: str) -> list[str]:
    aws = Aws(LOCAL_TARGET)
    bucket = bucket_name("dynoform", aws.account_id())
    listing = aws.s3.list_objects_v2(Bucket=bucket, Prefix=f"slugs/{app}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def test_results_swapped_for_symlinks_are_refused_and_nothing_is_uploaded(
    app_name: str, tmp_path: Path
) -> None:
    for name in ("slug.tgz", "result.json"):
        pack = swapper_buildpack(tmp_path, name, "/etc/shadow")
        cli("buildpacks:set", str(pack), "-a", app_name)
        result = cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"), check=False)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1, (name, result.stderr[-1500:])
        assert last.startswith("error: refused the build's ") and name in last, last
        assert "symbolic link" in last, last
        assert "root:" not in result.stderr  # nothing of /etc/shadow was read
        assert slug_objects(app_name) == [], name
        assert cli_json("releases", "-a", app_name) == [], name


def test_a_build_cannot_write_more_than_its_capped_disk(app_name: str, tmp_path: Path) -> None:
    pack = write_buildpack(
        tmp_path / "filler",
        """
        work=$(dirname "$3")
        for target in "$1/big" "$2/big" "$work/big" /tmp/big /var/tmp/big /dev/shm/big \\
            /run/lock/big; do
          dd if=/dev/zero of="$target" bs=1M count=100 2>/dev/null
          echo "-----> wrote $(stat -c %s "$target") bytes to $target"
          rm -f "$target"
        done
        dd if=/dev/zero of="$1/fill" bs=1M count=100 || exit 1
        """,
    )
    cli("buildpacks:set", str(pack), "-a", app_name)
    # --max-slug-mb 16: the build gets 4 x 16 = 64 MB of disk for everything it writes.
    result = cli(
        "deploy", "-a", app_name, str(EXAMPLES / "procfile"), "--max-slug-mb", "16", check=False
    )
    written = [int(n) for n in re.findall(r"wrote (\d+) bytes", result.stderr)]
    assert len(written) == 7, result.stderr[-1500:]
    assert all(0 < n <= 64 * 1024 * 1024 for n in written), written
    assert result.returncode == 1, result.stderr[-1500:]
    last = result.stderr.strip().splitlines()[-1]
    assert "the build ran out of disk space: it has 64.0 MB" in last, last
    assert "--max-slug-mb" in last


def test_a_bad_slugignore_pattern_gets_one_line_naming_the_file(
    app_name: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (source / ".slugignore").write_text("*.psd\n[z-a]\n")
    result = cli("deploy", "-a", app_name, str(source), check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: build failed (slugignore): .slugignore line 2: '[z-a]'"), last
    assert "Traceback" not in result.stderr


def test_escape_sequences_from_a_build_reach_the_terminal_neutralised(
    app_name: str, tmp_path: Path
) -> None:
    pack = write_buildpack(
        tmp_path / "noisy",
        r"""
        printf '\033]0;pwned\007-----> title set\n'
        printf '\033[2J\033[H-----> screen cleared\n'
        """,
    )
    cli("buildpacks:set", str(pack), "-a", app_name)
    deployed = cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    replayed = cli("builds:output", "-a", app_name).stdout
    for shown in (deployed.stderr, replayed):
        assert "\x1b" not in shown and "\x07" not in shown
        assert r"\x1b]0;pwned\x07-----> title set" in shown
        assert r"\x1b[2J\x1b[H-----> screen cleared" in shown


def cache_buildpack(tmp_path: Path, marker: str) -> Path:
    """A buildpack that says what its cache holds, then leaves `marker` there."""
    return write_buildpack(
        tmp_path / "cache-pack",
        f"""
        echo "-----> cache holds: $(cat "$2/marker" 2>/dev/null || echo nothing)"
        echo {marker} > "$2/marker"
        """,
    )


def test_an_app_made_again_under_a_destroyed_apps_name_starts_without_its_cache(
    fleet: object, tmp_path: Path
) -> None:
    name = f"iso-c-{secrets.token_hex(3)}"
    marker = f"cache-of-the-first-{secrets.token_hex(4)}"
    pack = cache_buildpack(tmp_path, marker)
    try:
        cli("apps:create", name, "--no-remote")
        cli("buildpacks:set", str(pack), "-a", name)
        first = cli("deploy", "-a", name, str(EXAMPLES / "procfile"))
        assert "-----> cache holds: nothing" in first.stderr, first.stderr
        again = cli("deploy", "-a", name, str(EXAMPLES / "procfile"))
        assert f"-----> cache holds: {marker}" in again.stderr, again.stderr  # the cache works
        cli("apps:destroy", "-a", name, "--confirm", name)
        cli("apps:create", name, "--no-remote")
        cli("buildpacks:set", str(pack), "-a", name)
        later = cli("deploy", "-a", name, str(EXAMPLES / "procfile"))
        assert "-----> cache holds: nothing" in later.stderr, later.stderr
    finally:
        cli("apps:destroy", "-a", name, "--confirm", name, check=False)


def test_an_app_made_under_a_renamed_apps_old_name_starts_without_its_cache(
    fleet: object, tmp_path: Path
) -> None:
    old, new = f"iso-d-{secrets.token_hex(3)}", f"iso-e-{secrets.token_hex(3)}"
    marker = f"cache-of-{old}"
    pack = cache_buildpack(tmp_path, marker)
    try:
        cli("apps:create", old, "--no-remote")
        cli("buildpacks:set", str(pack), "-a", old)
        cli("deploy", "-a", old, str(EXAMPLES / "procfile"))
        cli("apps:rename", new, "-a", old)
        cli("apps:create", old, "--no-remote")
        cli("buildpacks:set", str(pack), "-a", old)
        later = cli("deploy", "-a", old, str(EXAMPLES / "procfile"))
        assert "-----> cache holds: nothing" in later.stderr, later.stderr
    finally:
        for name in (old, new):
            cli("apps:destroy", "-a", name, "--confirm", name, check=False)
