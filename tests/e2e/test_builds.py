"""Builds, slugs and releases end to end on the local cloud: examples, failures, git push, leases."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from functools import partial
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get

from provisioner.aws.blobs import cache_key
from provisioner.aws.session import Aws
from provisioner.aws.state import bucket_name
from provisioner.context import Context
from provisioner.ops.runtime_uv import UV, UV_VERSION
from provisioner.ops.runtimes import ensure, host_runtimes, read_pointer
from provisioner.plan.runtimes import RUNTIMES_ROOT
from provisioner.targets import LOCAL_TARGET

pytestmark = pytest.mark.cloud


def slug_in_s3(app: str) -> tuple[str, str]:
    """(sha256 recorded in the current release, sha256 of the object in S3)."""
    info = cli_json("releases:info", "-a", app)
    aws = Aws(LOCAL_TARGET)
    bucket = bucket_name("dynoform", aws.account_id())
    app_id = cli_json("apps:info", "-a", app)["id"]  # type: ignore[index]
    key = f"slugs/{app_id}/{info['slug_sha256']}.tgz"
    body = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return str(info["slug_sha256"]), hashlib.sha256(body).hexdigest()


# The nodejs example is built on the controlled platform (test_builds_controlled.py): its
# first build installs Node.js on a host (~50 s), which the other test stream has room for.
@pytest.mark.parametrize("example", ["static", "procfile"])
def test_examples_build_into_slugs_and_serve(app_name: str, example: str) -> None:
    result = cli("deploy", "-a", app_name, str(EXAMPLES / example), timeout=900)
    assert "app detected" in result.stderr
    recorded, stored = slug_in_s3(app_name)
    assert recorded == stored
    status, _ = get(Url.of_app(app_name), "/")
    assert status == 200


def test_python_rebuild_reuses_the_cache_and_identical_slug_is_not_stored_twice(
    app_name: str,
) -> None:
    started = time.monotonic()
    first = cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cold = time.monotonic() - started
    assert (
        "Installing dependencies with uv " in first.stderr and "(requirements.txt)" in first.stderr
    )
    # uv is the platform's runtime, read in place: the app's cold build installs none of its own.
    uv_dir = f"{RUNTIMES_ROOT}/debian-13-{os.uname().machine}/uv-{UV_VERSION}"
    assert f"       uv {UV_VERSION}: the platform's, {uv_dir}/bin/uv" in first.stderr
    assert "Installing uv" not in first.stderr
    cached = cache_members(app_name)
    assert any(n.startswith("python/venv-") for n in cached), cached[:20]
    assert not any("/tools/uv-" in n or n.endswith("/bin/uv") for n in cached)
    started = time.monotonic()
    second = cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    warm = time.monotonic() - started
    assert "Restoring the virtualenv from the build cache" in second.stderr
    print(f"python example deploy: cold {cold:.1f} s, warm {warm:.1f} s")
    releases = cli_json("releases", "-a", app_name)
    assert releases[0]["slug_sha256"] == releases[1]["slug_sha256"]  # reproducible slug
    builds = cli_json("builds", "-a", app_name)
    assert len(builds) == 2 and all(b["status"] == "succeeded" for b in builds)
    assert "Python app detected" in cli("builds:output", "-a", app_name).stdout


def cache_members(app: str) -> list[str]:
    """The names in the app's build cache as the bucket keeps it."""
    aws = Aws(LOCAL_TARGET)
    bucket = bucket_name("dynoform", aws.account_id())
    app_id = cli_json("apps:info", "-a", app)["id"]  # type: ignore[index]
    body = aws.s3.get_object(Bucket=bucket, Key=cache_key(app_id))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return [n.removeprefix("./") for n in tar.getnames()]


def test_a_host_without_uv_takes_it_from_the_bucket(fleet: object) -> None:
    """uv is made once per platform (whichever host first lacks it) and kept in the bucket; a
    host that lacks it later unpacks the bucket's copy, checked, instead of making it."""
    with Context.open(LOCAL_TARGET) as ctx:
        hosts = ctx.fleet().ready()[:2]
        conns = [ctx.fleet().connect(h) for h in hosts]
        blobs = ctx.blobs()
        platform = host_runtimes(conns[0]).platform
        runtime = UV.resolve(UV_VERSION, platform)
        assert runtime is not None
        said: list[str] = []
        ensure(conns[0], blobs, runtime, partial(UV.acquire, runtime), said.append, said.append)
        pointer = read_pointer(blobs, runtime)
        assert pointer is not None and pointer["origin"] == "pypi", pointer

        second = conns[1]
        second.run(["rm", "-rf", "--", runtime.host_dir], sudo=True, check=True)
        assert runtime.name not in host_runtimes(second).have
        said.clear()
        started = time.monotonic()
        ensure(second, blobs, runtime, partial(UV.acquire, runtime), said.append, said.append)
        seconds = time.monotonic() - started
        assert said == [f"installing uv {UV_VERSION} on {second.name} from the bucket"], said
        assert runtime.name in host_runtimes(second).have
        found = second.run([f"{runtime.host_dir}/bin/uv", "--version"], check=True).stdout
        assert found.startswith(f"uv {UV_VERSION}")
        owner = second.run(["stat", "-c", "%U %a", f"{runtime.host_dir}/bin/uv"], check=True)
        assert owner.stdout.split() == ["root", "755"]  # root's, read-only to builds
        print(f"\nuv {UV_VERSION} from the bucket on a second host: {seconds:.2f} s")


