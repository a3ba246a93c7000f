"""Names and places of language runtimes (pure)."""

from __future__ import annotations

import pytest

from provisioner.build.runner import BuildError, runtime_env
from provisioner.errors import ValidationError
from provisioner.plan.runtimes import Runtime, platform_of

SHA = "ab" * 32


def test_a_runtime_has_its_places() -> None:
    runtime = Runtime("python", "3.14.7", "debian-13-x86_64")
    assert runtime.name == "python-3.14.7"
    assert runtime.pointer_key == "runtimes/debian-13-x86_64/python-3.14.7.json"
    assert (
        runtime.tarball_key(SHA)
        == "runtimes/debian-13-x86_64/python-3.14.7-abababababababab.tar.gz"
    )
    assert runtime.host_dir == "/srv/dynoform/runtimes/debian-13-x86_64/python-3.14.7"
    assert runtime.runner_arg() == "python=/srv/dynoform/runtimes/debian-13-x86_64/python-3.14.7"


@pytest.mark.parametrize(
    ("kind", "version", "platform"),
    [
        ("ruby", "3.3.0", "debian-13-x86_64"),
        ("python", "3.14; rm -rf /", "debian-13-x86_64"),
        ("python", "3", "debian-13-x86_64"),
        ("node", "22.1.0", "../etc-13-x86_64"),
        ("node", "22.1.0", "debian-13-sparc"),
    ],
)
def test_bad_names_are_refused(kind: str, version: str, platform: str) -> None:
    with pytest.raises(ValidationError):
        Runtime(kind, version, platform)


def test_only_a_sha256_names_a_tarball() -> None:
    with pytest.raises(ValidationError):
        Runtime("node", "22.1.0", "debian-13-x86_64").tarball_key("../x")


def test_the_platform_of_a_host() -> None:
    assert platform_of("debian", "13", "x86_64") == "debian-13-x86_64"
    assert platform_of("Debian\n", "13", "arm64") == "debian-13-aarch64"
    with pytest.raises(ValidationError):
        platform_of("debian", "", "x86_64")


def test_the_runner_tells_buildpacks_where_runtimes_are() -> None:
    env = runtime_env(["python=/srv/dynoform/runtimes/p/python-3.14.7", "node=/r/node-22.1.0"])
    assert env == {
        "DYNOFORM_PYTHON_RUNTIME": "/srv/dynoform/runtimes/p/python-3.14.7",
        "DYNOFORM_NODE_RUNTIME": "/r/node-22.1.0",
    }
    with pytest.raises(BuildError):
        runtime_env(["python=relative/dir"])
