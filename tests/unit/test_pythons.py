"""The Python version an app asks for, and the exact CPython it gets (pure)."""

from __future__ import annotations

import pytest

from provisioner.errors import DynoformError
from provisioner.ops.runtime_python import PYTHON
from provisioner.plan import pythons


def ask(**files: str) -> str | None:
    names = {"python_version": ".python-version", "runtime": "runtime.txt"}
    return pythons.asked({names.get(k, k): v.encode() for k, v in files.items()})


def test_python_version_file_comes_first() -> None:
    assert ask(python_version="# The Python version to use.\n3.14\n", runtime="python-3.13.1") == (
        "3.14"
    )
    assert ask(python_version="3.14.7\n") == "3.14.7"
    assert ask(python_version="python-3.13\n") == "3.13"


def test_runtime_txt_then_pipfile_then_requires_python() -> None:
    assert ask(runtime="python-3.14.7\n") == "3.14.7"
    pipfile = '[packages]\ndjango = "*"\n\n[requires]\npython_version = "3.12"\n'
    pyproject = '[project]\nname = "x"\nrequires-python = ">=3.11,<3.14"\n'
    assert ask(Pipfile=pipfile, **{"pyproject.toml": pyproject}) == "3.12"
    assert ask(**{"pyproject.toml": pyproject}) == ">=3.11,<3.14"
    assert ask(**{"pyproject.toml": '[project]\nname = "x"\n'}) is None
    assert ask(Pipfile="[packages]\n") is None
    assert ask() is None


@pytest.mark.parametrize(
    ("spec", "exact"),
    [
        ("3.14", "3.14.7"),
        ("3.14.7", "3.14.7"),
        ("3.13", "3.13.15"),
        ("3.10", "3.10.21"),
        (">=3.12", "3.14.7"),
        (">=3.11,<3.14", "3.13.15"),
        ("~=3.12", "3.14.7"),
        ("~=3.12.0", "3.12.14"),
        ("==3.11.*", "3.11.15"),
        ("!=3.14.*, >=3.10", "3.13.15"),
        ("<=3.12.14", "3.12.14"),
        (">3.13.15", "3.14.7"),
    ],
)
def test_choose_picks_the_newest_pinned_release(spec: str, exact: str) -> None:
    assert pythons.choose(spec) == exact


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "3.14.9",
            "Python 3.14.9 is not a version dynoform knows: for 3.14 it has 3.14.7"
            " (hint: ask for 3.14 to get the newest dynoform knows)",
        ),
        (
            "3.9",
            "Python 3.9 is not supported: dynoform offers CPython 3.10 to 3.14"
            " (3.14.7, 3.13.15, 3.12.14, 3.11.15, 3.10.21)"
            " (hint: name one of them in .python-version, e.g. 3.14)",
        ),
        (
            "<3.10",
            "requires-python '<3.10' matches no Python dynoform offers"
            " (3.14.7, 3.13.15, 3.12.14, 3.11.15, 3.10.21)"
            " (hint: change requires-python, or name a version in .python-version)",
        ),
    ],
)
def test_what_cannot_be_had_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(DynoformError) as caught:
        pythons.choose(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({".python-version": "3.14\n3.13\n"}, ".python-version must name one version, e.g. 3.14"),
        ({".python-version": "pypy3.10\n"}, ".python-version says 'pypy3.10'; expected"),
        ({"runtime.txt": "3.14\n"}, "runtime.txt says '3.14'; expected e.g. python-3.14.7"),
        ({"pyproject.toml": "[project\n"}, "pyproject.toml cannot be read: "),
        (
            {"pyproject.toml": '[project]\nrequires-python = "3.12"\n'},
            "requires-python '3.12': cannot read '3.12'",
        ),
    ],
)
def test_a_bad_version_file_says_what_is_wrong(files: dict[str, str], message: str) -> None:
    with pytest.raises(DynoformError) as caught:
        pythons.asked({k: v.encode() for k, v in files.items()})
    assert str(caught.value).startswith(message)


def test_pinned_releases_name_their_sources() -> None:
    assert [r.minor for r in pythons.RELEASES] == ["3.14", "3.13", "3.12", "3.11", "3.10"]
    assert pythons.release("3.14.7").urls == (
        "https://www.python.org/ftp/python/3.14.7/Python-3.14.7.tar.xz",
        "https://deb.debian.org/debian/pool/main/p/python3.14/python3.14_3.14.7.orig.tar.xz",
    )
    assert pythons.release("3.12.14").urls == (
        "https://www.python.org/ftp/python/3.12.14/Python-3.12.14.tar.xz",
    )


def test_the_python_kind_resolves_and_acquires() -> None:
    runtime = PYTHON.resolve("3.14", "debian-13-x86_64")
    assert runtime.host_dir == "/srv/dynoform/runtimes/debian-13-x86_64/python-3.14.7"
    plan = PYTHON.acquire(runtime)
    assert plan.args[:3] == ("3.14.7", "3.14", pythons.release("3.14.7").sha256)
    assert plan.args[3].endswith(
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    )
    assert "libssl-dev" in plan.apt
    assert plan.args[-1].startswith("https://deb.debian.org/")


@pytest.mark.parametrize(
    ("spec", "platform", "serves"),
    [
        (">=3.11", "debian-13-x86_64", True),
        (">=3.10,<3.14", "debian-13-aarch64", True),
        (">=3.14", "debian-13-x86_64", False),
        ("==3.12.*", "debian-13-x86_64", False),
        (">=3.12", "debian-12-x86_64", False),
        ("3.13", "debian-13-x86_64", False),  # named in .python-version: a runtime, always
        (">=3.10", "ubuntu-24.04-x86_64", False),
    ],
)
def test_the_hosts_own_python_serves_a_range_it_satisfies(
    spec: str, platform: str, serves: bool
) -> None:
    assert pythons.system_serves(spec, platform) is serves
