"""Running a build on a fleet host over SSH: tooling, inputs, the transient unit, the slug.

Hosts hold no AWS credentials: the source, the build cache and the slug move through
presigned URLs, handed to curl on stdin (never on a command line).
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
from provisioner.build import (
    BUILD_ROOT,
    RUNNER_SOURCE,
    BuildLayout,
    BuildResult,
    build_unit_argv,
    buildpack_clone_argv,
    parse_build_result,
    runner_argv,
)
from provisioner.errors import DynoformError
from provisioner.remote.ssh import Connection, RemoteError

BUILD_TIMEOUT = 15 * 60 + 60
# Builds run as the runner role's unprivileged user, which owns /srv/dynoform/{builds,cache}.
BUILD_USER = "dynoform"
OutputFn = Callable[[str], None]

# Writes one file per config var into the env dir from JSON on stdin (values never on argv).
_WRITE_ENV = (
    "import json,os,sys\n"
    "d,user=sys.argv[1],sys.argv[2]\n"
    "import pwd; pw=pwd.getpwnam(user)\n"
    "for k,v in json.load(sys.stdin).items():\n"
    "    p=os.path.join(d,k)\n"
    "    fd=os.open(p,os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o600)\n"
    "    os.write(fd,v.encode()); os.fchown(fd,pw.pw_uid,pw.pw_gid); os.close(fd)\n"
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


def ensure_tooling(conn: Connection) -> bool:
    """Install the runner and buildpacks under BUILD_ROOT unless this version is there."""
    data, version = tooling_bundle()
    marker = f"{BUILD_ROOT}/.version"
    have = conn.run(["cat", marker], sudo=True)
    if have.ok and have.stdout.strip() == version:
        return False
    script = (
        'set -e; id -u "$2" >/dev/null 2>&1 || useradd --system --no-create-home '
        '--shell /usr/sbin/nologin "$2"; '
        'new="$1.new"; rm -rf -- "$new"; mkdir -p -- "$new"; '
        'tar -xzf - -C "$new"; chmod -R a+rX "$new"; echo "$3" > "$new/.version"; '
        'rm -rf -- "$1.old"; if [ -d "$1" ]; then mv -- "$1" "$1.old"; fi; mv -- "$new" "$1"; '
        'rm -rf -- "$1.old"'
    )
    conn.run(
        ["sh", "-c", script, "sh", BUILD_ROOT, BUILD_USER, version],
        sudo=True,
        stdin=data,
        check=True,
    )
    return True


NODE_PACKAGES = ["nodejs", "npm"]
_NODE_WORD = re.compile(r"(^|[\s/;&|])(node|npm|npx|yarn)(\s|$)")


def needs_node(source_names: list[str] | None = None, commands: list[str] | None = None) -> bool:
    """A Node.js app: package.json at the top of the source, or a process that runs node/npm."""
    if source_names and any(n.lstrip("./") == "package.json" for n in source_names):
        return True
    return any(_NODE_WORD.search(c) for c in commands or [])


def ensure_node(conn: Connection, say: Callable[[str], None]) -> None:
    """Install Debian's nodejs and npm on a host the first time a Node.js app needs them."""
    if conn.run(["sh", "-c", "command -v node && command -v npm"]).ok:
        return
    say(f"installing Node.js on {conn.endpoint.name} (once per host)")
    apt_install(conn, NODE_PACKAGES)


def apt_install(conn: Connection, packages: list[str]) -> None:
    """Install Debian packages on a host (quietly; up to 15 minutes for a slow mirror)."""
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
        'apt-get install -y -qq --no-install-recommends "$@" >/dev/null'
    )
    conn.run(["sh", "-c", script, "sh", *packages], sudo=True, timeout=900, check=True)


