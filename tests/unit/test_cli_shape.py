import subprocess
import sys

import pytest

from provisioner.cli.main import normalize_argv


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["apps:create", "x"], ["apps", "create", "x"]),
        (["apps", "create", "x"], ["apps", "create", "x"]),
        (["ps", "--json", "-a", "x"], ["--json", "ps", "-a", "x"]),
        (["-t", "prod", "releases:rollback", "v2"], ["-t", "prod", "releases", "rollback", "v2"]),
        (
            ["run", "-a", "x", "--", "echo", "--json", "a:b"],
            ["run", "-a", "x", "--", "echo", "--json", "a:b"],
        ),
        (["config:set", "A=b:c", "--yes"], ["--yes", "config", "set", "A=b:c"]),
    ],
)
def test_normalize_argv(argv, expected):
    assert normalize_argv(argv) == expected


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], capture_output=True, text=True, env=env
    )


def test_help_lists_groups():
    result = run_cli("--help")
    assert result.returncode == 0
    for group in [
        "apps",
        "config",
        "releases",
        "ps",
        "logs",
        "hosts",
        "domains",
        "local",
        "targets",
        "deploy",
        "run",
    ]:
        assert group in result.stdout


def test_usage_error_exits_2_and_error_exits_1(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert run_cli("targets:nope", env=env).returncode == 2
    bad = run_cli("-t", "missing", "targets:info", "missing", env=env)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "error: no target named 'missing'" in bad.stderr


def test_targets_both_spellings_and_json(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert (
        run_cli(
            "targets:add", "prod", "--profile", "work", "--region", "eu-west-1", env=env
        ).returncode
        == 0
    )
    listed = run_cli("targets", "--json", env=env)
    assert '"prod"' in listed.stdout and '"eu-west-1"' in listed.stdout
    assert "aws_secret" not in (tmp_path / "dynoform" / "targets.toml").read_text()
    assert run_cli("targets", "remove", "prod", env=env).returncode == 0
    assert '"prod"' not in run_cli("targets", "--json", env=env).stdout
