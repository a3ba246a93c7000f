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
from dataclasses import dataclass
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
from provisioner.plan.runtimes import HOST_RUNTIMES, HostRuntimes, parse_host_runtimes
from provisioner.plan.units import ensure_app_user_argv
from provisioner.remote.runner import HostRunner
from provisioner.remote.ssh import Connection, RemoteError

BUILD_TIMEOUT = 15 * 60 + 60
MAX_LINE_BYTES = 64 * 1024  # a longer "line" of build output is passed on in pieces
OutputFn = Callable[[str], None]

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
# user's with one link, at most LIMIT bytes. DEST "-": the content to OUT; else a copy at DEST
# (root's, via DEST.part) and "SHA256 SIZE" returned. None: no such file; Refused: refused.
_COLLECT_FN = """import errno, hashlib, os, pwd, stat, sys
class Refused(Exception):
    pass
def collect(work, name, limit, user, dest, mode, out_stream):
    d = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=d)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("is a symbolic link, not a regular file")
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise Refused("is not a regular file")
    if st.st_uid != pwd.getpwnam(user).pw_uid or st.st_nlink != 1:
        raise Refused("is not a file of the build's own")
    if st.st_size > limit:
        raise Refused(f"is larger than the limit of {limit} bytes")
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
            raise Refused(f"is larger than the limit of {limit} bytes")
        digest.update(chunk)
        if out is None:
            out_stream.write(chunk)
        else:
            os.write(out, chunk)
    if out is None:
        return ""
    os.fchmod(out, int(mode, 8))
    os.close(out)
    os.replace(part, dest)
    return f"{digest.hexdigest()} {size}"
"""

# Several files in one go: argv WORK USER then NAME LIMIT DEST MODE for each; a JSON object on
# stdout, name -> {"text": content or "SHA256 SIZE"} | {"missing": true} | {"refused": why}.
_COLLECT_ALL = (
    _COLLECT_FN
    + """import io, json
work, user, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
found = {}
for i in range(0, len(rest), 4):
    name, limit, dest, mode = rest[i : i + 4]
    buf = io.BytesIO()
    try:
        got = collect(work, name, int(limit), user, dest, mode, buf)
    except Refused as exc:
        found[name] = {"refused": str(exc)}
        continue
    if got is None:
        found[name] = {"missing": True}
    else:
        text = buf.getvalue().decode(errors="replace") if dest == "-" else got
        found[name] = {"text": text}
json.dump(found, sys.stdout)
"""
)


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


def ensure_tooling(conn: Connection, have: str | None = None) -> bool:
    """Install the runner and buildpacks under BUILD_ROOT unless this version is there
    (`have`: the version the host has, when the caller already asked; see prepare)."""
    data, version = tooling_bundle()
    if have is None:
        marker = conn.run(["cat", f"{BUILD_ROOT}/.version"], sudo=True)
        have = marker.stdout.strip() if marker.ok else ""
    if have == version:
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


