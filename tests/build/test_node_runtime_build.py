"""The nodejs buildpack with the Node.js an app asks for ($DYNOFORM_NODE_RUNTIME), for real on
this machine: the runtime dir is laid out from the npm registry by the same script a build host
runs (ops/runtime_node.py), then the runner builds apps with npm and with pnpm/yarn through
corepack. Reaches the npm registry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_buildpacks import EXAMPLES, assert_ok, run_build, run_web, write_app

from provisioner.ops.runtime_node import NodeKind

# This machine's npm registry serves no package signatures, which corepack checks by default
# (the public registry has them): the apps here turn the check off with corepack's own switch.
NO_SIGNATURES = {"COREPACK_INTEGRITY_KEYS": "0"}


@pytest.fixture(scope="module")
def node22(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Node.js 22 (newest), npm and corepack laid out as a build host makes them."""
    kind = NodeKind()
    runtime = kind.resolve("22.x", "debian-13-x86_64")
    plan = kind.acquire(runtime)
    out = tmp_path_factory.mktemp("node-runtime")
    subprocess.run(["sh", "-c", plan.script, "sh", str(out), *plan.args], check=True, timeout=600)
    root = out / "root"
    assert (root / "bin" / "node").is_file() and (root / "bin" / "corepack").exists()
    return root


def runtime_arg(root: Path) -> list[str]:
    return ["--runtime", f"node={root}"]


def test_the_app_runs_the_node_it_asked_for_from_the_slug(tmp_path: Path, node22: Path) -> None:
    build = run_build(tmp_path, EXAMPLES / "nodejs-22", extra=runtime_arg(node22))
    assert_ok(build)
    assert "-----> Using node v22." in build.output
    assert "(the version the app asks for; NODE_ENV=production)" in build.output
    members = build.members()
    assert ".heroku/node/bin/node" in members and ".heroku/node/bin/npm" in members
    assert ".heroku/node/.complete" not in members
    assert "export PATH='" in build.read(".profile.d/nodejs.sh")
    assert build.result["process_types"] == {"web": "npm start"}
    # The dyno's PATH has the host's node (v20 here) after the slug's: the slug's answers.
    body = run_web(tmp_path / "app", "npm start", {})
    assert body.startswith("v22."), body


def test_engines_npm_replaces_the_npm_of_the_node_line(tmp_path: Path, node22: Path) -> None:
    package = json.loads((EXAMPLES / "nodejs-22" / "package.json").read_text())
    package["engines"]["npm"] = "11.x"
    src = write_app(tmp_path / "src", {"package.json": json.dumps(package), "server.js": ""})
    build = run_build(tmp_path, src, extra=runtime_arg(node22))
    assert_ok(build)
    assert "-----> Installing npm 11.x (engines.npm)" in build.output
    assert ", npm 11." in build.output
    assert (node22 / "lib/node_modules/npm/package.json").is_file()  # the host's copy untouched


def pnpm_app(root: Path, node22: Path) -> Path:
    """An app with pnpm (packageManager), a dependency, a dev dependency its build script needs,
    and the pnpm-lock.yaml pnpm writes."""
    package = {
        "name": "t",
        "version": "1.0.0",
        "private": True,
        "packageManager": "pnpm@9.15.9",
        "engines": {"node": "22.x"},
        "dependencies": {"ms": "2.1.3"},
        "devDependencies": {"is-number": "7.0.0"},
        "scripts": {
            "build": "node -e \"require('is-number')\"",
            "start": "node -e \"console.log(require('ms')(60000))\"",
        },
    }
    src = write_app(root, {"package.json": json.dumps(package)})
    env = {
        "PATH": f"{root / 'bin'}:{node22 / 'bin'}:{os.environ['PATH']}",
        "HOME": str(root),
        "COREPACK_HOME": str(root.parent / "corepack-home"),
        **NO_SIGNATURES,
    }
    script = 'corepack enable --install-directory "$1" pnpm && pnpm install --lockfile-only'
    (root / "bin").mkdir()
    subprocess.run(
        ["sh", "-c", script, "sh", str(root / "bin")], cwd=root, env={**os.environ, **env},
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    for path in (root / "bin").iterdir():
        path.unlink()
    (root / "bin").rmdir()
    return src


def test_pnpm_through_corepack_cold_then_warm(tmp_path: Path, node22: Path) -> None:
    src = pnpm_app(tmp_path / "src", node22)
    cold = run_build(tmp_path, src, env=NO_SIGNATURES, extra=runtime_arg(node22), tag="cold")
    assert_ok(cold)
    assert "-----> Using pnpm 9.15.9 (corepack)" in cold.output
    assert "-----> Installing dependencies: pnpm install --frozen-lockfile" in cold.output
    assert "-----> Running the build script: pnpm run build" in cold.output
    members = cold.members()
    assert "node_modules/ms" in members and "node_modules/is-number" not in members  # pruned
    assert any(m.startswith(".heroku/corepack/v1/pnpm/9.15.9/") for m in members)
    assert (tmp_path / "cache" / "node" / "corepack").is_dir()
    assert (tmp_path / "cache" / "node" / "pnpm-store").is_dir()
    warm = run_build(tmp_path, src, env=NO_SIGNATURES, extra=runtime_arg(node22), tag="warm")
    assert_ok(warm)
    assert "-----> Using pnpm 9.15.9 (corepack)" in warm.output
    print(f"\npnpm (1 dependency): cold {cold.seconds:.2f} s, warm {warm.seconds:.2f} s")


def test_yarn_lock_means_yarn_through_corepack(tmp_path: Path, node22: Path) -> None:
    package = {"name": "t", "version": "1.0.0", "engines": {"node": "22"}, "dependencies": {}}
    src = write_app(tmp_path / "src", {"package.json": json.dumps(package), "yarn.lock": ""})
    build = run_build(tmp_path, src, env=NO_SIGNATURES, extra=runtime_arg(node22))
    assert_ok(build)
    assert "-----> Using yarn 1.22." in build.output  # corepack's default yarn: classic


def test_yarn_without_a_node_version_keeps_to_npm(tmp_path: Path) -> None:
    """No version asked: the build host's node and npm, as before this buildpack knew yarn."""
    src = write_app(tmp_path / "src", {"package.json": '{"name": "t"}', "yarn.lock": ""})
    build = run_build(tmp_path, src)
    assert_ok(build)
    assert "(the build host's; NODE_ENV=production)" in build.output
    assert "yarn" not in build.output.lower()
