"""An app's buildpacks fetched once per URL and ref, kept in the platform bucket.

Fetching happens on the machine that deploys (the user's or CI's), never on a build host: no
download runs there, as root or as the app's user outside its build's sandbox; credentials in
a URL (or the user's own git credential helper) never leave this machine; and every build
host gets every buildpack one way, from the bucket through a presigned URL, checked by sha256
(buildhost.stage_buildpacks). Nothing fetched is unpacked here: the build unpacks it, as the
app's user, inside its sandbox.

In the bucket, under the app's id (an app's build code runs as that app's user, so a cache
shared across apps could be poisoned by one app for another): the tarball, named by its sha256,
and for a URL a record of what it gave, keyed by the URL (a tarball) or by the URL and the
commit its ref resolved to with `git ls-remote` (git: a moved branch is fetched again). A
directory on this machine is packed (reproducibly) at each deploy and uploaded when its
content is new.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote

from provisioner.aws.blobs import Blobs, buildpack_key, buildpack_pointer_key, sha256_file
from provisioner.errors import DynoformError
from provisioner.plan.buildpacks import (
    DIRECTORY,
    EITHER,
    GIT,
    HOST,
    TARBALL,
    PackUrl,
    Resolved,
    is_url,
    mask,
    parse_url,
    pick_ref,
    source_digest,
)

MAX_BUILDPACK_BYTES = 100 * 1024 * 1024  # as fetched (compressed)
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024  # what its members say they hold
GIT_TIMEOUT = 300
HTTP_TIMEOUT = 60
Say = Callable[[str], None]


class FetchError(Exception):
    """Why a buildpack could not be had; the caller names the (masked) URL."""


def resolve_all(blobs: Blobs, app_id: str, specs: Iterable[str], say: Say) -> list[Resolved]:
    """The app's buildpacks, each in the bucket (fetched now unless it was) or on the hosts."""
    return [resolve(blobs, app_id, spec, say) for spec in specs]


def resolve(blobs: Blobs, app_id: str, spec: str, say: Say) -> Resolved:
    try:
        if is_url(spec):
            resolved = _from_url(blobs, app_id, spec, parse_url(spec))
        elif Path(spec).is_dir():
            resolved = _from_directory(blobs, app_id, spec, Path(spec))
        else:
            resolved = Resolved(spec, HOST, path=spec)
    except FetchError as exc:
        raise DynoformError(
            f"could not fetch buildpack {mask(spec)}: {mask(str(exc))}",
            "check the URL from this machine (deploys fetch buildpacks here); "
            "the app's current release keeps serving",
        ) from exc
    how = "" if resolved.kind == HOST else (" (cached)" if resolved.cached else " (fetched)")
    say(f"-----> Buildpack {mask(spec)}: {resolved.describe()}{how}")
    return resolved


# --- URLs ---------------------------------------------------------------------------------------


def _from_url(blobs: Blobs, app_id: str, spec: str, url: PackUrl) -> Resolved:
    if url.kind in (TARBALL, EITHER):
        cached = _cached(blobs, app_id, spec, TARBALL, source_digest(TARBALL, url.url))
        if cached is not None:
            return cached
    if url.kind == TARBALL:
        return _fetch_tarball(blobs, app_id, spec, url)
    try:
        commit, want = (url.ref, url.ref) if url.is_commit else _ls_remote(url)
    except FetchError as not_git:
        if url.kind == GIT:
            raise
        try:  # an https URL that serves a tarball, without a tarball's name
            return _fetch_tarball(blobs, app_id, spec, url)
        except FetchError as not_tarball:
            raise FetchError(
                f"not a git repository ({not_git}) nor a tarball ({not_tarball})"
            ) from not_tarball
    cached = _cached(blobs, app_id, spec, GIT, source_digest(GIT, url.url, commit), commit)
    return cached or _fetch_git(blobs, app_id, spec, url, want)


def _cached(
    blobs: Blobs, app_id: str, spec: str, kind: str, digest: str, commit: str = ""
) -> Resolved | None:
    """The bucket's copy of a fetched URL, when it has one."""
    text = blobs.get_text(buildpack_pointer_key(app_id, digest))
    try:
        sha256 = str(json.loads(text)["sha256"]) if text else ""
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record: fetched again, then overwritten
    key = buildpack_key(app_id, sha256)
    if not sha256 or not blobs.exists(key):
        return None
    return Resolved(spec, kind, key, sha256, commit, cached=True)


def _keep(
    blobs: Blobs, app_id: str, spec: str, kind: str, tarball: Path, digest: str, commit: str = ""
) -> Resolved:
    """The fetched tarball into the bucket, and the record that this URL (and commit) gave it."""
    check_tarball(tarball)
    sha256 = sha256_file(tarball)
    key = buildpack_key(app_id, sha256)
    blobs.upload_if_absent(key, tarball)
    record = {"sha256": sha256, "size": tarball.stat().st_size, "url": mask(spec)}
    blobs.put_text(buildpack_pointer_key(app_id, digest), json.dumps(record | {"commit": commit}))
    return Resolved(spec, kind, key, sha256, commit)


def _fetch_tarball(blobs: Blobs, app_id: str, spec: str, url: PackUrl) -> Resolved:
    with tempfile.TemporaryDirectory(prefix="dynoform-buildpack-") as tmp:
        tarball = Path(tmp) / "buildpack.tgz"
        download(url, tarball)
        return _keep(blobs, app_id, spec, TARBALL, tarball, source_digest(TARBALL, url.url))


