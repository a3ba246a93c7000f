"""Where dynoform finds its shipped files and keeps the user's files."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """A shipped top-level directory (templates, playbooks, buildpacks).

    In a wheel they live in provisioner/_data; in a checkout (editable install) at the top level.
    """
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dynoform resource directory {name!r} is missing from the install")


def config_dir() -> Path:
    """The user's dynoform config directory (targets, keys); honours XDG_CONFIG_HOME."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dynoform"


def local_state_dir() -> Path:
    """Where the local cloud keeps its pid file, log and host disks."""
    return Path(os.environ.get("DYNOFORM_LOCAL_DIR", "/var/lib/dynoform/local"))


def image_cache_dir() -> Path:
    """Where the local cloud caches its host image (outside any repository)."""
    return Path(os.environ.get("DYNOFORM_IMAGE_CACHE", "/var/cache/dynoform/images"))
