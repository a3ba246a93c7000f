"""Dyno units (golden files), the env document, and the launcher run for real.

Regenerate golden files after an intended change: UPDATE_GOLDEN=1 pytest tests/unit/test_render.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.errors import DynoformError, ValidationError
from provisioner.paths import resource_dir
from provisioner.plan.units import DynoInstance
from provisioner.render import (
    ApiEndpoint,
    api_endpoint,
    launcher_source,
    render_dyno_unit,
    render_env_document,
    render_metadata_block,
    render_template,
    run_dyno_argv,
    wall_vars,
)

GOLDEN = Path(__file__).parent / "golden" / "dyno"
LAUNCHER = resource_dir("templates") / "dyno" / "dyno-launch"

CASES = {
    "web": DynoInstance("shop", 3, "web.1", "i-1", 20001),
    "worker-2x-restarted": DynoInstance("my-shop", 12, "worker.2", "i-2", None, 1, "standard-2x"),
}

TRICKY = {
    "QUOTES": 'it\'s "quoted" `cmd` $(x) $HOME \\ back',
    "NEWLINES": "line 1\nline 2\r\n\ttabbed\n",
    "EQUALS": "a=b=c==",
    "UTF8": "Grüße, 日本語, emoji 🚀",
    "EMPTY": "",
    "SPACES": "  leading and trailing  ",
    "PORT": "1",  # platform vars win over config vars
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


@pytest.mark.parametrize("case", sorted(CASES))
def test_dyno_units_match_golden_files(case: str) -> None:
    check_golden(f"{case}.service", render_dyno_unit(CASES[case]))


def test_web_unit_has_the_contract() -> None:
    text = render_dyno_unit(CASES["web"])
    for line in (
        "BindReadOnlyPaths=/srv/dynoform/apps/shop/releases/v3:/app",
        "LoadCredential=env:/srv/dynoform/apps/shop/env/v3.json",
        "User=dyno-shop",
        "Environment=PORT=20001",
        "Environment=DYNO=web.1",
        "MemoryMax=512M",
        "CPUQuota=100%",
        "TasksMax=256",
        "IPAddressDeny=169.254.169.254 fd00:ec2::254",
        "TimeoutStopSec=30",
        "RestartSteps=8",
        "ExecStart=/usr/local/lib/dynoform/dyno-launch web",
        # Its own port, no other in the dyno range (cgroup v2); size-capped /tmp and /var/tmp.
        "SocketBindAllow=tcp:20001",
        "SocketBindDeny=20000-29999",
        "TemporaryFileSystem=/tmp:size=128M,mode=1777,nosuid,nodev",
        "TemporaryFileSystem=/var/tmp:size=128M,mode=1777,nosuid,nodev",
        "TemporaryFileSystem=/dev/shm:size=128M,mode=1777,nosuid,nodev",
    ):
        assert line in text.splitlines(), line
    assert "PrivateTmp=yes" not in text.splitlines()  # it would win over TemporaryFileSystem=
    worker = render_dyno_unit(CASES["worker-2x-restarted"]).splitlines()
    assert not [x for x in worker if "PORT" in x or x.startswith("SocketBindAllow")]
    assert {"MemoryMax=1024M", "SocketBindDeny=20000-29999"} <= set(worker)
    assert "TemporaryFileSystem=/var/tmp:size=256M,mode=1777,nosuid,nodev" in worker


def test_web_dyno_without_port_and_line_breaks_are_refused() -> None:
    with pytest.raises(DynoformError, match="has no port"):
        render_dyno_unit(DynoInstance("shop", 3, "web.1", "i-1"))
    with pytest.raises(DynoformError, match="line break"):
        render_template("dyno/dyno.service.j2", **{"app": "a\nExecStartPre=/bin/sh"})


def test_env_document_is_json_with_config_and_commands() -> None:
    text = render_env_document(TRICKY, {"web": "gunicorn app:app", "worker": "python w.py"})
    check_golden("env.json", text)
    data = json.loads(text)
    assert data["format"] == 1 and data["config"]["NEWLINES"] == TRICKY["NEWLINES"]
    with pytest.raises(ValidationError):
        render_env_document({"BAD NAME": "x"}, {})


def test_launcher_source_is_the_shipped_file() -> None:
    assert launcher_source().startswith("#!/usr/bin/python3 -I")


def launch(
    tmp_path: Path, args: list[str], config: dict[str, str], profile: str = ""
) -> subprocess.CompletedProcess[str]:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    commands = {"web": "python3 -c 'import json,os; print(json.dumps(dict(os.environ)))'"}
    (creds / "env").write_text(render_env_document(config, commands), encoding="utf-8")
    app = tmp_path / "app"
    (app / ".profile.d").mkdir(parents=True, exist_ok=True)
    (app / ".profile.d" / "10-test.sh").write_text(profile, encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "CREDENTIALS_DIRECTORY": str(creds),
        "DYNO_APP_DIR": str(app),
        "PORT": "20001",
        "DYNO": "web.1",
    }
    return subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_launcher_round_trips_any_value_into_the_environment(tmp_path: Path) -> None:
    result = launch(tmp_path, ["web"], TRICKY)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)
    for key, value in TRICKY.items():
        if key != "PORT":
            assert env[key] == value, key
    assert env["PORT"] == "20001" and env["DYNO"] == "web.1"
    assert "DYNO_APP_DIR" not in env


def test_launcher_sources_profile_d_in_the_same_shell(tmp_path: Path) -> None:
    profile = 'PLAIN="from profile: $EQUALS"\nexport EXPORTED=yes\n'
    script = 'printf "%s|%s|%s" "$PLAIN" "$EXPORTED" "$UTF8"; exit 3'
    result = launch(tmp_path, ["--run", script], TRICKY, profile)
    assert result.returncode == 3, result.stderr  # the exit status passes through
    assert result.stdout == "from profile: a=b=c==|yes|" + TRICKY["UTF8"]


def test_launcher_explains_what_is_wrong(tmp_path: Path) -> None:
    result = launch(tmp_path, ["clock"], {})
    assert result.returncode == 78
    assert "process type 'clock' is not in this release's Procfile (known: web)" in result.stderr
    no_creds = subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), "web"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert no_creds.returncode == 78 and "LoadCredential=env" in no_creds.stderr


def test_metadata_block_matches_golden_file() -> None:
    check_golden("metadata-block.nft", render_metadata_block())


def test_wall_of_the_local_cloud_also_blocks_its_api_endpoint() -> None:
    api = api_endpoint("http://198.18.0.1:4566")
    assert api == ApiEndpoint(("198.18.0.1",), 4566)
    check_golden("metadata-block-local.nft", render_metadata_block(api))


def test_api_endpoint_of_a_target() -> None:
    assert api_endpoint(None) is None  # AWS proper: public endpoints, nothing to wall off
    assert api_endpoint("https://[fd00::5]/") == ApiEndpoint(("fd00::5",), 443)
    assert api_endpoint("http://10.0.0.9") == ApiEndpoint(("10.0.0.9",), 80)
    names = api_endpoint("https://s3.internal:9000", resolve=lambda h: ["10.1.0.2", "fd00::2"])
    assert names == ApiEndpoint(("10.1.0.2", "fd00::2"), 9000)
    assert wall_vars(names)["api_rules"] == [
        "ip daddr 10.1.0.2 tcp dport 9000",
        "ip6 daddr fd00::2 tcp dport 9000",
    ]
    assert wall_vars(None) == {"api_rules": []}
    with pytest.raises(DynoformError, match="no resolver"):
        api_endpoint("http://moto.local:4566")  # a name needs the edge's DNS
    with pytest.raises(DynoformError, match="not http"):
        api_endpoint("ftp://10.0.0.1/")
    with pytest.raises(DynoformError, match="no address"):
        api_endpoint("http://nowhere:1", resolve=lambda h: [])


def test_one_off_dynos_get_the_same_isolation_through_systemd_run() -> None:
    run = DynoInstance("shop", 3, "run.1", "i-1")
    argv = run_dyno_argv(run, "bash -lc 'x=1'", tty=True)
    assert argv[:8] == [
        "systemd-run",
        "--quiet",
        "--expand-environment=no",
        "--unit=dyno-shop.v3.run.1.service",
        "--slice=dynoform.slice",
        "--wait",
        "--collect",
        "--pty",
    ]
    assert argv[-4:] == ["--", "/usr/local/lib/dynoform/dyno-launch", "--run", "bash -lc 'x=1'"]
    props = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert "LoadCredential=env:/srv/dynoform/apps/shop/env/v3.json" in props
    assert "IPAddressDeny=169.254.169.254 fd00:ec2::254" in props
    assert "SocketBindDeny=20000-29999" in props
    assert "TemporaryFileSystem=/tmp:size=128M,mode=1777,nosuid,nodev" in props
    assert not any(p.startswith(("Restart", "ExecStart")) for p in props)
    detached = run_dyno_argv(run, "sleep 1", detach=True)
    assert "--no-block" in detached and "--wait" not in detached