def download(url: PackUrl, dest: Path, limit: int = MAX_BUILDPACK_BYTES) -> None:
    """GET the URL into dest (redirects followed; credentials sent to its own host only)."""
    request = urllib.request.Request(url.url, headers={"User-Agent": "dynoform"})
    if url.userinfo:
        token = base64.b64encode(unquote(url.userinfo).encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            with dest.open("wb") as out:
                while chunk := response.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(f"it is larger than {limit // (1024 * 1024)} MB")
                    out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise FetchError(str(exc.reason)) from exc
    except (OSError, ValueError) as exc:
        raise FetchError(str(exc) or type(exc).__name__) from exc


def check_tarball(path: Path) -> None:
    """A readable tarball holding a buildpack: bin/compile at its top, or in its only top-level
    directory (GitHub's archives). Only read, never unpacked here; what its members say they
    hold is bounded, so a small file cannot make this read for ever."""
    names: set[str] = set()
    total = 0
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                total += max(member.size, 0)
                if total > MAX_UNPACKED_BYTES:
                    raise FetchError("it would unpack to more than 1 GB")
                names.add(member.name.removeprefix("./"))
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise FetchError(f"it is not a tarball ({exc})") from exc
    tops = {n.split("/", 1)[0] for n in names if n}
    if "bin/compile" in names or (len(tops) == 1 and f"{tops.pop()}/bin/compile" in names):
        return
    raise FetchError("it is not a buildpack: there is no bin/compile in it")


# --- git ----------------------------------------------------------------------------------------


def git_env(url: PackUrl) -> dict[str, str]:
    """git's environment: never prompting; a URL's credentials through git's configuration in
    the environment (rewriting the bare URL), so they are never on a command line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    if url.userinfo:
        scheme, rest = url.url.split("://", 1)
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{scheme}://{url.userinfo}@{rest}.insteadOf",
            "GIT_CONFIG_VALUE_0": url.url,
        }
    return env


def _git(url: PackUrl, *args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(url),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise FetchError("git is not installed on this machine") from exc
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"git {args[0]} took more than {GIT_TIMEOUT} s") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise FetchError(lines[-1].strip() if lines else f"git {args[0]} failed")
    return done.stdout


def _ls_remote(url: PackUrl) -> tuple[str, str]:
    """(commit, ref name) the URL's ref points at now."""
    found = pick_ref(_git(url, "ls-remote", url.url, url.ref or "HEAD"), url.ref)
    if found is None:
        what = f"no branch or tag {url.ref!r}" if url.ref else "no HEAD"
        raise FetchError(f"the repository has {what} (a commit must be given in full)")
    return found


def _fetch_git(blobs: Blobs, app_id: str, spec: str, url: PackUrl, want: str) -> Resolved:
    """One commit's tree as a tarball (`git archive`): a shallow fetch of the ref, else a full
    one (a dumb-HTTP server serves no shallow fetches, nor single commits)."""
    with tempfile.TemporaryDirectory(prefix="dynoform-buildpack-") as tmp:
        repo = Path(tmp) / "repo"
        _git(url, "init", "--quiet", "--bare", str(repo))
        target = want if url.is_commit else "FETCH_HEAD"
        tries = [["--depth", "1", url.url, want], [url.url, want]]
        if url.is_commit:
            tries.append([url.url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        for number, args in enumerate(tries, start=1):
            try:
                _git(url, "fetch", "--quiet", "--no-tags", *args, cwd=repo)
                commit = _git(url, "rev-parse", "--verify", f"{target}^{{commit}}", cwd=repo)
                break
            except FetchError:
                if number == len(tries):
                    raise
        commit = commit.strip()
        tarball = Path(tmp) / "buildpack.tgz"
        _git(url, "archive", "--format=tar.gz", "-o", str(tarball), commit, cwd=repo)
        digest = source_digest(GIT, url.url, commit)
        return _keep(blobs, app_id, spec, GIT, tarball, digest, commit)


# --- directories on this machine ----------------------------------------------------------------


def _from_directory(blobs: Blobs, app_id: str, spec: str, path: Path) -> Resolved:
    with tempfile.TemporaryDirectory(prefix="dynoform-buildpack-") as tmp:
        tarball = pack_directory(path, Path(tmp) / "buildpack.tgz")
        if tarball.stat().st_size > MAX_BUILDPACK_BYTES:
            raise FetchError(f"it packs to more than {MAX_BUILDPACK_BYTES // (1024 * 1024)} MB")
        sha256 = sha256_file(tarball)
        key = buildpack_key(app_id, sha256)
        uploaded = blobs.upload_if_absent(key, tarball)
        return Resolved(spec, DIRECTORY, key, sha256, cached=not uploaded)


def pack_directory(path: Path, out: Path) -> Path:
    """The directory as a gzip tarball whose bytes depend only on its content: names sorted,
    times, owners and gzip header fixed, modes 0755 or 0644; `.git` left out."""
    with out.open("wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for item in _walk(path):
                info = tar.gettarinfo(str(item), item.relative_to(path).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if not info.issym():
                    executable = info.isdir() or info.mode & stat.S_IXUSR
                    info.mode = 0o755 if executable else 0o644
                if info.isreg():
                    with item.open("rb") as handle:
                        tar.addfile(info, handle)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
    return out


def _walk(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(dirpath)
        found += [base / name for name in dirnames + sorted(filenames)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
