"""The source of a deploy: the committed tree of a git HEAD, or a plain directory."""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import DynoformError


@dataclass(frozen=True)
class Source:
    tarball: Path
    description: str  # "Deploy 1a2b3c4" or "Deploy from directory"
    commit: str | None


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )


def is_git_work_tree(path: Path) -> bool:
    result = _git(path, "rev-parse", "--show-toplevel")
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == path.resolve()


def package_source(path: Path, workdir: Path | None = None) -> Source:
    """Tar up what to build: git HEAD's committed tree when PATH is a repository's top level."""
    path = path.resolve()
    if not path.is_dir():
        raise DynoformError(f"{path} is not a directory", "give the app's directory")
    out = Path(tempfile.mkstemp(suffix=".tgz", dir=workdir)[1])
    if is_git_work_tree(path):
        head = _git(path, "rev-parse", "HEAD")
        if head.returncode != 0:
            raise DynoformError(f"{path} has no commits", "commit your code, or deploy a directory")
        commit = head.stdout.strip()
        subprocess.run(
            ["git", "-C", str(path), "archive", "--format=tar.gz", "-o", str(out), commit],
            check=True,
        )
        return Source(out, f"Deploy {commit[:7]}", commit)
    with tarfile.open(out, "w:gz") as tar:
        for child in sorted(path.iterdir()):
            if child.name == ".git":
                continue
            tar.add(child, arcname=child.name, filter=_normalise)
    return Source(out, "Deploy from directory", None)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def package_commit(path: Path, ref: str, workdir: Path | None = None) -> Source:
    """Tar up one commit of the repository at path (what `git push` sends)."""
    resolved = _git(path.resolve(), "rev-parse", "--verify", f"{ref}^{{commit}}")
    if resolved.returncode != 0:
        raise DynoformError(f"{ref!r} is not a commit in {path}", "push a branch or commit")
    commit = resolved.stdout.strip()
    out = Path(tempfile.mkstemp(suffix=".tgz", dir=workdir)[1])
    subprocess.run(
        ["git", "-C", str(path), "archive", "--format=tar.gz", "-o", str(out), commit], check=True
    )
    return Source(out, f"Deploy {commit[:7]}", commit)
