"""The root group imports a command's module only when that command runs (issue 23: Python's
start and imports were most of a warm deploy's first half second)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import groups

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ["provisioner.ops", "provisioner.context", "boto3", "botocore", "fabric", "jinja2", "rich"]


def _loaded_after(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], list]:
    """Run `dynoform ARGV` in a fresh interpreter; (result, the modules it had imported)."""
    code = f"""
import json, sys
from provisioner.cli.main import main
try:
    main({list(argv)!r})
finally:
    sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    line = [x for x in result.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return result, json.loads(line.removeprefix("MODULES "))


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("name", list(groups.COMMANDS))
def test_every_row_is_a_real_command_with_its_help(name: str) -> None:
    command = groups.load(name)
    assert command.name == name
    assert command.get_short_help_str(10**6) == groups.COMMANDS[name].help


def test_the_table_names_every_command_its_modules_register() -> None:
    registered = {
        (module, name) for module in {e.module for e in groups.COMMANDS.values()}
        for name in groups.load_module(module)
    }  # fmt: skip
    assert registered == {(e.module, name) for name, e in groups.COMMANDS.items()}


def test_help_lists_every_command_without_importing_any(tmp_path: Path) -> None:
    result, modules = _loaded_after(tmp_path, "--help")
    lines = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in lines if line.startswith("  ")] == list(groups.COMMANDS)
    assert "Build and release an app." in result.stdout
    assert _heavy(modules) == []
    assert [m for m in modules if m.startswith("provisioner.cli.")] == [
        "provisioner.cli.common",
        "provisioner.cli.groups",
        "provisioner.cli.main",
    ]


def test_a_command_imports_its_own_module_only(tmp_path: Path) -> None:
    result, modules = _loaded_after(tmp_path, "targets", "--json")
    assert [t["name"] for t in json.loads(result.stdout)] == ["local"]
    commands = {m for m in modules if m.startswith("provisioner.cli.")}
    assert commands == {
        "provisioner.cli.common",
        "provisioner.cli.groups",
        "provisioner.cli.main",
        "provisioner.cli.targets",
    }


@pytest.mark.parametrize(
    "argv",
    [["apps:create", "--help"], ["apps", "create", "--help"], ["--json", "apps:create", "-h"]],
)
def test_colon_and_spaced_forms_reach_the_same_command(tmp_path: Path, argv: list[str]) -> None:
    result, modules = _loaded_after(tmp_path, *argv)
    assert result.stdout.startswith("Usage: dynoform apps create [OPTIONS] [name]")
    assert "provisioner.cli.apps" in modules and "provisioner.cli.deploy" not in modules


def test_a_nested_group_resolves_through_its_parent(tmp_path: Path) -> None:
    result, _ = _loaded_after(tmp_path, "ps:autoscale", "--help")
    assert result.stdout.startswith("Usage: dynoform ps autoscale [OPTIONS] COMMAND")


def test_an_unknown_command_exits_2_with_a_hint(tmp_path: Path) -> None:
    result, modules = _loaded_after(tmp_path, "appz")
    assert result.returncode == 2
    assert "Error: No such command 'appz'. Did you mean 'apps', 'apply'?" in result.stderr
    assert _heavy(modules) == []


def test_an_unknown_subcommand_names_its_group(tmp_path: Path) -> None:
    result, _ = _loaded_after(tmp_path, "apps:creat")
    assert result.returncode == 2
    assert "Usage: dynoform apps [OPTIONS] COMMAND [ARGS]..." in result.stderr
    assert "Error: No such command 'creat'. Did you mean 'create'?" in result.stderr


@pytest.mark.parametrize("module", ["apps", "deploy", "ps", "config", "releases"])
def test_everyday_commands_import_no_ssh_templates_or_crypto(module: str) -> None:
    """fabric/paramiko (~70 ms), jinja2 (~20 ms), cryptography (~15 ms), rich and the playbook
    load where they are used (the first SSH connection, render, certificate, table, host role),
    not when a command module is imported."""
    code = f"""
import sys
import provisioner.cli.{module}
late = ("fabric", "paramiko", "invoke", "jinja2", "cryptography", "rich", "provisioner.playbook")
print(sorted(m for m in sys.modules if m.startswith(late)))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_aws_errors_are_explained_without_main_importing_botocore() -> None:
    """main() no longer imports botocore to catch its errors: an error can only be botocore's
    once botocore is loaded, so it looks them up then."""
    from botocore.exceptions import ClientError, NoCredentialsError

    from provisioner.cli.main import _aws_failure

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DescribeVpcs")
    messages = [getattr(_aws_failure(e), "message", None) for e in (denied, NoCredentialsError())]
    assert messages == ["AWS said AccessDenied: no", "no AWS credentials found"]
    assert _aws_failure(ValueError("x")) is None


def test_the_first_connection_imports_paramiko_without_invoke() -> None:
    """paramiko.config imports invoke (~35 ms) only for ssh_config `Match exec`, which dynoform
    never reads: the first connection imports paramiko without it, and a later `import
    invoke` (if installed) still works."""
    code = """
import importlib.util, sys
from provisioner.remote import ssh
ssh._import_paramiko()
print("paramiko" in sys.modules, "invoke" in sys.modules)
if importlib.util.find_spec("invoke") is not None:
    import invoke
print("invoke" in sys.modules or importlib.util.find_spec("invoke") is None)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]