# Everything root does on the build host before the build, in one round trip (python3 as root,
# a JSON document on stdin: config vars and presigned URLs never reach a command line): the
# app's user (created when missing), the build's tmpfs (_PREPARE), one file per config var,
# the source (the build user's), the app's cache tarball unless the host keeps one (root's,
# read-only to the build), and the version of the build tooling the host has (JSON on stdout).
# Exit 10: no user; 11: the tmpfs; 12: the source could not be fetched.
_PREPARE_ALL = """import json, os, pwd, subprocess, sys
spec = json.load(sys.stdin)
user, work = spec["user"], spec["work"]
def run(argv, data, code):
    done = subprocess.run(argv, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace")[-1000:])
        sys.exit(code)
    return done
created = subprocess.run(spec["ensure_user"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    pw = pwd.getpwnam(user)
except KeyError:  # a race lost to another deploy is fine; no user is not
    sys.stderr.write(created.stderr.decode(errors="replace")[-300:])
    sys.exit(10)
run(["sh", "-c", spec["prepare"], "sh", work, user, str(spec["size"]), *spec["owned"]], b"", 11)
for key, value in spec["config"].items():
    path = os.path.join(spec["env_dir"], key)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.write(fd, value.encode())
    os.fchown(fd, pw.pw_uid, pw.pw_gid)
    os.close(fd)
fetch = ["curl", "-fsS", "--retry", "3", "-o", spec["source"], "-K", "-"]
run(fetch, spec["source_curl"].encode(), 12)
os.chown(spec["source"], pw.pw_uid, pw.pw_gid)
if spec["cache_curl"]:
    restore = ["sh", "-c", spec["restore"], "sh", spec["cache_in"], str(spec["size"])]
    subprocess.run(restore, input=spec["cache_curl"].encode(), capture_output=True)
try:
    with open(spec["tooling"]) as marker:
        tooling = marker.read().strip()
except OSError:
    tooling = ""
host = subprocess.run(["sh", "-c", spec["runtimes"]], capture_output=True, text=True).stdout
json.dump({"tooling": tooling, "runtimes": host}, sys.stdout)
"""

# Fetch the app's cache tarball from S3 unless this host keeps one (a build on a host new to
# the app). Root only stores it (root's file); the build unpacks it, as its own user.
_RESTORE_CACHE = (
    'set -e; [ -e "$1" ] && exit 0; rm -f -- "$1.part"; '
    'curl -fsS --retry 3 --max-filesize "$2" -o "$1.part" -K -; '
    'chmod 0644 -- "$1.part"; mv -f -- "$1.part" "$1"'
)


def prepare(
    conn: Connection,
    layout: BuildLayout,
    config: dict[str, str],
    source_url: str,
    cache_url: str | None,
    disk_bytes: int,
) -> Prepared:
    """The app's user, the build's tmpfs of disk_bytes (owned by that user), its config vars as
    files, the source and the cache: all written before any of the build's code runs. Returns
    the version of the build tooling on the host ("" when it has none) and the runtimes it has
    (so the build's runtimes, uv for every build, cost no round trip of their own)."""
    owned = [layout.app_dir, layout.cache_dir, layout.env_dir, layout.tmp_dir]
    owned.append(layout.buildpacks_in)
    spec = {
        "user": layout.user,
        "work": layout.work_dir,
        "ensure_user": ensure_app_user_argv(layout.app),
        "prepare": _PREPARE,
        "size": int(disk_bytes),
        "owned": [CACHE_ROOT, *owned],
        "env_dir": layout.env_dir,
        "config": config,
        "source": layout.source,
        "source_curl": curl_config(source_url).decode(),
        "restore": _RESTORE_CACHE,
        "cache_in": layout.cache_in,
        "cache_curl": curl_config(cache_url).decode() if cache_url else None,
        "tooling": f"{BUILD_ROOT}/.version",
        "runtimes": HOST_RUNTIMES,
    }
    argv = ["python3", "-c", _PREPARE_ALL]
    result = conn.run(argv, sudo=True, stdin=json.dumps(spec).encode(), timeout=600)
    why = result.stderr.strip()[-300:]
    if result.exit_code == 10:
        raise RemoteError(f"could not create user {layout.user}: {why}")
    if result.exit_code == 12:
        raise RemoteError(f"could not fetch the source on the build host: {why}")
    if not result.ok:
        raise RemoteError(f"on host {conn.name}: could not prepare the build: {why}")
    answer = json.loads(result.stdout)
    try:
        host = parse_host_runtimes(str(answer.get("runtimes", "")))
    except DynoformError:
        host = None  # runtimes.for_build asks again, and says what went wrong
    return Prepared(str(answer["tooling"]), host)


