"""The python buildpack's choice of package manager, its cache rules and its detect, with bash
and the functions of bin/compile sourced (main does not run): no tools, no network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parents[2] / "buildpacks" / "python" / "bin"
ORDER = "(Pipfile.lock, requirements.txt, poetry.lock, uv.lock)"


def compile_functions(tmp_path: Path, files: dict[str, str], script: str) -> tuple[int, str]:
    """Run `script` in bash after sourcing bin/compile for an app made of `files`."""
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    for name, text in files.items():
        (app / name).write_text(text)
    done = subprocess.run(
        ["bash", "-c", f'PYTHON=python3 PY_VERSION=3.13.5; source "$1" "$2" "$3" ""; {script}',
         "bash", str(BIN / "compile"), str(app), str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def choice(tmp_path: Path, files: dict[str, str]) -> str:
    status, out = compile_functions(
        tmp_path, files, 'choose_manager; echo "$MANAGER / $SOURCE / $MANAGER_LABEL"'
    )
    assert status == 0, out
    return out.replace(f"{tmp_path}/app/", "")


UV_APP = {"pyproject.toml": "[project]\n", "uv.lock": "version = 1\n"}


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        ({"requirements.txt": "six\n"}, "requirements / requirements.txt / uv "),
        (
            {"pyproject.toml": "[project]\ndependencies = ['six']\n"},
            "requirements / pyproject.toml / uv ",
        ),
        (UV_APP, "uv / uv.lock / uv "),
        ({"pyproject.toml": "", "poetry.lock": ""}, "poetry / poetry.lock / Poetry "),
        ({"Pipfile": "", "Pipfile.lock": "{}"}, "pipenv / Pipfile.lock / Pipenv "),
    ],
)
def test_one_file_chooses_its_manager(tmp_path: Path, files: dict[str, str], chosen: str):
    out = choice(tmp_path, files)
    assert out.startswith(chosen) and "Several" not in out, out


def test_several_files_take_herokus_order_and_say_so(tmp_path: Path):
    files = {**UV_APP, "poetry.lock": "", "requirements.txt": "six\n"}
    lines = choice(tmp_path, files).splitlines()
    assert lines[0] == (
        " !     Several package manager files: requirements.txt, poetry.lock, uv.lock. Using"
        f" requirements.txt, the first in Heroku's order {ORDER}; remove the others."
    )
    assert lines[1].startswith("requirements / requirements.txt / uv ")
    files = {**files, "Pipfile": "", "Pipfile.lock": "{}"}
    assert choice(tmp_path, files).splitlines()[1].startswith("pipenv / Pipfile.lock / Pipenv ")


@pytest.mark.parametrize(
    ("files", "line"),
    [
        ({"Pipfile": ""}, "Pipfile has no Pipfile.lock: run 'pipenv lock' and commit Pipfile.lock"),
        ({"Pipfile.lock": "{}"}, "Pipfile.lock needs its Pipfile beside it; commit both"),
        ({"poetry.lock": ""}, "poetry.lock needs its pyproject.toml beside it; commit both"),
    ],
)
def test_missing_companion_file_fails_with_one_line(
    tmp_path: Path, files: dict[str, str], line: str
):
    status, out = compile_functions(tmp_path, files, "choose_manager")
    assert (status, out) == (1, f" !     {line}\n")


@pytest.mark.parametrize(
    ("files", "cacheable"),
    [
        ({"requirements.txt": "six==1.17.0\n"}, True),
        ({"requirements.txt": "-e ./lib\n"}, False),
        ({**UV_APP, "uv.lock": 'version = 1\nsource = { editable = "." }\n'}, True),
        ({**UV_APP, "uv.lock": 'version = 1\nsource = { virtual = "." }\n'}, True),
        ({**UV_APP, "uv.lock": 'version = 1\nsource = { path = "../shared" }\n'}, False),
        ({**UV_APP, "uv.lock": 'version = 1\nsource = { editable = "libs/a" }\n'}, False),
        ({"pyproject.toml": "", "poetry.lock": '[package.source]\ntype = "directory"\n'}, False),
        ({"pyproject.toml": "", "poetry.lock": '[package.source]\ntype = "git"\n'}, True),
        ({"Pipfile": "", "Pipfile.lock": '{"default": {"a": {"editable": true}}}'}, False),
        ({"Pipfile": "", "Pipfile.lock": '{"default": {"a": {"version": "==1"}}}'}, True),
    ],
)
def test_venv_is_cached_unless_local_paths_are_named(
    tmp_path: Path, files: dict[str, str], cacheable: bool
):
    status, out = compile_functions(tmp_path, files, "choose_manager; cacheable")
    assert status == (0 if cacheable else 1), out


def test_cache_key_follows_the_lock_file_and_its_manifest(tmp_path: Path):
    def key(files: dict[str, str]) -> str:
        status, out = compile_functions(tmp_path, files, "choose_manager; cache_key")
        assert status == 0 and len(out.strip()) == 24, out
        return out.strip()

    first = key(UV_APP)
    assert key(UV_APP) == first
    assert key({**UV_APP, "uv.lock": "version = 1\n# changed\n"}) != first
    assert key({**UV_APP, "pyproject.toml": "[project]\nname = 'x'\n"}) != first


@pytest.mark.parametrize(
    ("name", "detected"),
    [
        (n, True)
        for n in (
            "requirements.txt",
            "pyproject.toml",
            "Pipfile",
            "Pipfile.lock",
            "poetry.lock",
            "uv.lock",
        )
    ]
    + [("setup.cfg", False)],
)
def test_detect(tmp_path: Path, name: str, detected: bool):
    (tmp_path / name).write_text("")
    done = subprocess.run([str(BIN / "detect"), str(tmp_path)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == ((0, "Python\n") if detected else (1, ""))


def test_uv_is_the_platforms_and_the_apps_own_uv_leaves_its_cache(tmp_path: Path) -> None:
    runtime = tmp_path / "uv-runtime"
    (runtime / "bin").mkdir(parents=True)
    (runtime / "bin" / "uv").write_text("#!/bin/sh\n")
    (runtime / "bin" / "uv").chmod(0o755)
    old = tmp_path / "cache" / "python" / "tools" / "uv-0.13.9" / "bin"
    old.mkdir(parents=True)  # where buildpack version 3 installed uv for each app
    status, out = compile_functions(
        tmp_path,
        {"requirements.txt": "six\n"},
        f'DYNOFORM_UV_RUNTIME={runtime}; find_uv; use_uv; echo "UV=$UV"',
    )
    assert status == 0, out
    assert f"       uv 0.13.9: the platform's, {runtime}/bin/uv\n" in out
    assert f"UV={runtime}/bin/uv\n" in out
    assert not (tmp_path / "cache" / "python" / "tools" / "uv-0.13.9").exists()


@pytest.mark.parametrize(
    ("runtime", "line"),
    [
        ("/nonexistent/uv-0.13.9", "the uv runtime at /nonexistent/uv-0.13.9 has no bin/uv"),
        ("", "no uv to install the dependencies with: dynoform gives every build uv 0.13.9 in"),
    ],
    ids=["runtime without bin/uv", "no runtime, no uv on PATH"],
)
def test_without_uv_a_build_fails_with_one_line(tmp_path: Path, runtime: str, line: str) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    script = f'PATH={empty}:/bin; DYNOFORM_UV_RUNTIME="{runtime}"; find_uv; use_uv; echo used'
    status, out = compile_functions(tmp_path, {"requirements.txt": "six\n"}, script)
    assert status == 1 and "used" not in out
    assert out.startswith(f" !     {line}"), out
