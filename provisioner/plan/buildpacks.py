"""The buildpacks an app names, as Heroku takes them: parsing, masking, cache identities (pure).

An app's record keeps each buildpack as a string:

- `https://host/path[.git][#ref]`: a git repository at a branch, tag or full commit id;
- `https://host/path.tgz` (`.tar.gz`, `.tar`): a tarball, as Heroku's buildpack registry
  serves them; an `http(s)://` URL of neither form is tried as git first, then as a tarball;
- an absolute path: a directory on the deploying machine when it is one there (packed and
  uploaded at each deploy), else a directory on the build hosts (the built-in ones' form).

A URL may carry credentials (`https://user:token@host/...`): they stay in the app's record
and are masked everywhere they would be shown (output, build records, errors).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from provisioner.errors import ValidationError

GIT, TARBALL, EITHER, DIRECTORY, HOST = "git", "tarball", "url", "dir", "host"
MAX_URL_CHARS = 2000
TARBALL_SUFFIXES = (".tgz", ".tar.gz", ".tar")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_PATH = re.compile(r"/[A-Za-z0-9._~/%+@:=,-]*")
_QUERY = re.compile(r"[A-Za-z0-9._~/%+@:=,&;-]*")
_REF = re.compile(r"[A-Za-z0-9._/-]+")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SAFE_HOST_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_REGISTRY_NAME = re.compile(r"[a-z0-9-]+/[a-z0-9._-]+")
REGISTRY_TARBALL = "https://buildpack-registry.s3.amazonaws.com/buildpacks/{}.tgz"
HINT = (
    "give an https:// git or tarball URL, a buildpack directory, or a directory on the build hosts"
)


@dataclass(frozen=True)
class PackUrl:
    """A buildpack URL taken apart: `url` has neither credentials nor fragment."""

    url: str
    ref: str  # the git ref after `#` ("": the repository's HEAD)
    kind: str  # GIT, TARBALL or EITHER (tried as git, then as a tarball)
    userinfo: str = ""  # "user:token", never shown

    @property
    def is_commit(self) -> bool:
        return bool(_COMMIT.fullmatch(self.ref))


def is_url(text: str) -> bool:
    return text.startswith(("https://", "http://"))


def parse_url(text: str) -> PackUrl:
    """A buildpack URL checked (one line saying what is wrong when it is not one)."""
    shown = mask(text)
    if len(text) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValidationError(f"buildpack URL {shown!r}", "must be one line without spaces", HINT)
    parts = urlsplit(text)
    userinfo, _, host = parts.netloc.rpartition("@")
    if not _HOST.fullmatch(host) or not _PATH.fullmatch(parts.path or "/"):
        raise ValidationError(f"buildpack URL {shown!r}", "must be http(s)://host/path", HINT)
    if not _QUERY.fullmatch(parts.query):
        raise ValidationError(f"buildpack URL {shown!r}", "has characters a URL may not have", HINT)
    path = parts.path.rstrip("/")
    if path.endswith(TARBALL_SUFFIXES):
        kind = TARBALL
    elif path.endswith(".git") or parts.fragment:
        kind = GIT
    else:
        kind = EITHER
    ref = parts.fragment
    if ref and kind == TARBALL:
        raise ValidationError(
            f"buildpack URL {shown!r}", "a tarball URL takes no #ref", "pin a version by its URL"
        )
    if ref and (not _REF.fullmatch(ref) or ref.startswith(("-", "/")) or ".." in ref):
        raise ValidationError(
            f"buildpack ref {ref!r}", "must be a branch, a tag or a full commit id", HINT
        )
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return PackUrl(bare, ref, kind, userinfo)


def normalise(text: str, local_dir: bool) -> str:
    """The string an app's record keeps: a checked URL, or an absolute path. `local_dir`: the
    text names a directory on this machine (the caller looked)."""
    text = text.strip()
    if is_url(text):
        parse_url(text)
        return text
    if local_dir:
        return text
    if text.startswith("git@") or text.startswith("ssh://"):
        raise ValidationError(
            f"buildpack {mask(text)!r}", "SSH URLs are not supported", "use its https:// URL"
        )
    if _REGISTRY_NAME.fullmatch(text):
        raise ValidationError(
            f"buildpack {text!r}",
            "is neither a URL nor a directory here",
            f"for Heroku's registry use its tarball URL: {REGISTRY_TARBALL.format(text)}",
        )
    if not _SAFE_HOST_PATH.fullmatch(text) or ".." in text.split("/"):
        raise ValidationError(
            f"buildpack {text!r}", "is neither a URL nor a directory on this machine", HINT
        )
    return text  # an absolute path: a directory on the build hosts


def mask(text: str) -> str:
    """The text with URL credentials (`user:token@`) and query values replaced by `***`."""
    text = _USERINFO.sub("***@", text)
    return re.sub(r"(?<=[?&])([A-Za-z0-9._~%-]+)=[^&#\s]*", r"\1=***", text)


def label(text: str) -> str:
    """A short name for a buildpack, its last path segment without `.git` or tarball suffix
    (`heroku-buildpack-python`): the name of its directory in the build."""
    path = urlsplit(text).path if is_url(text) else text
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (*TARBALL_SUFFIXES, ".git"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:60].strip(".")
    return name or "buildpack"


def source_digest(kind: str, url: str, commit: str = "") -> str:
    """What identifies a fetched buildpack in the bucket: a tarball by its URL, a git one by
    its URL and the commit its ref resolved to (so a moved branch is fetched again)."""
    return hashlib.sha256(f"{kind}\n{url}\n{commit}".encode()).hexdigest()


def pick_ref(ls_remote: str, ref: str) -> tuple[str, str] | None:
    """(commit, ref name) for a ref from `git ls-remote` output: a branch before a tag of the
    same name, an annotated tag's commit (`^{}`) before the tag object; None when absent."""
    refs: dict[str, str] = {}
    for line in ls_remote.splitlines():
        sha, _, name = line.strip().partition("\t")
        if _COMMIT.fullmatch(sha):
            refs.setdefault(name, sha)
    wanted = ref or "HEAD"
    for name in (f"refs/heads/{wanted}", f"refs/tags/{wanted}^{{}}", f"refs/tags/{wanted}", wanted):
        if name in refs:
            return refs[name], name.removesuffix("^{}")
    return None


