"""Language runtimes on build hosts: from the host's own copy, else the platform bucket, else
made on the host once (downloaded or compiled) and kept in the bucket for every later host.

Making one runs the kind's script (`Acquire`) as `dynoform-runtime`, an unprivileged system
user of the host's, never as root and never as an app's user; root then takes only the tarball
it left (read as that user, so a link cannot reach root's files), checks its sha256, unpacks
it root-owned and read-only to everyone else, and uploads it through a presigned URL. Builds
see RUNTIMES_ROOT read-only and copy what they use into the slug.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from provisioner.aws.blobs import Blobs
from provisioner.errors import DynoformError
from provisioner.ops import buildhost
from provisioner.plan.runtimes import (
    HOST_RUNTIMES,
    RUNTIMES_ROOT,
    HostRuntimes,
    Runtime,
    parse_host_runtimes,
    platform_of,
)
from provisioner.remote.ssh import Connection, RemoteError

ACQUIRE_USER = "dynoform-runtime"
STAGING = "/var/tmp/dynoform-runtime"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Acquire:
    """How a host makes a runtime the bucket lacks: `script` (sh) runs as ACQUIRE_USER with $1 an
    empty directory of its own and `args` after it, and must leave $1/runtime.tar.gz holding the
    runtime's root (bin/, lib/...). `apt`: Debian packages root installs first (compilers)."""

    what: str  # said before it runs, e.g. "building Python 3.14.7 from source (about 3 minutes)"
    script: str
    origin: str  # recorded in the bucket: "standalone", "source", "npm"...
    args: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    timeout: int = 1800


# Unpacks a runtime tarball ($3: a file, or "-" to fetch it with the curl config on stdin) at
# $1 once its sha256 is $2; one install per host at a time; idempotent.
_INSTALL = """set -e
dir=$1 sha=$2 src=$3
root=${dir%/*}
install -d -m 0755 -- "$root"
exec 8>"$root/.lock"
flock 8
[ -e "$dir/.complete" ] && exit 0
tmp="$dir.part"
rm -rf -- "$tmp" "$tmp.tgz"
mkdir -m 0755 -- "$tmp"
if [ "$src" = - ]; then curl -fsS --retry 3 -o "$tmp.tgz" -K -; src="$tmp.tgz"; fi
if ! echo "$sha  $src" | sha256sum -c --status; then
  rm -rf -- "$tmp" "$tmp.tgz"; echo "its sha256 is not $sha" >&2; exit 5
fi
tar -xzf "$src" -C "$tmp" --no-same-owner
chown -R root:root -- "$tmp"
chmod -R u+rwX,go+rX,go-w -- "$tmp"
touch -- "$tmp/.complete"
rm -rf -- "$dir"
mv -- "$tmp" "$dir"
rm -f -- "$tmp.tgz"
"""

# Makes a runtime on this host, one maker per runtime at a time (a second waits, then finds it
# made): installs $7's Debian packages, runs the kind's script as ACQUIRE_USER in a fresh
# staging dir ($1), copies what it left to root's $2 (read as that user), unpacks it at $6
# (_INSTALL, $8) and prints "SHA256 SIZE", or "present" when it was made meanwhile.
# $3 the timeout, $4 the script, $5 the user.
_ACQUIRE = """set -e
stage=$1 out=$2 limit=$3 script=$4 user=$5 dir=$6 apt=$7 install=$8; shift 8
install -d -m 0755 -- "${stage%/*}"
exec 9>"$stage.lock"
flock 9
if [ -e "$dir/.complete" ]; then echo present; exit 0; fi
if [ -n "$apt" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq -o DPkg::Lock::Timeout=600 update
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $apt >/dev/null
fi
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin "$user" 2>/dev/null || id -u "$user" >/dev/null
rm -rf -- "$stage"; install -d -m 0700 -o "$user" -g "$user" -- "$stage" "$stage/out"
trap 'cd /; rm -rf -- "$stage"' EXIT  # a failed make leaves no sources behind (hundreds of MB)
cd "$stage"
timeout --kill-after=10 "$limit" runuser -u "$user" -- env -i HOME="$stage" \
  PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 sh -c "$script" sh "$stage/out" "$@"
install -d -m 0700 -- "${out%/*}"
runuser -u "$user" -- cat -- "$stage/out/runtime.tar.gz" > "$out.part"
mv -f -- "$out.part" "$out"
set -- $(sha256sum "$out")
sh -c "$install" sh "$dir" "$1" "$out"
echo "$1 $(stat -c %s "$out")"
"""


