"""Buildpacks by URL on the local cloud: a tarball and a git repository served over HTTP from this
machine, fetched once, run in order as writable copies; a URL that 404s fails the build."""

from __future__ import annotations

import hashlib
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from e2e_support import Url, cli, cli_json, get
from git_support import git

pytestmark = pytest.mark.cloud
BRIDGE = "198.18.0.1"  # this machine, as the local cloud's hosts reach it


def write_buildpack(pack: Path, compile_body: str, release: str) -> Path:
    (pack / "bin").mkdir(parents=True)
    bodies = {"detect": f"echo {pack.name}", "compile": compile_body, "release": release}
    for name, body in bodies.items():
        (pack / "bin" / name).write_text(f"#!/bin/sh\nset -e\n{body}\n")
        (pack / "bin" / name).chmod(0o755)
    return pack


def served_buildpacks(tmp: Path) -> tuple[Path, str]:
    """a.tgz: writes its own `export` and the page; b.git (dumb HTTP): reads a's export."""
    served = tmp / "served"
    served.mkdir()
    first = write_buildpack(
        tmp / "a",
        'echo "export GREETING=from-a" > "$(dirname "$0")/../export"\n'
        'echo "<p>tarball $STACK</p>" > "$1/index.html"',
        "printf -- '---\\ndefault_process_types:\\n  web: python3 -m http.server $PORT\\n'",
    )
    with tarfile.open(served / "a.tgz", "w:gz") as tar:
        tar.add(first / "bin", arcname="bin")
    second = write_buildpack(
        tmp / "b", 'echo "<p>git $GREETING</p>" >> "$1/index.html"', "echo ---"
    )
    git("init", "-q", "-b", "main", cwd=second)
    git("add", ".", cwd=second)
    git("commit", "-qm", "b", cwd=second)
    git("clone", "-q", "--bare", str(second), str(served / "b.git"), cwd=tmp)
    git("update-server-info", cwd=served / "b.git")
    return served, git("rev-parse", "HEAD", cwd=second)


def test_buildpacks_by_url_are_fetched_once_and_one_that_404s_fails_the_build(
    app_name: str, tmp_path: Path
) -> None:
    served, commit = served_buildpacks(tmp_path)
    asked: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            asked.append(self.path)

    server = ThreadingHTTPServer((BRIDGE, 0), partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{BRIDGE}:{server.server_address[1]}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "README").write_text("built by buildpacks fetched by URL\n")
    url = Url.of_app(app_name)
    try:
        cli("buildpacks:set", f"{base}/a.tgz", "-a", app_name)
        first = cli("deploy", "-a", app_name, str(source))
        assert f"Buildpack {base}/a.tgz: sha256" in first.stderr and "(fetched)" in first.stderr
        assert b"tarball dynoform-debian-13" in get(url, "/")[1]
        second = cli("deploy", "-a", app_name, str(source))
        assert "(cached)" in second.stderr
        assert asked.count("/a.tgz") == 1, asked

        cli("buildpacks:add", f"{base}/b.git#main", "-a", app_name)
        third = cli("deploy", "-a", app_name, str(source))
        assert f"commit {commit[:12]} (fetched)" in third.stderr
        assert b"git from-a" in get(url, "/")[1]  # b ran after a, with a's export
        info = cli_json("apps:info", "-a", app_name)
        resolved = info["buildpacks_resolved"]  # type: ignore[index]
        tarball_sha = hashlib.sha256((served / "a.tgz").read_bytes()).hexdigest()
        assert [r.get("sha256") for r in resolved][:1] == [tarball_sha]
        assert resolved[1]["commit"] == commit and resolved[1]["kind"] == "git"

        cli("buildpacks:add", "--index", "1", f"{base}/missing.tgz", "-a", app_name)
        failed = cli("deploy", "-a", app_name, str(source), check=False)
        last = failed.stderr.strip().splitlines()[-1]
        assert failed.returncode == 1 and f"{base}/missing.tgz: HTTP 404" in last, last
        assert [r["version"] for r in cli_json("releases", "-a", app_name)][0] == 3  # type: ignore[index]
        status, body = get(url, "/")
        assert status == 200 and b"git from-a" in body
    finally:
        server.shutdown()
        server.server_close()