@dataclass(frozen=True)
class Prepared:
    """What prepare() learnt of the build host: its tooling's version and its runtimes."""

    tooling: str
    host: HostRuntimes | None


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
    cache_bytes: int = 0,
    runtimes: list[str] | None = None,
    on_ended: Callable[[], object] | None = None,
) -> tuple[BuildResult, bool]:
    """Run the build unit, make sure none of its processes remain, then take its results: the
    parsed result, root's copy of the slug (layout.slug_copy, checked against the result) and
    whether the build left a cache (root's copy next to layout.cache_in, see deliver).
    `runtimes`: KIND=DIR of the runtimes unpacked for it (ops.runtimes.ensure). `on_ended` is
    called when the build's command has returned, before its results are taken."""
    command = runner_argv(
        layout,
        buildpacks,
        source_version=source_version,
        max_slug_bytes=max_slug_bytes,
        runtimes=runtimes,
    )
    try:
        code = stream(conn, build_unit_argv(layout, command), on_line, BUILD_TIMEOUT)
    except BaseException:
        stop_unit(conn, layout)
        raise
    if on_ended is not None:
        on_ended()
    slug_limit = max_slug_bytes or MAX_SLUG_BYTES
    found = finish(
        conn,
        layout,
        [
            ("result.json", MAX_RESULT_BYTES, "-", "0600"),
            ("slug.tgz", slug_limit, layout.slug_copy, "0600"),
            ("cache-out.tar", cache_bytes, cache_next(layout), "0644"),
        ],
    )
    result = parse_build_result(_taken(found, "result.json"), code, slug_limit)
    copied = _taken(found, "slug.tgz") or ""
    if copied.split()[:2] != [result.sha256, str(result.size)]:
        raise DynoformError(
            "refused the build's slug.tgz: it is not the slug result.json names (sha256, size)",
            "a build must not change its results; see the build output above",
        )
    return result, _taken(found, "cache-out.tar") is not None


def cache_next(layout: BuildLayout) -> str:
    """Where root keeps a build's cache-out.tar until the build is known to have succeeded."""
    return f"{layout.cache_in}.next"


# Stops the unit (SIGKILL to all it has left) and waits until systemd says it is gone. A build
# that ended by itself (`systemd-run --wait` returned) is gone already, and the first look says
# so: no kill and stop then (two systemctl calls on the deploy's path, which did nothing).
_STOP_FN = """stop() {
  case $(systemctl show -p ActiveState --value -- "$1") in inactive|failed) return 0;; esac
  systemctl kill --signal=SIGKILL -- "$1" 2>/dev/null
  systemctl stop -- "$1" 2>/dev/null
  for _ in $(seq 100); do
    case $(systemctl show -p ActiveState --value -- "$1") in inactive|failed|"") return 0;; esac
    sleep 0.1
  done
  return 1
}
"""
_STOP = _STOP_FN + 'stop "$1"\n'
# The unit stopped, then the results taken (_COLLECT_ALL): one round trip. Exit 5: not stopped.
_FINISH = _STOP_FN + 'unit=$1; shift\nstop "$unit" || exit 5\nexec python3 -c "$@"\n'


def _not_stopped(layout: BuildLayout) -> DynoformError:
    return DynoformError(
        f"the build unit {layout.unit} did not stop; its results are not used",
        f"inspect the build host: systemctl status {layout.unit}",
    )


def stop_unit(conn: Connection, layout: BuildLayout) -> None:
    """None of the build's processes may remain when root looks at what it wrote."""
    stopped = conn.run(["sh", "-c", _STOP, "sh", f"{layout.unit}.service"], sudo=True, timeout=60)
    if not stopped.ok:
        raise _not_stopped(layout)


