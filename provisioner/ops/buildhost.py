"""Running a build on a fleet host over SSH: tooling, inputs, the transient unit, the slug.

The build uses no AWS credentials (a runner's are the controller's, out of a build's reach):
the source, the build cache and the slug move through presigned URLs, handed to curl on stdin
(never on a command line).

An app builds as its own dyno user in a tmpfs of its own (size-capped) that root mounts at the
build's directory. Root writes there only before any of the build's code runs; afterwards it
takes the results (result.json, slug.tgz, cache-out.tar) only once the build's processes are
gone, only from regular files of the build user's, never through a symlink, and size-capped.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import select
import shlex
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from provisioner import paths
from provisioner.aws.blobs import Blobs
from provisioner.build import (
    BUILD_ROOT,
    CACHE_ROOT,
    MAX_RESULT_BYTES,
    MAX_SLUG_BYTES,
    RUNNER_SOURCE,
    BuildLayout,
    BuildResult,
    build_layout,
    build_unit_argv,
    parse_build_result,
    runner_argv,
)
from provisioner.errors import DynoformError
from provisioner.ops.buildpack_cache import MAX_BUILDPACK_BYTES
from provisioner.plan.buildpacks import HOST, Resolved
from provisioner.plan.units import app_user, ensure_app_user_argv
from provisioner.remote.runner import HostRunner
from provisioner.remote.ssh import Connection, RemoteError

BUILD_TIMEOUT = 15 * 60 + 60
MAX_LINE_BYTES = 64 * 1024  # a longer "line" of build output is passed on in pieces
OutputFn = Callable[[str], None]

# Writes one file per config var into the env dir from JSON on stdin (values never on argv).
_WRITE_ENV = (
    "import json,os,sys\n"
    "d,user=sys.argv[1],sys.argv[2]\n"
    "import pwd; pw=pwd.getpwnam(user)\n"
    "for k,v in json.load(sys.stdin).items():\n"
    "    p=os.path.join(d,k)\n"
    "    fd=os.open(p,os.O_WRONLY|os.O_CREAT|os.O_EXCL|os.O_NOFOLLOW,0o600)\n"
    "    os.write(fd,v.encode()); os.fchown(fd,pw.pw_uid,pw.pw_gid); os.close(fd)\n"
)

# The build's tmpfs at its directory, under root-owned parents nobody else can list. What a
# build of this app left behind when its deploy died goes first (an app's deploys never
# overlap: the app lease). $4 is the cache dir, $5 the directories the build owns in its tmpfs.
_PREPARE = """set -e
work=$1 user=$2 size=$3 cache=$4; shift 4
builds=${work%/*/*} app_root=${work%/*}
install -d -m 0711 -- "$builds" "$app_root"
chown root:root -- "$builds" "$app_root"; chmod 0711 -- "$builds" "$app_root"
install -d -m 0700 -- "$cache"; chown root:root -- "$cache"; chmod 0700 -- "$cache"
for old in "$app_root"/*; do
  [ -e "$old" ] || [ -L "$old" ] || continue
  umount -l -- "$old" 2>/dev/null || true
  rm -rf -- "$old"
done
mkdir -m 0700 -- "$work"
mount -t tmpfs -o "size=$size,mode=0700,uid=$(id -u "$user"),gid=$(id -g "$user"),nosuid,nodev" \
  dynoform-build "$work"
install -d -o "$user" -g "$user" -m 0700 -- "$@"
"""

# Takes one result file out of the build's directory for root, once its processes are gone:
# opened without following symlinks (nor blocking on a FIFO), a regular file of the build
# user's with one link, at most LIMIT bytes. DEST "-": the content to stdout; else a copy at
# DEST (root's, via DEST.part) and "SHA256 SIZE" on stdout. Exit 3: no such file; 4: refused.
_COLLECT = """import errno, hashlib, os, pwd, stat, sys
work, name, limit, user, dest, mode = sys.argv[1:7]
limit = int(limit)
def refuse(why):
    sys.stderr.write(why)
    sys.exit(4)
d = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
try:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=d)
except FileNotFoundError:
    sys.exit(3)
except OSError as exc:
    if exc.errno == errno.ELOOP:
        refuse("is a symbolic link, not a regular file")
    raise
st = os.fstat(fd)
if not stat.S_ISREG(st.st_mode):
    refuse("is not a regular file")
if st.st_uid != pwd.getpwnam(user).pw_uid or st.st_nlink != 1:
    refuse("is not a file of the build's own")
if st.st_size > limit:
    refuse(f"is larger than the limit of {limit} bytes")
digest, size = hashlib.sha256(), 0
out = None
if dest != "-":
    part = dest + ".part"
    if os.path.lexists(part):
        os.unlink(part)
    out = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, int(mode, 8))
while chunk := os.read(fd, 1 << 20):
    size += len(chunk)
    if size > limit:
        refuse(f"is larger than the limit of {limit} bytes")
    digest.update(chunk)
    if out is None:
        sys.stdout.buffer.write(chunk)
    else:
        os.write(out, chunk)
if out is not None:
    os.fchmod(out, int(mode, 8))
    os.close(out)
    os.replace(part, dest)
    print(digest.hexdigest(), size)
"""


def tooling_bundle() -> tuple[bytes, str]:
    """runner.py and the built-in buildpacks as one tarball, and its content hash."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(RUNNER_SOURCE, arcname="runner.py", filter=_fixed)
        tar.add(paths.resource_dir("buildpacks"), arcname="buildpacks", filter=_fixed)
    data = buf.getvalue()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            digest.update(member.name.encode() + str(member.mode).encode())
            handle = tar.extractfile(member)
            if handle is not None:
                digest.update(handle.read())
    return data, digest.hexdigest()[:16]


def _fixed(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name:
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def ensure_tooling(conn: Connection) -> bool:
    """Install the runner and buildpacks under BUILD_ROOT unless this version is there."""
    data, version = tooling_bundle()
    marker = f"{BUILD_ROOT}/.version"
    have = conn.run(["cat", marker], sudo=True)
    if have.ok and have.stdout.strip() == version:
        return False
    script = (
        'set -e; new="$1.new"; rm -rf -- "$new"; mkdir -p -- "$new"; '
        'tar -xzf - -C "$new"; chmod -R a+rX "$new"; echo "$2" > "$new/.version"; '
        'rm -rf -- "$1.old"; if [ -d "$1" ]; then mv -- "$1" "$1.old"; fi; mv -- "$new" "$1"; '
        'rm -rf -- "$1.old"'
    )
    conn.run(
        ["sh", "-c", script, "sh", BUILD_ROOT, version],
        sudo=True,
        stdin=data,
        check=True,
    )
    return True


def ensure_app_user(conn: HostRunner, app: str) -> str:
    """The app's own user on this host (created when missing), for its builds and dynos."""
    user = app_user(app)
    created = conn.run(ensure_app_user_argv(app), sudo=True)  # one round trip
    if not created.ok and not conn.run(["getent", "passwd", user]).ok:  # lost a race: fine
        raise RemoteError(f"could not create user {user}: {created.stderr.strip()[-300:]}")
    return user


def build_paths(app: str) -> tuple[str, str]:
    """What an app's builds keep on a build host: its cache tarball and its builds' directory."""
    layout = build_layout(app, "b")
    return layout.cache_in, layout.work_dir.rsplit("/", 1)[0]


NODE_PACKAGES = ["nodejs", "npm"]
_NODE_WORD = re.compile(r"(^|[\s/;&|])(node|npm|npx|yarn)(\s|$)")


def needs_node(source_names: list[str] | None = None, commands: list[str] | None = None) -> bool:
    """A Node.js app: package.json at the top of the source, or a process that runs node/npm."""
    if source_names and any(n.lstrip("./") == "package.json" for n in source_names):
        return True
    return any(_NODE_WORD.search(c) for c in commands or [])


def ensure_node(conn: HostRunner, say: Callable[[str], None]) -> None:
    """Install Debian's nodejs and npm on a host the first time a Node.js app needs them."""
    if conn.run(["sh", "-c", "command -v node && command -v npm"]).ok:
        return
    say(f"installing Node.js on {conn.name} (once per host)")
    apt_install(conn, NODE_PACKAGES)


def apt_install(conn: HostRunner, packages: list[str]) -> None:
    """Install Debian packages on a host (quietly; up to 15 minutes for a slow mirror)."""
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
        'apt-get install -y -qq --no-install-recommends "$@" >/dev/null'
    )
    conn.run(["sh", "-c", script, "sh", *packages], sudo=True, timeout=900, check=True)


# Root fetches the build's buildpacks from the bucket (the curl config on stdin names each URL
# and its output file) before any of the build's code runs, checks each sha256, and hands them
# to the build's user. $1 the user, $2 the size limit, then pairs of FILE SHA256.
_STAGE = """set -e
user=$1 limit=$2; shift 2
curl -fsS --retry 3 --max-filesize "$limit" -K -
while [ "$#" -gt 1 ]; do
  if ! echo "$2  $1" | sha256sum -c --status; then echo "${1##*/}: its sha256 is not $2" >&2; exit 5; fi
  chown -- "$user:$user" "$1"; chmod 0600 -- "$1"
  shift 2
