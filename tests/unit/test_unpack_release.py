"""templates/dyno/unpack-release, run for real with sh in a temporary directory: a fetch or a
checksum that fails leaves nothing behind (no vN.tmp.PID, no directory the run made), and a
good slug is unpacked."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from provisioner.render import host_program

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or os.geteuid() != 0, reason="needs curl and root (chown)"
)


def slug(tmp_path: Path) -> tuple[Path, str]:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        body = b"web: run\n"
        info = tarfile.TarInfo("Procfile")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    path = tmp_path / "slug.tgz"
    path.write_bytes(data.getvalue())
    return path, hashlib.sha256(data.getvalue()).hexdigest()


def unpack(app_dir: Path, url: str, sha: str) -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", host_program("unpack-release"), "sh", str(app_dir / "releases" / "v2")]
    return subprocess.run(
        [*argv, sha, "root", str(app_dir / "env")],
        input=f'url = "{url}"\n',
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_good_slug_is_unpacked(tmp_path: Path) -> None:
    path, sha = slug(tmp_path)
    app_dir = tmp_path / "apps" / "shop"
    done = unpack(app_dir, path.as_uri(), sha)
    assert done.returncode == 0, done.stderr
    assert (app_dir / "releases" / "v2" / "Procfile").read_text() == "web: run\n"
    assert sorted(p.name for p in (app_dir / "releases").iterdir()) == ["v2"]
    assert (app_dir / "env").is_dir()


@pytest.mark.parametrize("why", ["gone", "checksum"])
def test_a_failed_fetch_leaves_no_directory_it_made(tmp_path: Path, why: str) -> None:
    path, sha = slug(tmp_path)
    url = (tmp_path / "deleted.tgz").as_uri() if why == "gone" else path.as_uri()
    app_dir = tmp_path / "apps" / "shop"
    done = unpack(app_dir, url, sha if why == "gone" else "0" * 64)
    assert done.returncode != 0
    assert not app_dir.exists()  # an app destroyed meanwhile gets no directory back
    assert list((tmp_path / "apps").iterdir()) == []


def test_a_failed_fetch_keeps_what_was_there(tmp_path: Path) -> None:
    path, sha = slug(tmp_path)
    app_dir = tmp_path / "apps" / "shop"
    assert unpack(app_dir, path.as_uri(), sha).returncode == 0
    (app_dir / "env" / "v1.json").write_text("{}")
    done = unpack(app_dir, (tmp_path / "deleted.tgz").as_uri(), "1" * 64)
    assert done.returncode != 0
    assert sorted(p.name for p in (app_dir / "releases").iterdir()) == ["v2"]  # no v2.tmp.PID
    assert (app_dir / "releases" / "v2" / "Procfile").exists()
    assert (app_dir / "env" / "v1.json").exists()


def test_the_release_has_our_modes_whatever_the_slug_says(tmp_path: Path) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        top = tarfile.TarInfo(".")
        top.type, top.mode = tarfile.DIRTYPE, 0o500  # tar would give the release this mode
        tar.addfile(top)
        info = tarfile.TarInfo("./Procfile")
        info.size, info.mode = 4, 0o666
        tar.addfile(info, io.BytesIO(b"web\n"))
    path = tmp_path / "slug.tgz"
    path.write_bytes(data.getvalue())
    app_dir = tmp_path / "apps" / "shop"
    done = unpack(app_dir, path.as_uri(), hashlib.sha256(data.getvalue()).hexdigest())
    assert done.returncode == 0, done.stderr
    release = app_dir / "releases" / "v2"
    assert oct(release.stat().st_mode & 0o7777) == "0o750"
    assert oct((release / "Procfile").stat().st_mode & 0o7777) == "0o640"
    assert oct((release / ".dynoform-slug").stat().st_mode & 0o7777) == "0o640"
    assert oct((app_dir / "releases").stat().st_mode & 0o7777) == "0o755"
    assert oct((app_dir / "env").stat().st_mode & 0o7777) == "0o700"


def test_a_slug_already_on_the_host_is_copied_not_fetched(tmp_path: Path) -> None:
    path, sha = slug(tmp_path)
    app_dir = tmp_path / "apps" / "shop"
    assert unpack(app_dir, path.as_uri(), sha).returncode == 0
    (app_dir / "releases" / "v2").rename(app_dir / "releases" / "v1")
    done = unpack(app_dir, (tmp_path / "deleted.tgz").as_uri(), sha)  # a fetch would fail
    assert done.returncode == 0, done.stderr
    assert (app_dir / "releases" / "v2" / "Procfile").read_text() == "web: run\n"
    assert sorted(p.name for p in (app_dir / "releases").iterdir()) == ["v1", "v2"]
