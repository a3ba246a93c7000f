"""uv as a runtime every build gets (ops/runtime_uv.py): its pins, its name and places, how a host
makes it (the script, run here on a fake wheel through file://), and the one round trip that
tells what a host has (plan/runtimes.py HOST_RUNTIMES)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from provisioner.errors import DynoformError, ValidationError
from provisioner.ops import runtime_python
from provisioner.ops.runtime_uv import UV, UV_VERSION, UV_WHEELS
from provisioner.plan.runtimes import HOST_RUNTIMES, KINDS, Runtime, parse_host_runtimes

BUILDPACK = Path(__file__).resolve().parents[2] / "buildpacks" / "python" / "bin" / "compile"
PLATFORM = "debian-13-x86_64"


def test_the_pins_are_one_version_for_every_machine_and_the_buildpack() -> None:
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", UV_VERSION)
    assert set(UV_WHEELS) == {"x86_64", "aarch64"}
    for url, sha256 in UV_WHEELS.values():
        assert url.startswith("https://files.pythonhosted.org/packages/")
        assert f"/uv-{UV_VERSION}-py3-none-manylinux" in url and url.endswith(".whl")
        assert re.fullmatch(r"[0-9a-f]{64}", sha256)
    assert runtime_python.UV_WHEELS is UV_WHEELS  # the Python maker's uv is the same pin
    assert f"\nUV_VERSION={UV_VERSION}\n" in BUILDPACK.read_text()


def test_uv_is_a_kind_with_its_names_and_places() -> None:
    assert "uv" in KINDS
    runtime = UV.resolve(UV.wanted({}) or "", PLATFORM)
    assert runtime == Runtime("uv", UV_VERSION, PLATFORM)
    assert runtime.name == f"uv-{UV_VERSION}"
    assert runtime.pointer_key == f"runtimes/{PLATFORM}/uv-{UV_VERSION}.json"
    assert runtime.tarball_key("cd" * 32) == (
        f"runtimes/{PLATFORM}/uv-{UV_VERSION}-cdcdcdcdcdcdcdcd.tar.gz"
    )
    assert runtime.runner_arg() == f"uv=/srv/dynoform/runtimes/{PLATFORM}/uv-{UV_VERSION}"
    with pytest.raises(ValidationError):
        Runtime("uv", "0.13.9; id", PLATFORM)


def test_every_build_wants_uv_whatever_its_files() -> None:
    assert UV.files == ()
    assert UV.wanted({}) == UV.wanted({"requirements.txt": b"x"}) == UV_VERSION


def test_the_plan_names_the_pinned_wheel_of_the_machine() -> None:
    arm = UV.acquire(Runtime("uv", UV_VERSION, "debian-13-aarch64"))
    assert arm.args == (*UV_WHEELS["aarch64"], UV_VERSION)
    assert arm.origin == "pypi" and arm.apt == ()
    with pytest.raises(DynoformError, match="no pinned wheel of uv 0.12.0"):
        UV.acquire(Runtime("uv", "0.12.0", PLATFORM))


UV_BIN = b'#!/bin/sh\n[ "$1" = --version ] && echo "uv %s (abc1234 2026-11-20)"\n'


def fake_wheel(where: Path, says: str = UV_VERSION) -> tuple[str, str]:
    """A wheel laid out as uv's (uv-VERSION.data/scripts/uv) whose uv says it is `says`, its
    file:// URL and sha256."""
    where.mkdir(parents=True)
    path = where / f"uv-{UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("uv/__init__.py", "")
        wheel.writestr(f"uv-{UV_VERSION}.data/scripts/uv", UV_BIN.replace(b"%s", says.encode()))
    return f"file://{path}", hashlib.sha256(path.read_bytes()).hexdigest()


def make(tmp: Path, url: str, sha256: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run the host's make script as ops.runtimes runs it: $1 an empty dir, the plan's args."""
    plan = UV.acquire(Runtime("uv", UV_VERSION, PLATFORM))
    # An output dir with a space and quotes: each argument reaches the commands as one word.
    out, stage = tmp / "out 'with' \"quotes\" $HOME", tmp / "stage"
    out.mkdir()
    stage.mkdir()
    argv = ["sh", "-c", plan.script, "sh", str(out), url, sha256, UV_VERSION]
    done = subprocess.run(argv, cwd=stage, capture_output=True, text=True, timeout=60)
    return out, done


def test_the_make_script_takes_uv_out_of_the_checked_wheel(tmp_path: Path) -> None:
    url, sha256 = fake_wheel(tmp_path / "w")
    out, done = make(tmp_path, url, sha256)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"uv {UV_VERSION} (abc1234 2026-11-20): " in done.stdout.splitlines()[-1]
    with tarfile.open(out / "runtime.tar.gz") as tar:
        names = sorted(n.removeprefix("./") for n in tar.getnames() if n != ".")
        mode = tar.getmember("./bin/uv").mode
    assert names == ["bin", "bin/uv"] and mode & 0o111


def test_the_make_script_refuses_a_wheel_that_is_not_the_pin(tmp_path: Path) -> None:
    url, _ = fake_wheel(tmp_path / "w")
    out, done = make(tmp_path, url, "0" * 64)
    assert done.returncode == 5
    assert "is not the pinned one" in done.stdout
    assert not (out / "runtime.tar.gz").exists()


def test_the_make_script_refuses_a_uv_of_another_version(tmp_path: Path) -> None:
    url, sha256 = fake_wheel(tmp_path / "w", says="0.1.0")
    out, done = make(tmp_path, url, sha256)
    assert (
        done.returncode == 6
        and f"says 'uv 0.1.0 (abc1234 2026-11-20)', not uv {UV_VERSION}" in done.stdout
    )
    assert not (out / "runtime.tar.gz").exists()


def test_what_a_host_has_is_read_from_one_answer() -> None:
    answer = (
        "debian 13 x86_64\n"
        f"debian-13-x86_64/uv-{UV_VERSION}\n"
        "debian-13-x86_64/python-3.14.7\n"
        "debian-13-aarch64/node-22.1.0\n"
    )
    host = parse_host_runtimes(answer)
    assert host.platform == PLATFORM
    assert host.have == {f"uv-{UV_VERSION}", "python-3.14.7"}
    assert parse_host_runtimes("debian 13 arm64\n").have == frozenset()
    with pytest.raises(ValidationError):
        parse_host_runtimes("")


def test_the_host_script_runs_here() -> None:
    """HOST_RUNTIMES on this machine: its platform, and no error without a runtimes dir."""
    done = subprocess.run(["sh", "-c", HOST_RUNTIMES], capture_output=True, text=True, check=True)
    assert parse_host_runtimes(done.stdout).platform.endswith(("-x86_64", "-aarch64"))