class Kind(Protocol):
    """A language whose version an app may ask for (ops/runtime_python.py, runtime_node.py), or
    a tool every build gets (ops/runtime_uv.py: wanted() always names its pinned version)."""

    kind: str
    files: tuple[str, ...]  # the top-level source files that may name a version

    def wanted(self, files: dict[str, bytes]) -> str | None:
        """The version spec the source asks for (e.g. "3.14", ">=20 <23"), or None."""
        ...

    def resolve(self, spec: str, platform: str) -> Runtime | None:
        """The exact version for a spec (None: the host's own interpreter serves it); a
        DynoformError saying why when there is none."""
        ...

    def acquire(self, runtime: Runtime) -> Acquire:
        """How a host makes it when the bucket lacks it."""
        ...


MAX_ASK_BYTES = 1 << 20  # a version file larger than this is not read


def top_files(tarball: Path, names: Sequence[str]) -> dict[str, bytes]:
    """The named top-level regular files of a source tarball (at most MAX_ASK_BYTES each)."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in names and member.isfile() and member.size <= MAX_ASK_BYTES:
                handle = tar.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    return found


def for_build(
    conn: Connection,
    blobs: Blobs,
    tarball: Path,
    kinds: Sequence[Kind],
    say: Say,
    on_line: Say,
    host: HostRuntimes | None = None,
) -> list[str]:
    """The runtimes the source asks for (uv for every build), unpacked on the build host: the
    runner's --runtime values (KIND=DIR). `host`: what the host has, when the caller already
    asked (buildhost.prepare); else one round trip asks, for every kind at once."""
    files = top_files(tarball, sorted({n for k in kinds for n in k.files}))
    asked = [(kind, spec) for kind in kinds if (spec := kind.wanted(files)) is not None]
    if not asked:
        return []
    host = host or host_runtimes(conn)
    args = []
    for kind, spec in asked:
        runtime = kind.resolve(spec, host.platform)
        if runtime is None:
            continue
        present = runtime.name in host.have
        ensure(conn, blobs, runtime, partial(kind.acquire, runtime), say, on_line, present)
        args.append(runtime.runner_arg())
    return args


def host_runtimes(conn: Connection) -> HostRuntimes:
    """The host's platform and the runtimes it has unpacked, every kind (one round trip)."""
    result = conn.run(["sh", "-c", HOST_RUNTIMES], check=True)
    try:
        return parse_host_runtimes(result.stdout)
    except DynoformError as exc:
        raise RemoteError(f"could not tell the platform of {conn.name}: {exc}") from exc


def host_platform(conn: Connection) -> str:
    """The host's platform string (one round trip), e.g. debian-13-x86_64."""
    script = '. /etc/os-release && echo "$ID" "$VERSION_ID" "$(uname -m)"'
    result = conn.run(["sh", "-c", script], check=True)
    words = result.stdout.split()
    if len(words) != 3:
        raise RemoteError(f"could not tell the platform of {conn.name}: {result.stdout!r}")
    return platform_of(*words)