done
"""


def stage_buildpacks(
    conn: Connection, layout: BuildLayout, packs: list[Resolved], blobs: Blobs
) -> list[str]:
    """The app's buildpacks for the runner, in order: tarballs from the bucket in the build's
    directory (one round trip for all), or directories on the build hosts as they are. The
    build unpacks each into a writable copy of its own."""
    staged, config, pairs = [], b"", []
    for index, pack in enumerate(packs):
        if pack.kind == HOST:
            staged.append(pack.path)
            continue
        dest = layout.buildpack_tarball(index, pack.name)
        config += curl_config(blobs.get_url(pack.key), f'output = "{dest}"\n')
        pairs += [dest, pack.sha256]
        staged.append(dest)
    if pairs:
        argv = ["sh", "-c", _STAGE, "sh", layout.user, str(MAX_BUILDPACK_BYTES), *pairs]
        result = conn.run(argv, sudo=True, stdin=config, timeout=300)
        if not result.ok:
            raise DynoformError(
                f"could not fetch the app's buildpacks from the bucket on {conn.name}: "
                f"{result.stderr.strip()[-300:]}",
                "the build did not start; the app's current release keeps serving",
            )
    return staged


def curl_config(url: str, extra: str = "") -> bytes:
    """A curl config (read with `-K -`) so the presigned URL stays off the command line."""
    return f'url = "{url}"\n{extra}'.encode()


def prepare(
    conn: Connection, layout: BuildLayout, config: dict[str, str], source_url: str, disk_bytes: int
) -> None:
    """The build's tmpfs of disk_bytes (owned by the app's user), its config vars as files, and
    the source: all written before any of the build's code runs."""
    owned = [layout.app_dir, layout.cache_dir, layout.env_dir, layout.tmp_dir]
    owned.append(layout.buildpacks_in)
    argv = ["sh", "-c", _PREPARE, "sh", layout.work_dir, layout.user, str(int(disk_bytes))]
    conn.run([*argv, CACHE_ROOT, *owned], sudo=True, check=True)
    conn.run(
        ["python3", "-c", _WRITE_ENV, layout.env_dir, layout.user],
        sudo=True,
        stdin=json.dumps(config).encode(),
        check=True,
    )
    fetched = conn.run(
        ["curl", "-fsS", "--retry", "3", "-o", layout.source, "-K", "-"],
        sudo=True,
        stdin=curl_config(source_url),
        timeout=300,
    )
    if not fetched.ok:
        raise RemoteError(f"could not fetch the source on the build host: {fetched.stderr.strip()}")
    conn.run(["chown", f"{layout.user}:{layout.user}", layout.source], sudo=True, check=True)