def finish(
    conn: Connection, layout: BuildLayout, files: list[tuple[str, int, str, str]]
) -> dict[str, dict[str, object]]:
    """Stop the build unit, then take these files (name, limit, dest, mode: see _COLLECT_FN)
    in the same round trip; name -> what _COLLECT_ALL found (read it with _taken)."""
    argv = ["sh", "-c", _FINISH, "sh", f"{layout.unit}.service"]
    argv += [_COLLECT_ALL, layout.work_dir, layout.user]  # `python3 -c "$@"` after the stop
    for name, limit, dest, mode in files:
        argv += [name, str(int(limit)), dest, mode]
    result = conn.run(argv, sudo=True, timeout=660)
    if result.exit_code == 5:
        raise _not_stopped(layout)
    if not result.ok:
        raise RemoteError(f"could not read the build's results: {result.stderr.strip()[-300:]}")
    found = json.loads(result.stdout)
    return found if isinstance(found, dict) else {}


def _taken(found: dict[str, dict[str, object]], name: str) -> str | None:
    """One file's text (content, or "SHA256 SIZE" of root's copy); None when the build did not
    write it; a refused file raises."""
    entry = found.get(name) or {"missing": True}
    if "refused" in entry:
        raise DynoformError(
            f"refused the build's {name}: it {str(entry['refused'])[:200]}; nothing of it was used",
            "a build must leave its results as plain files; see the build output above",
        )
    text = entry.get("text")
    return text if isinstance(text, str) else None


# What root does once the build succeeded, in one round trip: the build's cache becomes the
# app's cache on this host (KEEP 1) or is dropped, the slug and the host's cache (if it has
# one) are uploaded when their presigned URLs come (one curl config a line on stdin, an empty
# line for none: printf is the shell's own, so no URL reaches a command line), then the
# build's files go, in the background. Exit 3: the slug's upload failed; 4: the cache's.
_DELIVER = """set -e
work=$1 slug=$2 next=$3 cache=$4 keep=$5
IFS= read -r slug_url || true
IFS= read -r cache_url || true
if [ "$keep" = 1 ]; then mv -f -- "$next" "$cache"; else rm -f -- "$next"; fi
if [ -n "$slug_url" ]; then
  printf '%s\\n' "$slug_url" | curl -fsS --retry 3 -T "$slug" -K - || exit 3
fi
if [ -n "$cache_url" ] && [ -f "$cache" ]; then
  printf '%s\\n' "$cache_url" | curl -fsS --retry 3 -T "$cache" -K - || exit 4
fi
(umount -l -- "$work"; rm -rf -- "$work" "$slug") </dev/null >/dev/null 2>&1 &
"""


def deliver(
    conn: Connection,
    layout: BuildLayout,
    keep_cache: bool,
    slug_url: str | None,
    cache_url: str | None,
) -> None:
    """Keep the build's cache (see cache_next), upload the slug and the cache through these
    presigned URLs (None: no upload), and remove the build's files (see cleanup)."""
    argv = ["sh", "-c", _DELIVER, "sh", layout.work_dir, layout.slug_copy, cache_next(layout)]
    argv += [layout.cache_in, "1" if keep_cache else "0"]
    lines = b"".join(curl_config(u) if u else b"\n" for u in (slug_url, cache_url))
    result = conn.run(argv, sudo=True, stdin=lines, timeout=1200)
    if result.ok:
        return
    names = {3: Path(layout.slug_copy).name, 4: Path(layout.cache_in).name}
    what = names.get(result.exit_code, "the build's results")
    raise RemoteError(f"could not upload {what} from the build host: {result.stderr.strip()}")


# Remove a build's tmpfs, root's slug copy and a cache not kept in the background: the deploy
# need not wait for it; the detached commands hold nothing of the SSH channel.
_REMOVE_LATER = '(umount -l -- "$1"; rm -rf -- "$1" "$2" "$3") </dev/null >/dev/null 2>&1 &'


def cleanup(conn: Connection, layout: BuildLayout) -> None:
    argv = ["sh", "-c", _REMOVE_LATER, "sh", layout.work_dir, layout.slug_copy, cache_next(layout)]
    conn.run(argv, sudo=True)
