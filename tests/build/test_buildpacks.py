"""The build runner and the built-in buildpacks, for real, on this machine (no systemd).

Each test packs a source tarball (as `git archive` would), runs provisioner/build/runner.py in a
subprocess with the host's python3, and checks the result JSON, the output and the slug. The
python tests reach PyPI and the nodejs dependency test reaches the npm registry.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioner.plan.runtimes import Runtime

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "provisioner" / "build" / "runner.py"
BUILDPACKS = ROOT / "buildpacks"
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).with_name("fixtures")


def tool_version(name: str) -> str:
    """A package manager's version as the python buildpack pins it (`UV_VERSION=0.13.9`)."""
    compile_script = (BUILDPACKS / "python" / "bin" / "compile").read_text()
    found = re.search(rf"^{name}_VERSION=(\S+)$", compile_script, re.MULTILINE)
    assert found, name
    return found.group(1)


UV = tool_version("UV")


@functools.cache
def uv_runtime() -> Path:
    """The uv runtime as a host makes it (ops/runtime_uv.py's script: the pinned wheel from
    PyPI, sha256-checked), made once per test run: what builds get as DYNOFORM_UV_RUNTIME."""
    from provisioner.ops.runtime_uv import UV as KIND

    machine = os.uname().machine
    plan = KIND.acquire(Runtime("uv", UV, f"debian-13-{machine}"))
    work = Path(tempfile.mkdtemp(prefix="dynoform-uv-runtime-"))
    (work / "out").mkdir()
    argv = ["sh", "-c", plan.script, "sh", str(work / "out"), *plan.args]
    subprocess.run(argv, cwd=work, check=True, capture_output=True, timeout=300)
    root = work / "uv"
    root.mkdir()
    with tarfile.open(work / "out" / "runtime.tar.gz") as archive:
        archive.extractall(root, filter="data")
    return root


@dataclass
class Build:
    status: int
    output: str
    result: dict
    slug: Path
    seconds: float

    def members(self) -> list[str]:
        with tarfile.open(self.slug) as archive:
            return archive.getnames()

    def read(self, name: str) -> str:
        with tarfile.open(self.slug) as archive:
            member = archive.extractfile(name)
            assert member is not None
            return member.read().decode()


