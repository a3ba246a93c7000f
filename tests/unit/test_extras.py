"""The local cloud is the `local` extra: without moto and Flask every other command works, and
`dynoform local ...` says in one line how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# As if `pip install dynoform` (no extra): moto and flask cannot be imported.
WITHOUT_EXTRA = """
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("moto", "flask"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DYNOFORM_LOCAL_DIR": str(tmp_path / "local"),
    }
    env.pop("DYNOFORM_LOCAL_ENDPOINT", None)
    env.pop("DYNOFORM_TARGET", None)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", WITHOUT_EXTRA + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return _run(f"from provisioner.cli.main import main\nmain({list(argv)!r})\n", tmp_path)


def test_the_blocker_blocks(tmp_path):
    result = _run("import moto\n", tmp_path)
    assert result.returncode == 1
    assert "No module named 'moto'" in result.stderr


@pytest.mark.parametrize("argv", [["--help"], ["targets", "--json"], ["local", "--help"]])
def test_commands_work_without_the_extra(tmp_path, argv):
    result = _cli(tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_every_module_outside_the_local_cloud_imports_without_it(tmp_path):
    code = """
import importlib, pkgutil
import provisioner
names = [m.name for m in pkgutil.walk_packages(provisioner.__path__, "provisioner.")]
for name in names:
    if not name.startswith("provisioner.localcloud.") and name != "provisioner.__main__":
        importlib.import_module(name)
assert "moto" not in sys.modules and "flask" not in sys.modules
print(len(names))
"""
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50


def test_a_command_on_local_says_the_cloud_is_not_running(tmp_path):
    result = _cli(tmp_path, "apps")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the local cloud is not running (hint: start it with `dynoform local up`)"
    ]


@pytest.mark.parametrize("command", ["up", "status", "trust"])
def test_local_commands_name_the_extra_in_one_line(tmp_path, command):
    result = _cli(tmp_path, "local", command)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the local cloud needs moto, which is not installed: pip install 'dynoform[local]'"
    ]


def test_moto_is_in_the_local_extra_only():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not [dep for dep in project["dependencies"] if dep.startswith(("moto", "flask"))]
    assert [dep for dep in extras["local"] if dep.startswith("moto")] == ["moto[server]>=5.1,<6"]
    assert "dynoform[local]" in extras["dev"]  # the tests run moto in-process