def ensure(
    conn: Connection,
    blobs: Blobs,
    runtime: Runtime,
    acquire: Callable[[], Acquire],
    say: Say,
    on_line: Say,
    present: bool | None = None,
) -> str:
    """The runtime unpacked on this host (its directory): kept there, else from the bucket,
    else made there with `acquire()` and kept in the bucket. Its lines go to on_line.
    `present`: whether the host has it, when the caller already asked (None: ask)."""
    if present is None:
        present = conn.run(["test", "-e", f"{runtime.host_dir}/.complete"]).ok
    if present:
        return runtime.host_dir
    pointer = read_pointer(blobs, runtime)
    if pointer is not None:
        say(f"installing {runtime.kind} {runtime.version} on {conn.name} from the bucket")
        url = blobs.get_url(runtime.tarball_key(pointer["sha256"]))
        _install(conn, runtime, pointer["sha256"], "-", buildhost.curl_config(url))
        return runtime.host_dir
    plan = acquire()
    say(f"{plan.what} on {conn.name}: once for this platform, then kept in the bucket")
    made = f"/var/cache/dynoform/runtimes/{runtime.platform}-{runtime.name}.tar.gz"
    outcome = _make(conn, runtime, plan, made, on_line)
    if outcome is None:  # another build on this host made it while this one waited
        return runtime.host_dir
    sha256, size = outcome
    key = runtime.tarball_key(sha256)
    _upload(conn, made, blobs.put_url(key))
    conn.run(["rm", "-f", "--", made], sudo=True)
    record = {"sha256": sha256, "size": size, "origin": plan.origin, "key": key}
    blobs.put_text(runtime.pointer_key, json.dumps(record, sort_keys=True))
    say(f"{runtime.kind} {runtime.version} kept in the bucket ({size / 1e6:.1f} MB, {plan.origin})")
    return runtime.host_dir


def read_pointer(blobs: Blobs, runtime: Runtime) -> dict[str, Any] | None:
    """The bucket's record of this runtime, when it has one whose tarball is there."""
    text = blobs.get_text(runtime.pointer_key)
    if text is None:
        return None
    try:
        record = json.loads(text)
        key = runtime.tarball_key(str(record["sha256"]))
    except (ValueError, KeyError, TypeError, DynoformError):
        return None  # a damaged pointer: made again, then overwritten
    return record if blobs.exists(key) else None


def _install(conn: Connection, runtime: Runtime, sha256: str, src: str, stdin: bytes) -> None:
    argv = ["sh", "-c", _INSTALL, "sh", runtime.host_dir, sha256, src]
    result = conn.run(argv, sudo=True, stdin=stdin, timeout=600)
    if not result.ok:
        raise DynoformError(
            f"could not install {runtime.kind} {runtime.version} on {conn.name}: "
            f"{result.stderr.strip()[-300:]}",
            f"the bucket's copy is {runtime.pointer_key}; delete it to make the runtime again",
        )


def _make(
    conn: Connection, runtime: Runtime, plan: Acquire, made: str, on_line: Say
) -> tuple[str, int] | None:
    """Made and unpacked on the host: (sha256, size); None when another build made it."""
    stage = f"{STAGING}/{runtime.name}"
    argv = ["sh", "-c", _ACQUIRE, "sh", stage, made, str(plan.timeout), plan.script, ACQUIRE_USER]
    argv += [runtime.host_dir, " ".join(plan.apt), _INSTALL, *plan.args]
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        if not re.fullmatch(r"[0-9a-f]{64} [0-9]+|present", line):  # _ACQUIRE's own last line
            on_line(line)

    code = buildhost.stream(conn, argv, keep, plan.timeout + 900)
    last = lines[-1].split() if lines else []
    if code == 0 and last == ["present"]:
        return None
    if code != 0 or len(last) != 2 or not last[1].isdigit():
        raise DynoformError(
            f"could not make {runtime.kind} {runtime.version} on {conn.name} "
            f"({plan.origin}): {' '.join(lines[-1:])[-300:] or f'exit {code}'}",
            "see the output above; the build did not start and nothing changed",
        )
    return last[0], int(last[1])


def _upload(conn: Connection, path: str, url: str) -> None:
    """Upload one of root's own files (a runtime just made) through a presigned URL."""
    result = conn.run(
        ["curl", "-fsS", "--retry", "3", "-T", path, "-K", "-"],
        sudo=True,
        stdin=buildhost.curl_config(url),
        timeout=600,
    )
    if not result.ok:
        raise RemoteError(
            f"could not upload {Path(path).name} from the host: {result.stderr.strip()}"
        )


__all__ = [
    "ACQUIRE_USER",
    "RUNTIMES_ROOT",
    "Acquire",
    "ensure",
    "host_platform",
    "host_runtimes",
    "read_pointer",
]