def stage_buildpacks(conn: Connection, layout: BuildLayout, packs: list[str]) -> list[str]:
    """The app's buildpacks as directories on the build host, in order.

    A git URL is cloned there (as the build user), a directory on this machine is uploaded, and
    anything else names a directory already on the build hosts.
    """
    staged = []
    for index, pack in enumerate(packs):
        dest = layout.buildpack_dir(index)
        local = Path(pack).expanduser()
        if pack.startswith("https://"):
            conn.run(
                ["install", "-d", "-o", BUILD_USER, "-g", BUILD_USER, dest], sudo=True, check=True
            )
            conn.run(["rmdir", dest], sudo=True, check=True)
            result = conn.run(
                buildpack_clone_argv(pack, dest, user=BUILD_USER), sudo=True, timeout=300
            )
            if not result.ok:
                raise DynoformError(
                    f"could not clone buildpack {pack}: {result.stderr.strip()[-300:]}",
                    "check the URL; build hosts need git and network access to it",
                )
        elif local.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(local, arcname=".", filter=_fixed)
            script = 'set -e; mkdir -p "$1"; tar -xzf - -C "$1"; chmod -R a+rX "$1"'
            conn.run(["sh", "-c", script, "sh", dest], sudo=True, stdin=buf.getvalue(), check=True)
        else:
            dest = pack
        staged.append(dest)
    return staged


def curl_config(url: str, extra: str = "") -> bytes:
    """A curl config (read with `-K -`) so the presigned URL stays off the command line."""
    return f'url = "{url}"\n{extra}'.encode()


def prepare(conn: Connection, layout: BuildLayout, config: dict[str, str], source_url: str) -> None:
    owner = f"{BUILD_USER}:{BUILD_USER}"
    conn.run(["rm", "-rf", "--", layout.work_dir], sudo=True, check=True)
    conn.run(
        [
            "install",
            "-d",
            "-o",
            BUILD_USER,
            "-g",
            BUILD_USER,
            "-m",
            "0700",
            layout.work_dir,
            layout.app_dir,
            layout.cache_dir,
            layout.env_dir,
        ],
        sudo=True,
        check=True,
    )
    conn.run(
        ["python3", "-c", _WRITE_ENV, layout.env_dir, BUILD_USER],
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
    conn.run(["chown", owner, layout.source], sudo=True, check=True)


def restore_cache(conn: Connection, layout: BuildLayout, cache_url: str | None) -> bool:
    """Fill an empty cache dir from the app's cache in S3 (a build on a host new to the app)."""
    if cache_url is None:
        return False
    empty = conn.run(
        ["find", layout.cache_dir, "-mindepth", "1", "-maxdepth", "1", "-print", "-quit"], sudo=True
    )
    if empty.stdout.strip():
        return False
    script = 'set -e; curl -fsS -K - | tar -xzf - -C "$1"; chown -R "$2:$2" "$1"'
    result = conn.run(
        ["sh", "-c", script, "sh", layout.cache_dir, BUILD_USER],
        sudo=True,
        stdin=curl_config(cache_url),
        timeout=300,
    )
    return result.ok


def stream(conn: Connection, argv: list[str], on_line: OutputFn, timeout: float) -> int:
    """Run argv as root, calling on_line for each line of output as it comes; the exit status."""
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
) -> BuildResult:
    command = runner_argv(
        layout, buildpacks, source_version=source_version, max_slug_bytes=max_slug_bytes
    )
    code = stream(conn, build_unit_argv(layout, command, user=BUILD_USER), on_line, BUILD_TIMEOUT)
    result = conn.run(["cat", layout.result], sudo=True)
    return parse_build_result(result.stdout if result.ok else None, code)


def upload(conn: Connection, path: str, url: str) -> None:
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


def upload_cache(conn: Connection, layout: BuildLayout, url: str) -> None:
    """Keep the app's build cache in S3, for builds that land on another host."""
    config_path = f"{layout.work_dir}/cache-upload.curl"
    conn.put(curl_config(url), config_path, mode="0600")
    script = 'set -e; tar -czf - -C "$1" . | curl -fsS -T - -K "$2"'
    conn.run(["sh", "-c", script, "sh", layout.cache_dir, config_path], sudo=True, timeout=600)


# Remove a build's directory in the background: the deploy need not wait for it (0.03-0.09 s
# for the python example's files); the detached rm holds nothing of the SSH channel.
_REMOVE_LATER = '(rm -rf -- "$1" </dev/null >/dev/null 2>&1 &)'


def cleanup(conn: Connection, layout: BuildLayout) -> None:
    conn.run(["sh", "-c", _REMOVE_LATER, "sh", layout.work_dir], sudo=True)
