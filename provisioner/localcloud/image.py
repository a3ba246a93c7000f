"""The host image: a Debian 13 root made with debootstrap, customised, cached by recipe hash.

The cache key covers the debootstrap line, the customisation steps and the files copied in,
so any change to the recipe builds a new image. Builds go to a temporary directory that is
renamed into place at the end: a killed build never leaves a half image behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from provisioner import paths
from provisioner.localcloud.system import log, run

RECIPE_VERSION = 7
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-yaml",
    "dbus",
    "iproute2",
    "ca-certificates",
    "curl",
    "sudo",
    "nftables",  # the runner role's metadata block (installed on AWS hosts when missing)
    # The controller's libraries (the runner role installs them on AWS hosts when missing).
    "python3-boto3",
    "python3-fabric",
    "python3-jinja2",
    "python3-cffi-backend",  # provides a virtual package cryptography needs (debootstrap does
    # not resolve those)
]
# Files from templates/localcloud -> where they go in the image, and their mode.
FILES = {
    "firstboot.py": ("usr/local/lib/dynoform/firstboot.py", 0o755),
    "dynoform-init.service": ("etc/systemd/system/dynoform-init.service", 0o644),
    "dynoform-final.service": ("etc/systemd/system/dynoform-final.service", 0o644),
    "cloud-init": ("usr/bin/cloud-init", 0o755),
    "sshd-local.conf": ("etc/ssh/sshd_config.d/10-dynoform-local.conf", 0o644),
    "ssh-after-user-sessions.conf": ("etc/systemd/system/ssh.service.d/10-dynoform.conf", 0o644),
}
ENABLE = {
    "dynoform-init.service": "multi-user.target.wants",
    "dynoform-final.service": "multi-user.target.wants",
}
# Units a container does not need; masking them makes boots faster and quieter.
MASK = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "getty@tty1.service",
    "console-getty.service",
    "sshd-keygen.service",  # our first-boot unit writes the host keys (from user-data or new)
    "systemd-pstore.service",
]
USER = "admin"


def debootstrap_argv(target: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        MIRROR,
    ]


def template_dir() -> Path:
    return paths.resource_dir("templates") / "localcloud"


def recipe_hash() -> str:
    digest = hashlib.sha256()
    recipe = {
        "version": RECIPE_VERSION,
        "debootstrap": debootstrap_argv(Path("TARGET")),
        "mask": MASK,
        "enable": ENABLE,
        "user": USER,
        "files": {name: list(spec) for name, spec in FILES.items()},
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for name in sorted(FILES):
        digest.update((template_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


def image_path() -> Path:
    return paths.image_cache_dir() / recipe_hash()


def ensure_image() -> Path:
    """The cached image for the current recipe, built first if missing (about a minute)."""
    final = image_path()
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; others wait and reuse it
        if final.is_dir():
            return final
        _clean_partial(final.parent)
        tmp = final.parent / f".build-{final.name}-{os.getpid()}"
        started = time.monotonic()
        log.info("building host image %s with debootstrap (about a minute)", final.name)
        run(debootstrap_argv(tmp), timeout=1800)
        customise(tmp)
        tmp.rename(final)
        log.info("host image %s built in %.0f s", final.name, time.monotonic() - started)
    return final


def prune_images(keep: Path) -> list[str]:
    """Remove images of older recipes; call only when no host runs (lower dirs in use)."""
    removed = []
    for entry in keep.parent.iterdir():
        if entry != keep and entry.is_dir() and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _clean_partial(cache: Path) -> None:
    for entry in cache.glob(".build-*"):
        shutil.rmtree(entry, ignore_errors=True)


def customise(root: Path) -> None:
    run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "-G", "sudo,adm", USER])
    sudoers = root / "etc/sudoers.d/90-dynoform-admin"
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    for name, (dest, mode) in FILES.items():
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template_dir() / name, target)
        target.chmod(mode)
    units = root / "etc/systemd/system"
    for unit, wants in ENABLE.items():
        (units / wants).mkdir(parents=True, exist_ok=True)
        _symlink(f"/etc/systemd/system/{unit}", units / wants / unit)
    for unit in MASK:
        _symlink("/dev/null", units / unit)
        for wanted_by in units.glob(f"*.wants/{unit}"):
            wanted_by.unlink()
    # Each host gets its own keys, machine id and hostname at first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "var/lib/dynoform").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dynoform").chmod(0o700)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _symlink(source: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source)


def user_ids(root: Path, user: str = USER) -> tuple[int, int]:
    """(uid, gid) of a user in an image's /etc/passwd."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise KeyError(user)
