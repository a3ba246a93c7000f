"""Buildpacks fetched once per URL and ref into the bucket (moto), from an HTTP server and a git
repository served over dumb HTTP on this machine, and directories packed by content."""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from git_support import git

from provisioner.aws.blobs import Blobs
from provisioner.errors import DynoformError
from provisioner.ops.buildpack_cache import pack_directory, resolve_all

APP_ID = "0a1b2c3d4e5f"


@pytest.fixture
def blobs(store) -> Blobs:
    return Blobs(store.docs.s3, store.docs.bucket)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A directory served over HTTP on 127.0.0.1: (its path, its base URL, paths asked)."""
    root = tmp_path / "served"
    root.mkdir()
    asked: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            asked.append(self.path)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def buildpack(path: Path, marker: str) -> Path:
    (path / "bin").mkdir(parents=True)
    for name in ("detect", "compile", "release"):
        (path / "bin" / name).write_text(f"#!/bin/sh\necho {marker}\n")
        (path / "bin" / name).chmod(0o755)
    return path


def test_a_tarball_url_is_fetched_once_per_app(blobs, served, tmp_path) -> None:
    root, base, asked = served
    with tarfile.open(root / "bp.tgz", "w:gz") as tar:
        tar.add(buildpack(tmp_path / "bp", "one"), arcname="bp")
    said: list[str] = []
    first = resolve_all(blobs, APP_ID, [f"{base}/bp.tgz"], said.append)[0]
    again = resolve_all(blobs, APP_ID, [f"{base}/bp.tgz"], said.append)[0]
    assert asked == ["/bp.tgz"]
    assert (first.cached, again.cached) == (False, True)
    assert first.key == again.key == f"buildpacks/{APP_ID}/{first.sha256}.tgz"
    assert said[1] == f"-----> Buildpack {base}/bp.tgz: sha256 {first.sha256[:12]} (cached)"
    # Another app fetches its own copy: nothing of one app's cache serves another's builds.
    other = resolve_all(blobs, "ffffffffffff", [f"{base}/bp.tgz"], said.append)[0]
    assert not other.cached and asked == ["/bp.tgz", "/bp.tgz"]


def test_a_git_branch_is_fetched_again_only_when_it_moved(blobs, served, tmp_path) -> None:
    root, base, asked = served
    work = buildpack(tmp_path / "work", "one")
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "bp.git"), cwd=tmp_path)
    git("update-server-info", cwd=root / "bp.git")
    spec = f"{base}/bp.git#main"
    first = resolve_all(blobs, APP_ID, [spec], print)[0]
    assert first.commit == git("rev-parse", "HEAD", cwd=work) and not first.cached
    asked.clear()
    assert resolve_all(blobs, APP_ID, [spec], print)[0].cached
    assert all("/objects/" not in path for path in asked)  # only the refs were asked for
    (work / "bin" / "compile").write_text("#!/bin/sh\necho two\n")
    git("commit", "-qam", "two", cwd=work)
    git("push", "-q", str(root / "bp.git"), "main", cwd=work)
    git("update-server-info", cwd=root / "bp.git")
    moved = resolve_all(blobs, APP_ID, [spec], print)[0]
    assert moved.commit == git("rev-parse", "HEAD", cwd=work) and not moved.cached
    pinned = resolve_all(blobs, APP_ID, [f"{base}/bp.git#{first.commit}"], print)[0]
    assert pinned.sha256 == first.sha256 and pinned.cached  # same URL and commit: same key
    body = blobs.s3.get_object(Bucket=blobs.bucket, Key=moved.key)["Body"].read()
    (tmp_path / "got.tgz").write_bytes(body)
    with tarfile.open(tmp_path / "got.tgz") as tar:
        compile_script = tar.extractfile("bin/compile")
        assert compile_script is not None and b"echo two" in compile_script.read()


def test_a_directory_is_keyed_by_its_content(blobs, tmp_path) -> None:
    pack = buildpack(tmp_path / "bp", "one")
    (pack / ".git").mkdir()
    (pack / ".git" / "HEAD").write_text("x")
    first = resolve_all(blobs, APP_ID, [str(pack)], print)[0]
    assert resolve_all(blobs, APP_ID, [str(pack)], print)[0] == first.__class__(
        str(pack), "dir", first.key, first.sha256, cached=True
    )
    out = pack_directory(pack, tmp_path / "again.tgz")
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["bin", "bin/compile", "bin/detect", "bin/release"]
    (pack / "bin" / "compile").write_text("#!/bin/sh\necho two\n")
    assert resolve_all(blobs, APP_ID, [str(pack)], print)[0].sha256 != first.sha256


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("missing.tgz", "HTTP 404 File not found"),
        ("notatar.tgz", "it is not a tarball"),
        ("empty.tgz", "it is not a buildpack: there is no bin/compile in it"),
        ("nothing", "not a git repository"),
    ],
)
def test_a_buildpack_that_cannot_be_had_fails_in_one_line_with_credentials_masked(
    blobs, served, path: str, words: str
) -> None:
    root, base, _ = served
    (root / "notatar.tgz").write_text("hello")
    with tarfile.open(root / "empty.tgz", "w:gz") as tar:
        tar.add(root / "notatar.tgz", arcname="README")
    spec = base.replace("http://", "http://user:s3cret@") + f"/{path}"
    with pytest.raises(DynoformError) as info:
        resolve_all(blobs, APP_ID, [spec], print)
    message = info.value.message
    assert message.startswith(
        f"could not fetch buildpack http://***@127.0.0.1:{base.rsplit(':', 1)[1]}/{path}: "
    )
    assert words in message and "s3cret" not in str(info.value) and "\n" not in message


def test_buildpacks_commands_as_heroku(moto_cli, tmp_path) -> None:
    cli = moto_cli
    cli("apps:create", "bp-app", "--no-remote")
    pack = buildpack(tmp_path / "mine", "one")
    assert cli("buildpacks:set", "https://u:tok@h.example/a.git#main", "-a", "bp-app")[0] == 0
    assert cli("buildpacks", "add", str(pack), "-a", "bp-app")[0] == 0
    assert cli("buildpacks:add", "--index", "1", "https://h.example/b.tgz", "-a", "bp-app")[0] == 0
    code, out, _ = cli("buildpacks", "-a", "bp-app")
    assert out == f"1. https://h.example/b.tgz\n2. https://***@h.example/a.git#main\n3. {pack}\n"
    assert cli("buildpacks:set", "--index", "3", "/srv/dynoform/build/buildpacks/python",
               "-a", "bp-app")[0] == 0  # fmt: skip
    code, _, err = cli("buildpacks:add", "heroku/python", "-a", "bp-app")
    assert code == 1 and err.count("\n") == 1 and "heroku/python.tgz" in err
    code, _, err = cli("buildpacks:add", "https://h.example/b.tgz", "-a", "bp-app")
    assert code == 1 and "is already set on the app" in err
    assert cli("buildpacks:remove", "https://***@h.example/a.git#main", "-a", "bp-app")[0] == 0
    packs = json.loads(cli("buildpacks", "-a", "bp-app", "--json")[1])
    assert packs == ["https://h.example/b.tgz", "/srv/dynoform/build/buildpacks/python"]
    info = json.loads(cli("apps:info", "-a", "bp-app", "--json")[1])
    assert info["buildpacks_resolved"] == [
        {"buildpack": "https://h.example/b.tgz", "kind": "tarball"},
        {"buildpack": "/srv/dynoform/build/buildpacks/python", "kind": "host"},
    ]
    text = cli("apps:info", "-a", "bp-app")[1]
    assert "buildpacks: https://h.example/b.tgz (not built yet), " in text
    assert cli("buildpacks:remove", "--index", "2", "-a", "bp-app")[0] == 0
    assert cli("buildpacks:clear", "-a", "bp-app")[0] == 0
    assert cli("buildpacks", "-a", "bp-app")[1] == "(detected automatically)\n"