def restore_cache(
    conn: Connection, layout: BuildLayout, cache_url: str | None, max_bytes: int
) -> bool:
    """Fetch the app's cache tarball from S3 unless this host keeps one (a build on a host new
    to the app). Root only stores it (root's file); the build unpacks it, as its own user."""
    if cache_url is None:
        return False
    script = (
        'set -e; [ -e "$1" ] && exit 0; rm -f -- "$1.part"; '
        'curl -fsS --retry 3 --max-filesize "$2" -o "$1.part" -K -; '
        'chmod 0644 -- "$1.part"; mv -f -- "$1.part" "$1"'
    )
    result = conn.run(
        ["sh", "-c", script, "sh", layout.cache_in, str(int(max_bytes))],
        sudo=True,
        stdin=curl_config(cache_url),
        timeout=300,
    )
    return result.ok


def stream(conn: Connection, argv: list[str], on_line: OutputFn, timeout: float) -> int:
    """Run argv as root, calling on_line for each line of output as it comes; the exit status.
    A line longer than MAX_LINE_BYTES is passed on in pieces, so memory stays bounded."""
    chan = conn.transport.open_session(timeout=10)
    full = ["sudo", "-n", "--", *argv] if conn.sudo else argv
    chan.set_combine_stderr(True)
    chan.exec_command(shlex.join(full))
    chan.shutdown_write()
    deadline = time.monotonic() + timeout
    pending = b""
    try:
        while not chan.exit_status_ready() or chan.recv_ready():
            if time.monotonic() > deadline:
                raise RemoteError(f"the build on {conn.endpoint.name} timed out")
            select.select([chan], [], [], 0.5)
            while chan.recv_ready():
                pending += chan.recv(65536)
                *lines, pending = pending.split(b"\n")
                while len(pending) > MAX_LINE_BYTES:
                    lines.append(pending[:MAX_LINE_BYTES])
                    pending = pending[MAX_LINE_BYTES:]
                for line in lines:
                    on_line(line.decode(errors="replace"))
        if pending:
            on_line(pending.decode(errors="replace"))
        return chan.recv_exit_status()
    finally:
        chan.close()