def make_source(src_dir: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(src_dir.rglob("*")):
            archive.add(path, arcname=path.relative_to(src_dir).as_posix(), recursive=False)
    return out


def write_app(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_build(
    tmp: Path,
    src_dir: Path,
    *,
    app_dir: Path | None = None,
    cache_dir: Path | None = None,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    tag: str = "b",
    uv: bool = True,
) -> Build:
    env_dir = tmp / f"env-{tag}"
    env_dir.mkdir(exist_ok=True)
    for name, value in (env or {}).items():
        (env_dir / name).write_text(value)
    source = make_source(src_dir, tmp / f"source-{tag}.tgz")
    slug = tmp / f"slug-{tag}.tgz"
    result = tmp / f"result-{tag}.json"
    argv = [
        sys.executable,
        str(RUNNER),
        "--source", str(source),
        "--app-dir", str(app_dir or tmp / "app"),
        "--cache-dir", str(cache_dir or tmp / "cache"),
        "--env-dir", str(env_dir),
        "--slug-out", str(slug),
        "--result", str(result),
    ]  # fmt: skip
    if not extra or "--buildpack" not in extra:
        argv += ["--buildpacks-dir", str(BUILDPACKS)]
    argv += extra or []
    argv += ["--runtime", f"uv={uv_runtime()}"] if uv else []  # as every build on a host
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    assert done.stderr == "", done.stderr
    return Build(done.returncode, done.stdout, json.loads(result.read_text()), slug, seconds)


def assert_ok(build: Build) -> None:
    assert build.status == 0, build.output
    assert build.result["ok"] is True
    digest = hashlib.sha256(build.slug.read_bytes()).hexdigest()
    assert build.result["sha256"] == digest
    assert build.result["size"] == build.slug.stat().st_size


def assert_fails(build: Build, stage: str, needle: str) -> None:
    assert build.status == 1, build.output
    assert build.result["ok"] is False
    assert build.result["stage"] == stage
    assert needle in build.result["error"], build.result["error"]
    assert needle in build.output
    assert " !     Build failed" in build.output
    assert not build.slug.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_web(app_dir: Path, command: str, extra_env: dict[str, str]) -> str:
    """Start a web process from a built app as a dyno would (.profile.d first), fetch `/json`
    or `/`, stop it. Returns the body."""
    port = free_port()
    script = 'for f in .profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; exec ' + command
    env = {"PATH": os.environ["PATH"], "HOME": str(app_dir), "PORT": str(port), **extra_env}
    proc = subprocess.Popen(
        ["bash", "-c", script], cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the examples ------------------------------------------------------------------------------


def test_python_example_cold_then_warm(tmp_path: Path):
    app_dir = tmp_path / "app"
    cold = run_build(tmp_path, EXAMPLES / "python", app_dir=app_dir, tag="cold")
    assert_ok(cold)
    assert "-----> Python app detected" in cold.output
    assert f"-----> Installing dependencies with uv {UV} (requirements.txt)" in cold.output
    assert cold.result["buildpack"] == "Python"
    assert set(cold.result["process_types"]) == {"web", "worker"}
    assert cold.result["release_command"] is None
    names = cold.members()
    assert "app.py" in names and "Procfile" in names
    assert "README.md" not in names and not any(n.startswith("tests") for n in names)  # .slugignore
    assert any(n.startswith(".venv/lib/") and n.endswith("gunicorn/__init__.py") for n in names)
    # uv ran from the platform's runtime: neither it nor pip is in the slug (pip was 944 of 1,130
    # files), and the app's cache holds no uv of its own.
    assert f"uv {UV}: the platform's, {uv_runtime()}/bin/uv" in cold.output
    assert not any("/site-packages/pip" in n or n == ".venv/bin/pip" for n in names)
    assert not any(n.endswith("/bin/uv") or "/site-packages/uv" in n for n in names)
    assert not (tmp_path / "cache" / "python" / "tools").exists()
    assert f"export VIRTUAL_ENV='{app_dir}/.venv'" in cold.read(".profile.d/python.sh")
    # Built where it runs: the venv's scripts point at the build dir (/app on hosts).
    assert cold.read(".venv/bin/gunicorn").startswith(f"#!{app_dir}/.venv/bin/python")

    warm = run_build(tmp_path, EXAMPLES / "python", app_dir=app_dir, tag="warm")
    assert_ok(warm)
    assert "Restoring the virtualenv from the build cache" in warm.output
    print(f"\npython example build: cold {cold.seconds:.2f} s, warm {warm.seconds:.2f} s")
    assert warm.seconds < cold.seconds
    # Same input, same place, warm cache: byte-identical slug.
    assert warm.result["sha256"] == cold.result["sha256"]

    body = run_web(
        app_dir, warm.result["process_types"]["web"], {"DYNO": "web.1", "DYNOFORM_RELEASE": "v7"}
    )
    assert json.loads(body)["dyno"] == "web.1" and json.loads(body)["release"] == "v7"

    # Changed requirements: the venv is rebuilt (uv and its cache warm), one venv is kept.
    changed = write_app(tmp_path / "changed", {"requirements.txt": "gunicorn==23.0.0\npackaging\n"})
    rebuilt = run_build(tmp_path, changed, app_dir=app_dir, tag="changed")
    assert_ok(rebuilt)
    assert f"Installing dependencies with uv {UV} (requirements.txt)" in rebuilt.output
    assert "from PyPI into the build cache" not in rebuilt.output
    assert len(list((tmp_path / "cache" / "python").glob("venv-*"))) == 1
    print(f"python, changed requirements: {rebuilt.seconds:.2f} s (uv and its cache warm)")


def test_nodejs_example(tmp_path: Path):
    build = run_build(tmp_path, EXAMPLES / "nodejs")
    assert_ok(build)
    assert "-----> Node.js app detected" in build.output
    assert build.result["process_types"] == {"web": "npm start"}
    body = run_web(tmp_path / "app", "npm start", {"DYNO": "web.2", "DYNOFORM_RELEASE": "v3"})
    assert json.loads(body)["dyno"] == "web.2" and json.loads(body)["release"] == "v3"


def test_static_example(tmp_path: Path):
    build = run_build(tmp_path, EXAMPLES / "static")
    assert_ok(build)
    assert "-----> Static HTML app detected" in build.output
    assert build.result["process_types"] == {"web": "python3 -m http.server $PORT"}
    assert build.members() == ["index.html"]


def test_procfile_only_example(tmp_path: Path):
    build = run_build(tmp_path, EXAMPLES / "procfile")
    assert_ok(build)
    assert "-----> Procfile app detected" in build.output
    assert build.result["process_types"] == {
        "web": "python3 -m http.server $PORT --directory public"
    }


# --- dependencies and caches -----------------------------------------------------------------


def test_nodejs_dependency_with_lock_file_cold_then_warm(tmp_path: Path):
    src = write_app(
        tmp_path / "src",
        {
            "package.json": json.dumps(
                {
                    "name": "t",
                    "version": "1.0.0",
                    "private": True,
                    "dependencies": {"ms": "2.1.3"},
                    "scripts": {"start": "node -e \"console.log(require('ms')(60000))\""},
                }  # fmt: skip
            )
        },
    )
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        cwd=src, capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    cold = run_build(tmp_path, src, tag="cold")
    assert_ok(cold)
    assert "npm ci (package-lock.json)" in cold.output
    assert "node_modules/ms/index.js" in cold.members()
    assert "package-lock.json" in cold.members()
    warm = run_build(tmp_path, src, tag="warm")
    assert_ok(warm)
    assert "Restoring node_modules from the build cache" in warm.output
    assert warm.result["sha256"] == cold.result["sha256"]
    print(f"\nnodejs (1 dependency): cold {cold.seconds:.2f} s, warm {warm.seconds:.2f} s")


def test_pyproject_dependencies_are_installed(tmp_path: Path):
    src = write_app(
        tmp_path / "src",
        {
            "pyproject.toml": '[project]\nname = "t"\nversion = "0"\ndependencies = ["gunicorn==23.0.0"]\n',
            "Procfile": "web: gunicorn app:app\n",
        },
    )
    build = run_build(tmp_path, src)
    assert_ok(build)
    assert any(n.endswith("site-packages/gunicorn/__init__.py") for n in build.members())


def test_django_collectstatic_and_its_switch(tmp_path: Path):
    src = write_app(
        tmp_path / "src",
        {
            "requirements.txt": "Django==5.1.4\n",
            "manage.py": (
                "import os, sys\n"
                "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site_settings')\n"
                "from django.core.management import execute_from_command_line\n"
                "execute_from_command_line(sys.argv)\n"
            ),
            "site_settings.py": (
                "from pathlib import Path\n"
                "BASE_DIR = Path(__file__).resolve().parent\n"
                "SECRET_KEY = 'build-only'\n"
                "INSTALLED_APPS = ['django.contrib.staticfiles']\n"
                "STATIC_URL = 'static/'\n"
                "STATIC_ROOT = BASE_DIR / 'staticfiles'\n"
                "STATICFILES_DIRS = [BASE_DIR / 'assets']\n"
            ),
            "assets/site.css": "body { color: teal }\n",
        },
    )
    build = run_build(tmp_path, src, tag="on")
    assert_ok(build)
    assert "Django: manage.py collectstatic --noinput" in build.output
    assert "staticfiles/site.css" in build.members()

    skipped = run_build(tmp_path, src, env={"DISABLE_COLLECTSTATIC": "1"}, tag="off")
    assert_ok(skipped)
    assert "skipping collectstatic (DISABLE_COLLECTSTATIC=1)" in skipped.output
    assert "staticfiles/site.css" not in skipped.members()


def test_python_version_file_names_what_is_available(tmp_path: Path):
    src = write_app(tmp_path / "src", {"requirements.txt": "", ".python-version": "3.99\n"})
    build = run_build(tmp_path, src)
    assert_fails(build, "compile", "bin/compile failed")
    assert "Python 3.99 (from .python-version) is not available on this build host" in build.output
    host = subprocess.run(
        ["python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    line = next(x for x in build.output.splitlines() if "not available" in x)
    print("\n" + line)
    assert f"Available: {host} (" in line or f", {host} (" in line


# --- package managers (lock files made with the tools: tests/build/fixtures) ----------------

LOCKED_APPS = {
    "uv": ("uv.lock", "uv", UV),
    "poetry": ("poetry.lock", "Poetry", tool_version("POETRY")),
    "pipenv": ("Pipfile.lock", "Pipenv", tool_version("PIPENV")),
}


def check_installed(app_dir: Path) -> None:
    """The fixtures' one main dependency (six) is importable from the built venv; their dev
    dependency (iniconfig) and the package managers are not in it."""
    script = (
        "import importlib.util as u, six; "
        "assert [u.find_spec(m) for m in ('iniconfig', 'pip', 'poetry', 'pipenv', 'uv')] == [None] * 5"
    )
    subprocess.run([str(app_dir / ".venv/bin/python"), "-c", script], check=True, timeout=30)


@pytest.mark.parametrize("manager", sorted(LOCKED_APPS))
def test_lock_file_app_cold_warm_and_reinstalled(tmp_path: Path, manager: str):
    lock, name, version = LOCKED_APPS[manager]
    label = f"{name} {version}"
    cache = tmp_path / "cache" / "python"
    cold = run_build(tmp_path, FIXTURES / manager, tag="cold")
    assert_ok(cold)
    assert f"-----> Installing dependencies with {label} ({lock})" in cold.output
    check_installed(tmp_path / "app")
    tools = ("/bin/uv", "/bin/poetry", "/bin/pipenv", "/bin/pip")
    assert not any(n.endswith(tools) for n in cold.members())
    # uv is the platform's; the build cache keeps a virtualenv per other tool and Python version.
    kept = sorted(p.name for p in (cache / "tools").iterdir()) if manager != "uv" else []
    assert not (cache / "tools").exists() if manager == "uv" else len(kept) == 1
    if manager != "uv":
        assert re.fullmatch(rf"{manager}-{re.escape(version)}-python-3\.\d+\.\d+", kept[0])

    warm = run_build(tmp_path, FIXTURES / manager, tag="warm")
    assert_ok(warm)
    assert (
        f"Restoring the virtualenv from the build cache ({lock} unchanged; {label})" in warm.output
    )
    assert warm.result["sha256"] == cold.result["sha256"]

    # Installed again with the tools and their caches warm: the same slug, byte for byte.
    for venv in cache.glob("venv-*"):
        shutil.rmtree(venv)
    again = run_build(tmp_path, FIXTURES / manager, tag="again")
    assert_ok(again)
    assert f"Installing dependencies with {label}" in again.output
    assert "from PyPI into the build cache" not in again.output
    assert again.result["sha256"] == cold.result["sha256"]
    print(
        f"\n{manager}: cold {cold.seconds:.2f} s, warm {warm.seconds:.2f} s,"
        f" reinstalled {again.seconds:.2f} s"
    )


def test_several_manager_files_a_stale_uv_lock_and_a_python_it_excludes(tmp_path: Path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "uv", src)
    (src / "requirements.txt").write_text("six==1.17.0\n")
    both = run_build(tmp_path, src, tag="both")
    assert_ok(both)
    assert (
        " !     Several package manager files: requirements.txt, uv.lock. Using requirements.txt,"
        " the first in Heroku's order (Pipfile.lock, requirements.txt, poetry.lock, uv.lock)"
    ) in both.output
    assert f"Installing dependencies with uv {UV} (requirements.txt)" in both.output

    (src / "requirements.txt").unlink()
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"six==1.17.0"', '"six==1.17.0", "idna"'))
    stale = run_build(tmp_path, src, tag="stale")
    assert_fails(stale, "compile", "uv.lock is out of date with pyproject.toml")
    assert stale.output.splitlines()[-2] == (
        " !     uv.lock is out of date with pyproject.toml: run 'uv lock' and commit uv.lock"
    )

    pyproject.write_text(pyproject.read_text().replace(">=3.10", ">=3.99"))
    too_old = run_build(tmp_path, src, tag="too-old")
    assert_fails(too_old, "compile", "is outside the project's requires-python (see above)")


@pytest.mark.parametrize(
    ("files", "line"),
    [
        (
            {"pyproject.toml": "[project]\n", "poetry.lock": "not = toml = at all\n"},
            "poetry.lock is not valid TOML (",
        ),
        (
            {"Pipfile": "[packages]\n", "Pipfile.lock": '{"default": {}}'},
            "Pipfile.lock is not a Pipenv lock file (it has no '_meta'); run 'pipenv lock'",
        ),
        (
            {"Pipfile": "[packages]\nsix = '*'\n"},
            "Pipfile has no Pipfile.lock: run 'pipenv lock' and commit Pipfile.lock",
        ),
        ({"uv.lock": "version = 1\n"}, "uv.lock needs its pyproject.toml beside it"),
    ],
    ids=["poetry.lock not TOML", "not a Pipfile.lock", "Pipfile alone", "uv.lock alone"],
)
def test_unusable_lock_files_fail_with_one_line(tmp_path: Path, files: dict[str, str], line: str):
    build = run_build(tmp_path, write_app(tmp_path / "src", files))
    assert_fails(build, "compile", line)
    assert " !     Build failed" in build.output.splitlines()[-1]
    assert line in build.output.splitlines()[-2]


def test_a_tool_that_cannot_be_installed_fails_with_one_line(tmp_path: Path):
    """PyPI out of reach (a proxy on a closed local port, set as config vars)."""
    env = {"https_proxy": f"http://127.0.0.1:{free_port()}", "UV_HTTP_RETRIES": "0"}
    build = run_build(tmp_path, FIXTURES / "poetry", env=env)
    poetry = tool_version("POETRY")
    assert_fails(build, "compile", f"could not install Poetry {poetry} from PyPI: see the output")


@pytest.mark.skipif(shutil.which("uv") is not None, reason="a uv on PATH would serve the build")
def test_a_build_without_uv_fails_with_one_line(tmp_path: Path):
    """The buildpack outside dynoform (no DYNOFORM_UV_RUNTIME) with no uv on PATH."""
    build = run_build(tmp_path, EXAMPLES / "python", uv=False)
    assert_fails(build, "compile", "no uv to install the dependencies with")
    assert f"dynoform gives every build uv {UV} in DYNOFORM_UV_RUNTIME" in build.output


# --- failures ----------------------------------------------------------------------------------


def custom_buildpack(
    root: Path, compile_body: str, release_yaml: str = "---\ndefault_process_types: {}\n"
) -> Path:
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho Custom\n",
        "compile": "#!/bin/sh\nset -e\n" + compile_body,
        "release": f"#!/bin/sh\ncat <<'EOF'\n{release_yaml}EOF\n",
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return root


def test_failing_buildpack(tmp_path: Path):
    pack = custom_buildpack(
        tmp_path / "bp", 'echo "       compiling"\necho "boom: missing libfoo"\nexit 3\n'
    )
    src = write_app(tmp_path / "src", {"Procfile": "web: true\n"})
    build = run_build(tmp_path, src, extra=["--buildpack", str(pack)])
    assert_fails(build, "compile", "Custom buildpack: bin/compile failed with exit status 3")
    assert "boom: missing libfoo" in build.result["error"]


def test_no_buildpack_detects_the_app(tmp_path: Path):
    src = write_app(tmp_path / "src", {"notes.txt": "hello\n"})
    build = run_build(tmp_path, src)
    assert_fails(build, "detect", "No default language could be detected for this app")


def test_malformed_procfile(tmp_path: Path):
    src = write_app(
        tmp_path / "src", {"Procfile": "web: python3 -m http.server $PORT\nworker python3 w.py\n"}
    )
    build = run_build(tmp_path, src)
    assert_fails(build, "procfile", "Procfile line 2: expected 'type: command'")


def test_oversized_slug_is_refused_with_its_size(tmp_path: Path):
    src = write_app(tmp_path / "src", {"Procfile": "web: true\n"})
    (src / "blob.bin").write_bytes(os.urandom(300_000))
    build = run_build(tmp_path, src, extra=["--max-slug-bytes", "100000"])
    assert_fails(build, "slug", "Compiled slug size 29")
    assert "is too large (max is 97.7 KB)" in build.result["error"]


def test_explicit_buildpack_gets_config_through_env_dir_only(tmp_path: Path):
    body = (
        'cp "$3/GREETING" "$1/greeting.txt"\n'
        'echo "${GREETING:-unset}" > "$1/environ.txt"\n'
        '[ ! -e "$1/big.psd" ] && echo ignored-before-compile > "$1/slugignore.txt"\n'
    )
    release = "---\ndefault_process_types:\n  web: ./serve --port $PORT\n  worker: ./work\n"
    pack = custom_buildpack(tmp_path / "bp", body, release)
    src = write_app(
        tmp_path / "src",
        {
            "Procfile": "worker: ./work --fast\nrelease: ./migrate\n",
            ".slugignore": "*.psd\n",
            "big.psd": "x",
        },
    )
    build = run_build(
        tmp_path, src, env={"GREETING": "hi there = 'x'\n"}, extra=["--buildpack", str(pack)]
    )
    assert_ok(build)
    assert build.read("greeting.txt") == "hi there = 'x'\n"
    assert build.read("environ.txt") == "unset\n"  # config vars are not in the environment
    assert build.read("slugignore.txt") == "ignored-before-compile\n"
    assert build.result["process_types"] == {
        "worker": "./work --fast",
        "web": "./serve --port $PORT",
    }
    assert build.result["release_command"] == "./migrate"
    assert build.result["buildpack"] == "Custom"


def test_multiple_buildpacks_run_in_order_with_exports(tmp_path: Path):
    """Heroku's multi-buildpack contract: each compiles in order; a buildpack's `export` file is
    sourced before the next ones; the last default_process_types win per type."""
    first = custom_buildpack(
        tmp_path / "bp1",
        'echo "export TOOL_HOME="$1/.tool"" > "$(dirname "$0")/../export"\necho one > "$1/order.txt"\n',
        "---\ndefault_process_types:\n  web: first\n  worker: first-worker\n",
    )
    second = custom_buildpack(
        tmp_path / "bp2",
        'echo two >> "$1/order.txt"\necho "$TOOL_HOME" > "$1/tool_home.txt"\n',
        "---\ndefault_process_types:\n  web: second\n",
    )
    src = write_app(tmp_path / "src", {"README": "x\n"})
    build = run_build(tmp_path, src, extra=["--buildpack", str(first), "--buildpack", str(second)])
    assert_ok(build)
    assert build.read("order.txt") == "one\ntwo\n"
    assert build.read("tool_home.txt") == f"{tmp_path / 'app'}/.tool\n"
    assert build.result["process_types"] == {"web": "second", "worker": "first-worker"}
    assert build.result["buildpack"] == "Custom + Custom"


def test_buildpacks_run_as_writable_copies_from_directories_and_staged_tarballs(tmp_path: Path):
    """The classic API lets a buildpack write its own directory (`export`, caches of its own):
    each build runs copies it owns, so read-only originals (the built-in ones, and what the
    deploy staged) stay untouched; a staged tarball is unpacked, from its only top-level
    directory too (GitHub's archives); each `export` is sourced before the next buildpack."""
    first = custom_buildpack(
        tmp_path / "bp1",
        'bp="$(cd "$(dirname "$0")/.." && pwd)"\necho "export TOOL_HOME=$bp" > "$bp/export"\n'
        'echo scratch > "$bp/scratch.txt"\necho "$STACK $SOURCE_VERSION" > "$1/stack.txt"\n',
    )
    (first / "bin" / "detect").write_text('#!/bin/sh\necho "First on $STACK"\n')
    second = custom_buildpack(
        tmp_path / "repo-main",
        'test -f "$TOOL_HOME/scratch.txt"\necho "$TOOL_HOME" > "$1/tool_home.txt"\n'
        'touch "$(dirname "$0")/../written"\n',
    )
    (second / "bin" / "release").write_text(
        '#!/bin/sh\nprintf -- "---\\ndefault_process_types:\\n  web: ./serve %s\\n" "$STACK"\n'
    )
    staged = tmp_path / "staged"
    staged.mkdir()
    with tarfile.open(staged / "1-repo.tgz", "w:gz") as tar:
        tar.add(second, arcname="repo-main")  # one top-level directory, as GitHub's archives
    for path in [first, *first.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    src = write_app(tmp_path / "src", {"README": "x\n"})
    build = run_build(
        tmp_path,
        src,
        extra=["--buildpack", str(first), "--buildpack", str(staged / "1-repo.tgz"),
               "--source-version", "a" * 40],
    )  # fmt: skip
    assert_ok(build)
    assert build.read("stack.txt") == f"dynoform-debian-13 {'a' * 40}\n"
    tool_home = build.read("tool_home.txt").strip()
    assert tool_home.endswith("/0/bp1") and not tool_home.startswith(str(tmp_path))
    assert sorted(p.name for p in first.rglob("*")) == ["bin", "compile", "detect", "release"]
    assert build.result["buildpack"] == "First on dynoform-debian-13 + Custom"
    assert build.result["process_types"] == {"web": "./serve dynoform-debian-13"}
    assert not (tmp_path / "repo-main" / "written").exists()


def test_a_staged_tarball_that_would_write_outside_its_copy_is_refused(tmp_path: Path):
    staged = tmp_path / "0-evil.tgz"
    with tarfile.open(staged, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    src = write_app(tmp_path / "src", {"README": "x\n"})
    build = run_build(tmp_path, src, extra=["--buildpack", str(staged)])
    assert_fails(build, "detect", "cannot copy buildpack evil")
    assert not (tmp_path / "escaped").exists()


def test_explicit_buildpack_that_does_not_detect(tmp_path: Path):
    pack = custom_buildpack(tmp_path / "bp", "true\n")
    (pack / "bin" / "detect").write_text("#!/bin/sh\necho 'no Gemfile here' >&2\nexit 1\n")
    src = write_app(tmp_path / "src", {"Procfile": "web: true\n"})
    build = run_build(tmp_path, src, extra=["--buildpack", str(pack)])
    assert_fails(build, "detect", "buildpack bp does not detect this app: no Gemfile here")


# --- slug format -----------------------------------------------------------------------------


def test_slug_is_deterministic_and_normalised(tmp_path: Path):
    src = write_app(tmp_path / "src", {"Procfile": "web: ./run\n", "b/z.txt": "z", "a.txt": "a"})
    (src / "run").write_text("#!/bin/sh\n")
    (src / "run").chmod(0o750)
    first = run_build(tmp_path, src, tag="one")
    os.utime(src / "a.txt", (1, 1))  # a new mtime in the source changes nothing
    second = run_build(
        tmp_path, src, app_dir=tmp_path / "other", cache_dir=tmp_path / "c2", tag="two"
    )
    assert_ok(first)
    assert first.result["sha256"] == second.result["sha256"]
    with tarfile.open(first.slug) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["Procfile", "a.txt", "b", "b/z.txt", "run"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", 1_000_000_000)
    }
    assert {m.name: m.mode for m in members}["run"] == 0o755
    raw = first.slug.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime


def test_cache_tarballs_round_trip(tmp_path: Path):
    """The S3 round trip of the build cache: --cache-out after one build, --cache-in on a
    fresh host (empty cache dir) makes the next build warm."""
    body = 'if [ -f "$2/stamp" ]; then echo "       cache hit"; else echo "       cache miss"; echo 1 > "$2/stamp"; fi\n'
    pack = custom_buildpack(tmp_path / "bp", body)
    src = write_app(tmp_path / "src", {"Procfile": "web: true\n"})
    out = tmp_path / "cache-out.tgz"
    first = run_build(
        tmp_path,
        src,
        cache_dir=tmp_path / "c1",
        extra=["--buildpack", str(pack), "--cache-out", str(out)],
        tag="1",
    )
    assert_ok(first)
    assert "cache miss" in first.output and out.is_file()
    second = run_build(
        tmp_path,
        src,
        cache_dir=tmp_path / "c2",
        extra=["--buildpack", str(pack), "--cache-in", str(out)],
        tag="2",
    )
    assert_ok(second)
    assert "cache hit" in second.output


def test_a_build_that_left_its_restored_cache_unchanged_writes_no_cache_tarball(tmp_path: Path):
    """A warm build whose cache is what it restored leaves no --cache-out (the host keeps its
    tarball); one that changed it writes a new one."""
    body = 'if [ -f "$2/stamp" ] && [ ! -f "$1/CHANGE" ]; then :; else date +%N > "$2/stamp"; fi\n'
    pack = custom_buildpack(tmp_path / "bp", body)
    src = write_app(tmp_path / "src", {"Procfile": "web: true\n"})
    cache_in = tmp_path / "cache-in.tar"
    first = run_build(
        tmp_path, src, cache_dir=tmp_path / "c1",
        extra=["--buildpack", str(pack), "--cache-out", str(cache_in)], tag="1",
    )  # fmt: skip
    assert_ok(first)
    assert cache_in.is_file()
    for tag, files, kept in (("2", {}, False), ("3", {"CHANGE": "x"}, True)):
        out = tmp_path / f"cache-out-{tag}.tar"
        again = run_build(
            tmp_path, write_app(tmp_path / f"src{tag}", {"Procfile": "web: true\n", **files}),
            cache_dir=tmp_path / f"c{tag}",
            extra=["--buildpack", str(pack), "--cache-in", str(cache_in), "--cache-out", str(out)],
            tag=tag,
        )  # fmt: skip
        assert_ok(again)
        assert out.is_file() == kept, tag


def test_source_with_unsafe_paths_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.tgz"
    with tarfile.open(bad, "w:gz") as archive:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    result = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--source", str(bad), "--app-dir", str(tmp_path / "app"),
         "--buildpacks-dir", str(BUILDPACKS), "--cache-dir", str(tmp_path / "c"),
         "--env-dir", str(tmp_path / "e"), "--slug-out", str(tmp_path / "s.tgz"), "--result", str(result)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(result.read_text())["stage"] == "source"
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_missing_fails_clearly(tmp_path: Path):
    """With no node on PATH, a package.json app is still detected as Node.js and compile says
    what the build host lacks (instead of falling through to another buildpack)."""
    src = write_app(tmp_path / "src", {"package.json": "{}", "index.html": "<p>x</p>"})
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in (
        "bash",
        "sh",
        "sed",
        "cat",
        "mkdir",
        "rm",
        "cp",
        "mv",
        "sha256sum",
        "cut",
        "dirname",
    ):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    env_path = os.environ["PATH"]
    os.environ["PATH"] = str(bindir)
    try:
        build = run_build(tmp_path, src)
    finally:
        os.environ["PATH"] = env_path
    assert_fails(build, "compile", "Node.js buildpack: bin/compile failed")
    assert "Node.js is not installed on this build host" in build.output
    assert "apt-get install nodejs npm" in build.output


# --- the transient build unit on a real Debian 13 systemd --------------------------------------

ROOTFS = Path(os.environ.get("DYNOFORM_TEST_ROOTFS", "/var/tmp/dfexp/root"))


@dataclass
class Container:
    leader: int

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=check,
        )  # fmt: skip


@pytest.fixture
def debian13(tmp_path: Path):
    """A throwaway Debian 13 systemd container (overlay over the cached rootfs, no network)."""
    if (
        os.geteuid() != 0
        or not shutil.which("systemd-nspawn")
        or not (ROOTFS / "usr/bin/python3").exists()
    ):
        pytest.skip("needs root, systemd-nspawn and a Debian 13 rootfs (DYNOFORM_TEST_ROOTFS)")
    layers = {name: tmp_path / name for name in ("upper", "work", "merged")}
    for path in layers.values():
        path.mkdir()
    merged = layers["merged"]
    options = f"lowerdir={ROOTFS},upperdir={layers['upper']},workdir={layers['work']}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    proc = None
    try:
        (merged / "etc/machine-id").write_text("")
        build_root = merged / "srv/dynoform/build"
        build_root.mkdir(parents=True)
        shutil.copy(RUNNER, build_root / "runner.py")
        shutil.copytree(BUILDPACKS, build_root / "buildpacks", symlinks=True)
        proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(merged), "--boot", "--register=no", "--keep-unit",
             "--private-network", f"--machine=bpt-{os.getpid()}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        container = Container(_wait_for_boot(proc))
        yield container, merged
    finally:
        if proc is not None:
            _stop_container(proc)
        subprocess.run(["umount", str(merged)], check=False)


def _wait_for_boot(proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "systemd-nspawn exited"
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if children:
            state = Container(int(children[0])).run("systemctl", "is-system-running", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                return int(children[0])
        time.sleep(0.5)
    raise AssertionError("the container did not boot within 60 s")


def _stop_container(proc: subprocess.Popen[bytes]) -> None:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if proc.poll() is None and children.exists() and children.read_text().split():
        Container(int(children.read_text().split()[0])).run(
            "systemctl", "poweroff", check=False, timeout=10
        )
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _prepare(container: Container, layout, disk: str = "64M") -> None:
    """What the deploy does on a build host before a build (buildhost.prepare, minus curl)."""
    from provisioner.build import CACHE_ROOT
    from provisioner.ops.buildhost import _PREPARE
    from provisioner.plan.units import create_app_user_argv

    if container.run("getent", "passwd", layout.user, check=False).returncode != 0:
        container.run(*create_app_user_argv(layout.app))
    owned = [layout.app_dir, layout.cache_dir, layout.env_dir, layout.tmp_dir]
    container.run(
        "sh", "-c", _PREPARE, "sh", layout.work_dir, layout.user, disk, CACHE_ROOT, *owned
    )


def _collect(container: Container, layout, name: str) -> dict[str, str]:
    """What buildhost's collector (_COLLECT_ALL, root's after a build) found of one file."""
    from provisioner.ops.buildhost import _COLLECT_ALL

    argv = ["python3", "-c", _COLLECT_ALL, layout.work_dir, layout.user]
    done = container.run(*argv, name, "262144", "-", "0600")
    return json.loads(done.stdout)[name]


@pytest.mark.cloud
def test_build_unit_runs_the_runner_at_app_as_the_apps_user(debian13, tmp_path: Path):
    from provisioner.build import build_layout, build_unit_argv, parse_build_result, runner_argv

    container, merged = debian13
    layout = build_layout("bpapp", "b1")
    _prepare(container, layout)
    # No network in this container: a python app without dependencies still makes a venv.
    src = write_app(tmp_path / "src", {"requirements.txt": "", "Procfile": "web: python app.py\n"})
    make_source(src, tmp_path / "source.tgz")
    (merged / "root/source.tgz").write_bytes((tmp_path / "source.tgz").read_bytes())
    container.run("install", "-o", layout.user, "-m", "0600", "/root/source.tgz", layout.source)

    done = container.run(*build_unit_argv(layout, runner_argv(layout)), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-----> Python app detected" in done.stdout  # streamed back through --pipe
    collected = _collect(container, layout, "result.json")
    result = parse_build_result(collected["text"])
    slug = container.run("sha256sum", layout.slug).stdout.split()[0]
    assert result.sha256 == slug
    owner = container.run("stat", "-c", "%U %u", f"{layout.app_dir}/.venv").stdout.split()
    assert owner[0] == "dyno-bpapp" and 40000 <= int(owner[1]) <= 49999
    fs = container.run("stat", "-f", "-c", "%T", layout.work_dir).stdout.strip()
    assert fs == "tmpfs"

    # A result swapped for a symlink is refused, not followed.
    container.run("ln", "-sf", "/etc/shadow", layout.result)
    refused = _collect(container, layout, "result.json")
    assert refused == {"refused": "is a symbolic link, not a regular file"}

    # The time limit is enforced: a build over RuntimeMaxSec is stopped and fails.
    slow = build_layout("bpapp", "b2")
    _prepare(container, slow)
    started = time.monotonic()
    done = container.run(*build_unit_argv(slow, ["sleep", "60"], runtime_max_sec=2), check=False)
    elapsed = time.monotonic() - started
    assert done.returncode != 0 and 2 <= elapsed < 30, (done.returncode, elapsed, done.stderr)


def test_source_fetched_from_a_url_in_a_file(tmp_path: Path):
    """Hosts fetch the source through a presigned URL; it comes in a file, never in argv."""
    served = tmp_path / "served"
    served.mkdir()
    make_source(EXAMPLES / "static", served / "src.tgz")
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url_file = tmp_path / "url"
        url_file.write_text(
            f"http://127.0.0.1:{server.server_address[1]}/src.tgz?X-Amz-Signature=abc\n"
        )
        result = tmp_path / "r.json"
        done = subprocess.run(
            [sys.executable, str(RUNNER), "--source-url-file", str(url_file),
             "--app-dir", str(tmp_path / "app"), "--buildpacks-dir", str(BUILDPACKS),
             "--cache-dir", str(tmp_path / "c"), "--env-dir", str(tmp_path / "e"),
             "--slug-out", str(tmp_path / "s.tgz"), "--result", str(result)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert done.returncode == 0, done.stdout
    assert json.loads(result.read_text())["buildpack"] == "Static HTML"
    assert "X-Amz-Signature" not in done.stdout


def test_results_are_collected_only_from_the_builds_own_regular_files(tmp_path: Path):
    """buildhost's collector (run as root on build hosts, in one round trip after the build)
    with this machine's python3: text, "sha size" of root's copy, missing, refused."""
    import pwd

    from provisioner.ops.buildhost import _COLLECT_ALL

    user = pwd.getpwuid(os.getuid()).pw_name
    work = tmp_path / "work"
    work.mkdir()
    (work / "result.json").write_text('{"ok": true}')
    (work / "slug.tgz").write_bytes(b"slug bytes")
    (work / "big").write_bytes(b"x" * 2000)
    (work / "link").symlink_to(tmp_path / "secret")
    (work / "cache-out.tar").symlink_to(tmp_path / "secret")
    (tmp_path / "secret").write_text("root-only")
    os.mkfifo(work / "fifo")

    def collect(*specs: tuple[str, str, str]) -> dict[str, dict[str, object]]:
        argv = [sys.executable, "-c", _COLLECT_ALL, str(work), user]
        for name, dest, mode in specs:
            argv += [name, "1000", dest, mode]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        return json.loads(done.stdout)

    found = collect(
        ("result.json", "-", "0600"),
        ("slug.tgz", str(tmp_path / "copy.tgz"), "0600"),
        ("cache-out.tar", str(tmp_path / "cache.next"), "0644"),
        ("missing", "-", "0600"),
        *((name, "-", "0600") for name in ("link", "fifo", "big")),
    )
    assert found == {
        "result.json": {"text": '{"ok": true}'},
        "slug.tgz": {"text": f"{hashlib.sha256(b'slug bytes').hexdigest()} 10"},
        "cache-out.tar": {"refused": "is a symbolic link, not a regular file"},
        "missing": {"missing": True},
        "link": {"refused": "is a symbolic link, not a regular file"},
        "fifo": {"refused": "is not a regular file"},
        "big": {"refused": "is larger than the limit of 1000 bytes"},
    }
    assert (tmp_path / "copy.tgz").read_bytes() == b"slug bytes"
    assert stat.S_IMODE((tmp_path / "copy.tgz").stat().st_mode) == 0o600
    assert not (tmp_path / "cache.next").exists()
    assert "root-only" not in json.dumps(found)
    os.link(work / "result.json", tmp_path / "another-name")  # a hard link: not its own file
    again = collect(("result.json", "-", "0600"))
    assert again == {"result.json": {"refused": "is not a file of the build's own"}}