def test_uv_project_builds_with_uv_and_serves(app_name: str) -> None:
    """examples/python-uv: its uv.lock chooses uv (uv sync --locked), its dev group stays out."""
    result = cli("deploy", "-a", app_name, str(EXAMPLES / "python-uv"))
    assert "-----> Installing dependencies with uv " in result.stderr, result.stderr[-2000:]
    assert "(uv.lock)" in result.stderr
    status, body = get(Url.of_app(app_name), "/")
    assert status == 200, body[:200]
    facts = json.loads(body)
    assert facts["app"] == "dynoform python-uv example" and facts["dev_group_installed"] is False


def write_buildpack(pack: Path, **bodies: str) -> Path:
    """A buildpack directory whose bin/detect, bin/compile and bin/release run these sh bodies."""
    (pack / "bin").mkdir(parents=True)
    for name, body in bodies.items():
        script = pack / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return pack


def failing_sources(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    bad_procfile = tmp / "bad-procfile"
    bad_procfile.mkdir()
    (bad_procfile / "Procfile").write_text("web: python3 -m http.server $PORT\nweb: again\n")
    nothing = tmp / "nothing"
    nothing.mkdir()
    (nothing / "README.txt").write_text("no buildpack detects this\n")
    big = tmp / "big"
    big.mkdir()
    (big / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (big / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    write_buildpack(
        tmp / "failing-pack",
        detect="echo Failing",
        compile="echo compile error >&2; exit 1",
        release="echo ---",
    )
    return {
        "malformed Procfile": (bad_procfile, [], "defined twice"),
        "nothing detected": (nothing, [], "detect"),
        "oversized slug": (big, ["--max-slug-mb", "1"], "MB"),
        "failing buildpack": (EXAMPLES / "procfile", [], "compile"),
    }


def test_failed_builds_create_no_release_and_keep_the_current(
    app_name: str, tmp_path: Path
) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    url = Url.of_app(app_name)
    for label, (source, extra, words) in failing_sources(tmp_path).items():
        if label == "failing buildpack":
            cli("buildpacks:set", str(tmp_path / "failing-pack"), "-a", app_name)
        result = cli("deploy", "-a", app_name, str(source), *extra, check=False)
        assert result.returncode == 1, label
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and words in result.stderr, (label, result.stderr[-800:])
        releases = cli_json("releases", "-a", app_name)
        assert [r["version"] for r in releases] == [1], label
        assert get(url, "/")[0] == 200, label
    cli("buildpacks:clear", "-a", app_name)


def slow_buildpack(tmp: Path, marker: str) -> Path:
    """A buildpack whose compile prints `marker` and then holds the build for a few seconds."""
    return write_buildpack(
        tmp / "slow-pack",
        detect="echo Slow",
        compile=f"echo '-----> {marker}'; sleep 4; echo '-----> slow build done'",
        release="echo ---",
    )


def test_two_deploys_at_once_one_waits_for_the_lease(app_name: str, tmp_path: Path) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    cli("buildpacks:set", str(slow_buildpack(tmp_path, "slow build started")), "-a", app_name)
    argv = [
        *[sys.executable, "-m", "provisioner", "-t", "local"],
        *["deploy", "-a", app_name, str(EXAMPLES / "procfile")],
    ]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stderr is not None
    seen = []
    # The first deploy holds the lease while its build runs: wait until the build has begun.
    for line in first.stderr:
        seen.append(line)
        if "slow build started" in line:
            break
    # builds:output follows the running build from its host until it ends.
    follow = [*argv[:5], "builds:output", "-a", app_name]
    following = subprocess.Popen(follow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    followed, follow_err = following.communicate(timeout=300)
    assert "slow build started" in followed and "slow build done" in followed, follow_err
    assert first.returncode == 0, "".join(seen)[-500:] + err[-500:]
    assert second.returncode == 1, second.stderr[-500:]
    assert "is busy: deploy by" in second.stderr and "--wait" in second.stderr
    assert [r["version"] for r in cli_json("releases", "-a", app_name)] == [2, 1]


def test_git_push_deploys_and_shows_the_build(app_name: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "procfile", repo)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DYNOFORM_TARGET": "local",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )

    assert git("init", "-q", "-b", "main").returncode == 0
    git("add", ".")
    assert git("commit", "-q", "-m", "first").returncode == 0
    assert cli("git:remote", "-a", app_name, cwd=repo).returncode == 0
    pushed = git("push", "dynoform", "main")
    assert pushed.returncode == 0, pushed.stderr[-1500:]
    assert "Procfile app detected" in pushed.stderr or "app detected" in pushed.stderr
    head = git("rev-parse", "--short=7", "HEAD").stdout.strip()
    releases = cli_json("releases", "-a", app_name)
    assert releases[0]["description"] == f"Deploy {head}"
    (repo / "Procfile").write_text("web: exit 1\nweb: twice\n")
    git("commit", "-qam", "broken")
    failed = git("push", "dynoform", "main")
    assert failed.returncode != 0 and "defined twice" in failed.stderr
    assert len(cli_json("releases", "-a", app_name)) == 1
