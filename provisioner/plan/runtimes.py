"""Language runtimes an app's build asks for (Python 3.14, Node.js 22...): names and places.

A runtime is made once per platform (OS and machine), kept in the platform bucket as a tarball,
and unpacked on each build host that needs it under RUNTIMES_ROOT, root's and read-only to
builds, which copy it into the slug (so dynos run the version asked for on any host).

In the bucket, a runtime is a pointer document and the tarball it names; the tarball's key
carries its sha256, so two hosts making the same runtime at once never leave a pointer to the
other's bytes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from provisioner.errors import ValidationError

RUNTIMES_ROOT = "/srv/dynoform/runtimes"
PREFIX = "runtimes"
KINDS = ("python", "node", "uv")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,2}")
_PLATFORM = re.compile(r"[a-z0-9]+-[0-9.]+-(x86_64|aarch64)")


@dataclass(frozen=True)
class Runtime:
    """One exact version of a language for one platform, e.g. python 3.14.7 on debian-13-x86_64."""

    kind: str
    version: str
    platform: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"runtime {self.kind!r}", f"must be one of {', '.join(KINDS)}")
        if not _VERSION.fullmatch(self.version):
            raise ValidationError(f"{self.kind} version {self.version!r}", "must be like 3.14.7")
        if not _PLATFORM.fullmatch(self.platform):
            raise ValidationError(f"platform {self.platform!r}", "must be like debian-13-x86_64")

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.version}"

    @property
    def pointer_key(self) -> str:
        """The bucket document naming the runtime's tarball (and its sha256, size, origin)."""
        return f"{PREFIX}/{self.platform}/{self.name}.json"

    def tarball_key(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValidationError("runtime sha256", "must be 64 hex digits")
        return f"{PREFIX}/{self.platform}/{self.name}-{sha256[:16]}.tar.gz"

    @property
    def host_dir(self) -> str:
        """Where a build host keeps it unpacked (root's, read-only to builds)."""
        return f"{RUNTIMES_ROOT}/{self.platform}/{self.name}"

    def runner_arg(self) -> str:
        """The runner's `--runtime` value; buildpacks see DYNOFORM_<KIND>_RUNTIME=<host_dir>."""
        return f"{self.kind}={self.host_dir}"


def platform_of(os_release_id: str, version_id: str, machine: str) -> str:
    """The platform string of a host from /etc/os-release's ID and VERSION_ID and `uname -m`."""
    machine = {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)
    value = f"{os_release_id.strip().lower()}-{version_id.strip()}-{machine.strip()}"
    if not _PLATFORM.fullmatch(value):
        raise ValidationError(f"host platform {value!r}", "expected e.g. debian-13-x86_64")
    return value


# One round trip tells a build host's platform and every runtime it has unpacked (all kinds):
# the first line "ID VERSION_ID MACHINE", then one "PLATFORM/NAME" per complete runtime.
HOST_RUNTIMES = (
    '. /etc/os-release && echo "$ID" "$VERSION_ID" "$(uname -m)"; '
    f"cd {shlex.quote(RUNTIMES_ROOT)} 2>/dev/null || exit 0; "
    'for f in */*/.complete; do [ -e "$f" ] && echo "${f%/.complete}"; done; exit 0'
)


@dataclass(frozen=True)
class HostRuntimes:
    """A build host's platform and the names of the runtimes it has for it (e.g. uv-0.13.9)."""

    platform: str
    have: frozenset[str]


def parse_host_runtimes(output: str) -> HostRuntimes:
    """HOST_RUNTIMES' output as a HostRuntimes; a ValidationError when its first line is not
    a platform."""
    lines = output.splitlines()
    words = lines[0].split() if lines else []
    if len(words) != 3:
        raise ValidationError("host platform", f"could not be read from {output[:200]!r}")
    platform = platform_of(*words)
    have = {line.split("/", 1)[1] for line in lines[1:] if line.startswith(f"{platform}/")}
    return HostRuntimes(platform, frozenset(have))