@dataclass(frozen=True)
class Resolved:
    """One of the app's buildpacks as a build uses it: from the bucket (`key`, its sha256) or
    a directory on the build hosts (`path`)."""

    spec: str  # as the app's record has it (may hold credentials: never shown)
    kind: str  # GIT, TARBALL, DIRECTORY or HOST
    key: str = ""
    sha256: str = ""
    commit: str = ""
    path: str = ""
    cached: bool = False  # the bucket had it: nothing was fetched

    @property
    def name(self) -> str:
        return label(self.spec)

    def describe(self) -> str:
        """What it resolved to, e.g. `commit 3f2a1b4c5d6e` or `sha256 0a1b2c3d4e5f`."""
        if self.kind == HOST:
            return "a directory on the build hosts"
        if self.commit:
            return f"commit {self.commit[:12]}"
        return f"sha256 {self.sha256[:12]}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"buildpack": mask(self.spec), "kind": self.kind}
        if self.commit:
            data["commit"] = self.commit
        if self.sha256:
            data["sha256"] = self.sha256
        return data


def _index(index: int | None, length: int) -> int:
    """A 1-based --index as a list position (beyond the end: the end, as Heroku)."""
    if index is None:
        return 0
    if index < 1:
        raise ValidationError(f"--index {index}", "must be 1 or more (1 is the first buildpack)")
    return min(index - 1, length)


def _not_set(packs: tuple[str, ...], pack: str) -> None:
    if pack in packs:
        raise ValidationError(f"buildpack {mask(pack)}", "is already set on the app")


def with_added(packs: tuple[str, ...], pack: str, index: int | None) -> tuple[str, ...]:
    """`buildpacks:add`: appended, or inserted at the 1-based index."""
    _not_set(packs, pack)
    at = len(packs) if index is None else _index(index, len(packs))
    return (*packs[:at], pack, *packs[at:])


def with_set(packs: tuple[str, ...], pack: str, index: int | None) -> tuple[str, ...]:
    """`buildpacks:set`: replaces the one at the 1-based index (default: the first)."""
    _not_set(packs, pack)
    at = _index(index, len(packs))
    return (*packs[:at], pack, *packs[at + 1 :])


def without(packs: tuple[str, ...], pack: str | None, index: int | None) -> tuple[str, ...]:
    """`buildpacks:remove`: by its URL or path (as set, or as shown), or by its 1-based index."""
    if (pack is None) == (index is None):
        raise ValidationError("buildpacks:remove", "takes a buildpack or --index, not both")
    if index is not None:
        if not 1 <= index <= len(packs):
            raise ValidationError(f"--index {index}", f"the app has {len(packs)} buildpack(s)")
        return (*packs[: index - 1], *packs[index:])
    matches = [p for p in packs if pack in (p, mask(p))]
    if not matches:
        raise ValidationError(f"buildpack {mask(str(pack))}", "is not set on the app")
    return tuple(p for p in packs if p != matches[0])