def run_build(
    conn: Connection,
    layout: BuildLayout,
    on_line: OutputFn,
    buildpacks: list[str] | None = None,
    source_version: str | None = None,
    max_slug_bytes: int | None = None,
    runtimes: list[str] | None = None,
) -> BuildResult:
    """Run the build unit, make sure none of its processes remain, then read its result.
    `runtimes`: KIND=DIR of the runtimes unpacked for it (ops.runtimes.ensure)."""
    command = runner_argv(
        layout,
        buildpacks,
        source_version=source_version,
        max_slug_bytes=max_slug_bytes,
        runtimes=runtimes,
    )
    try:
        code = stream(conn, build_unit_argv(layout, command), on_line, BUILD_TIMEOUT)
    finally:
        stop_unit(conn, layout)
    text = collect(conn, layout, "result.json", MAX_RESULT_BYTES)
    return parse_build_result(text, code, max_slug_bytes or MAX_SLUG_BYTES)


# Stops the unit (SIGKILL to all it has left) and waits until systemd says it is gone.
_STOP = """systemctl kill --signal=SIGKILL -- "$1" 2>/dev/null
systemctl stop -- "$1" 2>/dev/null
for _ in $(seq 100); do
  case $(systemctl show -p ActiveState --value -- "$1") in inactive|failed|"") exit 0;; esac
  sleep 0.1
done
exit 1
"""


def stop_unit(conn: Connection, layout: BuildLayout) -> None:
    """None of the build's processes may remain when root looks at what it wrote."""
    stopped = conn.run(["sh", "-c", _STOP, "sh", f"{layout.unit}.service"], sudo=True, timeout=60)
    if not stopped.ok:
        raise DynoformError(
            f"the build unit {layout.unit} did not stop; its results are not used",
            f"inspect the build host: systemctl status {layout.unit}",
        )


def collect(
    conn: Connection,
    layout: BuildLayout,
    name: str,
    limit: int,
    dest: str = "-",
    mode: str = "0600",
) -> str | None:
    """One file the build wrote, taken safely (see _COLLECT): its text (dest "-"), or the
    "SHA256 SIZE" of root's copy at dest (with mode); None when the build did not write it."""
    argv = ["python3", "-c", _COLLECT, layout.work_dir, name, str(int(limit)), layout.user]
    result = conn.run([*argv, dest, mode], sudo=True, timeout=600)
    if result.exit_code == 3:
        return None
    if result.exit_code == 4:
        raise DynoformError(
            f"refused the build's {name}: it {result.stderr.strip()[:200]}; nothing of it was used",
            "a build must leave its results as plain files; see the build output above",
        )
    if not result.ok:
        raise RemoteError(f"could not read the build's {name}: {result.stderr.strip()[-300:]}")
    return result.stdout


def collect_slug(conn: Connection, layout: BuildLayout, result: BuildResult, limit: int) -> None:
    """Root's copy of the slug (layout.slug_copy), only if it is the one result.json names."""
    copied = collect(conn, layout, "slug.tgz", limit, layout.slug_copy) or ""
    if copied.split()[:2] != [result.sha256, str(result.size)]:
        raise DynoformError(
            "refused the build's slug.tgz: it is not the slug result.json names (sha256, size)",
            "a build must not change its results; see the build output above",
        )


def keep_cache(conn: Connection, layout: BuildLayout, limit: int) -> bool:
    """Keep the build's cache-out.tar as the app's cache on this host (root's copy, read-only
    to the app's next build); False when the build left none."""
    kept = collect(conn, layout, "cache-out.tar", limit, layout.cache_in, mode="0644")
    return kept is not None


def upload(conn: Connection, path: str, url: str) -> None:
    """Upload one of root's own files (a slug or cache copy) through a presigned URL."""
    result = conn.run(
        ["curl", "-fsS", "--retry", "3", "-T", path, "-K", "-"],
        sudo=True,
        stdin=curl_config(url),
        timeout=600,
    )
    if not result.ok:
        raise RemoteError(
            f"could not upload {Path(path).name} from the build host: {result.stderr.strip()}"
        )


# Remove a build's tmpfs and root's slug copy in the background: the deploy need not wait for
# it; the detached commands hold nothing of the SSH channel.
_REMOVE_LATER = '(umount -l -- "$1"; rm -rf -- "$1" "$2") </dev/null >/dev/null 2>&1 &'


def cleanup(conn: Connection, layout: BuildLayout) -> None:
    conn.run(["sh", "-c", _REMOVE_LATER, "sh", layout.work_dir, layout.slug_copy], sudo=True)
