"""Builds: the pure side the deploy executor uses to run the build runner on a host.

`runner.py` (next to this file) is shipped to hosts and run there with the host's python3; its
pure helpers are re-exported here. This module adds what the executor needs on the client side:
where things live on a build host, the runner's argv, the `systemd-run` argv that runs it as a
transient unit, and the parser of the runner's JSON result. No I/O here.

Tenancy: an app builds as its own dyno user (`dyno-<app>`, plan/units.py), in a sandbox like a
dyno's: all of /srv hidden except the build's own directory (a size-capped tmpfs root mounts
there) and the tooling; the build's output is untrusted input to everything after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from provisioner.build.runner import (
    BUILTIN_ORDER,
    MAX_SLUG_BYTES,
    merge_process_types,
    parse_procfile,
    parse_release_yaml,
    parse_slugignore,
    slugignore_matches,
)
from provisioner.errors import DynoformError, ValidationError
from provisioner.model.names import validate_app_name, validate_process_type
from provisioner.plan.runtimes import RUNTIMES_ROOT
from provisioner.plan.units import app_user

__all__ = [
    "BUILTIN_ORDER",
    "MAX_RESULT_BYTES",
    "MAX_SLUG_BYTES",
    "RUNNER_SOURCE",
    "BuildLayout",
    "BuildResult",
    "build_disk_bytes",
    "build_layout",
    "build_unit_argv",
    "build_user",
    "neutralise",
    "merge_process_types",
    "parse_build_result",
    "parse_procfile",
    "parse_release_yaml",
    "parse_slugignore",
    "runner_argv",
    "slugignore_matches",
]

RUNNER_SOURCE = Path(__file__).with_name("runner.py")  # the file the deploy uploads once per host
BUILD_ROOT = "/srv/dynoform/build"  # runner.py and buildpacks/ on the host
BUILDS_DIR = "/srv/dynoform/builds"  # root 0711; <app>/ root 0711; <app>/<build>/ the build's tmpfs
CACHE_ROOT = "/srv/dynoform/cache"  # root 0700: <app>.tar, each app's build cache (also in S3)
HOST_PYTHON = "/usr/bin/python3"
MAX_RESULT_BYTES = 256 * 1024  # result.json is a few KB; anything larger is not a runner's
# A build's writable space (its dir, /app, /tmp, /var/tmp, the cache while it builds) is one
# tmpfs of this size, 4x the slug limit (a slug is gzip of /app: 2 GB for the 500 MB default).
BUILD_DISK_PER_SLUG = 4
MIN_BUILD_DISK_BYTES = 64 * 1024 * 1024
_BUILD_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._/@+-]*")


@dataclass(frozen=True)
class BuildLayout:
    """Paths of one build on a build host. `app_dir` is bind-mounted at /app in the unit;
    `work_dir` holds the inputs and outputs, `cache_dir` survives between builds of the app."""

    app: str
    build_id: str
    work_dir: str
    app_dir: str
    cache_dir: str
    env_dir: str
    tmp_dir: str
    source: str
    source_url: str
    slug: str
    result: str
    log: str
    cache_in: str
    cache_out: str
    slug_copy: str
    runner: str = f"{BUILD_ROOT}/runner.py"
    buildpacks_dir: str = f"{BUILD_ROOT}/buildpacks"

    @property
    def unit(self) -> str:
        return f"dynoform-build-{self.app}-{self.build_id}"

    @property
    def user(self) -> str:
        return build_user(self.app)

    @property
    def buildpacks_in(self) -> str:
        """Where root puts the app's explicit buildpacks (tarballs from the bucket) for the build,
        which unpacks them into writable copies of its own."""
        return f"{self.work_dir}/buildpacks"

    def buildpack_tarball(self, index: int, name: str) -> str:
        """The app's Nth explicit buildpack, named for the runner (`0-heroku-buildpack-python`)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,60}", name) or name.startswith("."):
            raise ValidationError(f"buildpack name {name!r}", "must be letters, digits, . _ -")
        return f"{self.buildpacks_in}/{int(index)}-{name}.tgz"


def build_user(app: str) -> str:
    """The Unix user an app builds as: its own dyno user, so a build is walled off from other
    apps' builds and dynos like a dyno is (uid in the dyno range the metadata block covers)."""
    return app_user(app)


def build_disk_bytes(max_slug_bytes: int | None = None) -> int:
    """Size of a build's tmpfs: BUILD_DISK_PER_SLUG times the slug limit, at least 64 MB."""
    slug = MAX_SLUG_BYTES if max_slug_bytes is None else int(max_slug_bytes)
    return max(MIN_BUILD_DISK_BYTES, BUILD_DISK_PER_SLUG * slug)


def build_layout(app: str, build_id: str) -> BuildLayout:
    """Everything the build writes is under work_dir (its tmpfs); root's copy of the slug and
    the app's cache tarball live beside it in root-only places."""
    validate_app_name(app)
    if not _BUILD_ID_RE.fullmatch(build_id):
        raise ValidationError(f"build id {build_id!r}", "must be lowercase letters, digits, dashes")
    work = f"{BUILDS_DIR}/{app}/{build_id}"
    return BuildLayout(
        app=app,
        build_id=build_id,
        work_dir=work,
        app_dir=f"{work}/app",
        cache_dir=f"{work}/cache",
        env_dir=f"{work}/env",
        tmp_dir=f"{work}/tmp",
        source=f"{work}/source.tgz",
        source_url=f"{work}/source.url",
        slug=f"{work}/slug.tgz",
        result=f"{work}/result.json",
        log=f"{work}/build.log",
        cache_in=f"{CACHE_ROOT}/{app}.tar",
        cache_out=f"{work}/cache-out.tar",
        slug_copy=f"{BUILDS_DIR}/{app}/{build_id}.slug.tgz",
    )


def _safe_path(path: str) -> str:
    """Paths go into systemd properties, where spaces and specials would split or escape."""
    if not _SAFE_PATH_RE.fullmatch(path) or ".." in path.split("/"):
        raise ValidationError(f"path {path!r}", "must be absolute, with no spaces or specials")
    return path


def runner_argv(
    layout: BuildLayout,
    buildpacks: list[str] | None = None,
    *,
    source_version: str | None = None,
    source_from_url: bool = False,
    python: str = HOST_PYTHON,
    max_slug_bytes: int | None = None,
    runtimes: list[str] | None = None,
) -> list[str]:
    """The runner command inside the unit. `buildpacks`: explicit buildpack dirs on the host,
    in order (empty: detect among the built-in ones). `source_from_url`: the runner fetches the
    source itself from the presigned URL in layout.source_url (a file, so the URL stays off
    command lines) instead of reading layout.source."""
    source = (
        ["--source-url-file", layout.source_url] if source_from_url else ["--source", layout.source]
    )
    argv = [
        python,
        _safe_path(layout.runner),
        source[0],
        _safe_path(source[1]),
        "--app-dir",
        "/app",
        "--cache-dir",
        _safe_path(layout.cache_dir),
        "--env-dir",
        _safe_path(layout.env_dir),
        "--slug-out",
        _safe_path(layout.slug),
        "--result",
        _safe_path(layout.result),
        "--log",
        _safe_path(layout.log),
    ]
    if buildpacks:
        for pack in buildpacks:
            argv += ["--buildpack", _safe_path(pack)]
    else:
        argv += ["--buildpacks-dir", _safe_path(layout.buildpacks_dir)]
    # The cache comes in as the app's tarball (bind-mounted read-only when there is one) and
    # goes out as a tarball in the build's tmpfs, which root then keeps: so the cache, too,
    # grows only inside the capped space.
    argv += ["--cache-in", _safe_path(layout.cache_in)]
    argv += ["--cache-out", _safe_path(layout.cache_out)]
    if max_slug_bytes is not None:
        argv += ["--max-slug-bytes", str(int(max_slug_bytes))]
    for runtime in runtimes or []:  # KIND=DIR, DIR under RUNTIMES_ROOT (bound read-only)
        kind, _, path = runtime.partition("=")
        if not re.fullmatch(r"[a-z]+", kind) or not path.startswith(RUNTIMES_ROOT + "/"):
            raise ValidationError(f"runtime {runtime!r}", f"must be KIND={RUNTIMES_ROOT}/...")
        argv += ["--runtime", f"{kind}={_safe_path(path)}"]
    if source_version:
        if not re.fullmatch(r"[0-9a-fA-F]{7,64}", source_version):
            raise ValidationError("source version", "must be a commit id (hex)")
        argv += ["--source-version", source_version]
    return argv


METADATA_ADDRESSES = "169.254.169.254 fd00:ec2::254"


def build_unit_argv(
    layout: BuildLayout,
    command: list[str],
    *,
    memory_max: str = "2G",
    runtime_max_sec: int = 900,
    tasks_max: int = 4096,
) -> list[str]:
    """`systemd-run` argv that runs `command` (usually runner_argv(...)) as a transient unit:
    the app's own user, sandboxed like a dyno, memory and time limits (15 minutes, like Heroku),
    output piped back to the caller (over SSH) and the exit status returned.

    The caller (root) mounts the build's tmpfs at layout.work_dir (owned by layout.user, 0700)
    with app/, cache/, env/ and tmp/ in it. Inside, /srv shows only that directory, the tooling
    and the app's cache tarball; /app, /tmp, /var/tmp, /dev/shm and /run/lock (the places a
    process may write) are directories of the same tmpfs, so everything the build writes counts
    against its size (PrivateTmp's /tmp would be on the host's disk, /dev/shm and /run/lock
    the host's own). Other users' processes are invisible (ProtectProc=invisible).
    ProcSubset=pid is not set: it hides /proc/cpuinfo, /proc/meminfo and /proc/stat, which
    node (os.cpus()), npm and native-extension builds read."""
    if not re.fullmatch(r"[0-9]+[KMGT]?", memory_max):
        raise ValidationError(f"memory limit {memory_max!r}", "must be bytes or a K/M/G/T size")
    work = _safe_path(layout.work_dir)
    tmp = _safe_path(layout.tmp_dir)
    properties = [
        f"User={layout.user}",
        f"Group={layout.user}",
        "TemporaryFileSystem=/srv:ro",
        f"BindReadOnlyPaths={_safe_path(BUILD_ROOT)}",
        f"BindReadOnlyPaths=-{_safe_path(RUNTIMES_ROOT)}",
        f"BindReadOnlyPaths=-{_safe_path(layout.cache_in)}",
        f"BindPaths={work}",
        f"BindPaths={_safe_path(layout.app_dir)}:/app",
        "PrivateTmp=yes",
        f"BindPaths={tmp}:/tmp",
        f"BindPaths={tmp}:/var/tmp",
        f"BindPaths={tmp}:/dev/shm",
        f"BindPaths={tmp}:/run/lock",
        "WorkingDirectory=/app",
        f"MemoryMax={memory_max}",
        "MemorySwapMax=0",
        f"RuntimeMaxSec={int(runtime_max_sec)}",
        f"TasksMax={int(tasks_max)}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ProtectProc=invisible",
        "PrivateDevices=yes",
        "PrivateIPC=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        f"IPAddressDeny={METADATA_ADDRESSES}",
        # When the runner ends, whatever it left behind gets SIGTERM, and SIGKILL 5 s later;
        # `systemd-run --wait` returns only then, before root looks at the results.
        "KillMode=control-group",
        "TimeoutStopSec=5",
        "Environment=HOME=/tmp LANG=C.UTF-8",
    ]
    argv = [
        "systemd-run",
        f"--unit={layout.unit}",
        "--description=dynoform build",
        "--service-type=exec",
        "--wait",
        "--pipe",
        "--collect",
        "--quiet",
    ]
    for prop in properties:
        argv += ["-p", prop]
    return argv + ["--", *command]


@dataclass(frozen=True)
class BuildResult:
    """What the runner reports after a successful build."""

    sha256: str
    size: int
    buildpack: str
    process_types: dict[str, str]
    release_command: str | None
    duration_s: float


MAX_PROCESS_TYPES = 100
MAX_COMMAND_CHARS = 8192
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def neutralise(text: str) -> str:
    """Build output made safe for a terminal: control characters (ESC, BEL, CR, the 8-bit CSI
    and OSC, ...) become visible `\\x1b`-style text, so a buildpack cannot retitle, clear or
    otherwise drive the user's terminal. Tabs stay; lines come without their newline, and the
    CR of a CRLF line ending goes."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text.removesuffix("\r"))


def _untrusted(message: str) -> DynoformError:
    return DynoformError(
        f"the build wrote an invalid result.json: {message}",
        "the build's own code may have changed it; see the build output above",
    )


def _text(data: dict[str, object], key: str, limit: int, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise _untrusted(f"{key} must be text of at most {limit} characters")
    return value


def _process_types(data: dict[str, object]) -> dict[str, str]:
    types = data.get("process_types") or {}
    if not isinstance(types, dict) or len(types) > MAX_PROCESS_TYPES:
        raise _untrusted(f"process_types must be a mapping of at most {MAX_PROCESS_TYPES} types")
    checked: dict[str, str] = {}
    for name, command in types.items():
        try:
            validate_process_type(name)
        except ValidationError as exc:
            raise _untrusted(f"{exc.message}") from exc
        checked[name] = _text({name: command}, name, MAX_COMMAND_CHARS)
        if not checked[name].strip():
            raise _untrusted(f"process type {name!r} has no command")
    return checked


def parse_build_result(
    text: str | None, exit_status: int | None = None, max_slug_bytes: int = MAX_SLUG_BYTES
) -> BuildResult:
    """Parse the runner's result JSON; a failed build raises DynoformError with its message.

    The build's own code could have written the file, so every field is checked as untrusted
    input: process type names by the Procfile rule, the sha256 as 64 hex digits, the size
    within the slug limit. `text` is None when the result file is missing: the unit was
    stopped before the runner could write it (over RuntimeMaxSec or MemoryMax, or killed)."""
    if text is None:
        raise DynoformError(
            f"the build stopped without a result (exit status {exit_status})",
            "a build may run 15 minutes and use the build unit's memory limit; see the output above",
        )
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DynoformError(f"the build runner wrote an unreadable result: {exc}") from exc
    if not isinstance(data, dict):
        raise DynoformError("the build runner wrote an unreadable result: not an object")
    if data.get("ok") is not True:
        stage = neutralise(_text(data, "stage", 40, "?"))
        error = neutralise(_text(data, "error", 4000, "no message"))
        raise DynoformError(f"build failed ({stage}): {error}", "see the build output above")
    sha = data.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise DynoformError("the build runner reported no valid slug sha256")
    size = data.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= max_slug_bytes:
        raise _untrusted(f"size must be a whole number of bytes up to {max_slug_bytes}")
    release = _text(data, "release_command", MAX_COMMAND_CHARS)
    duration = data.get("duration_s", 0.0)
    return BuildResult(
        sha256=sha,
        size=size,
        buildpack=neutralise(_text(data, "buildpack", 200)),
        process_types=_process_types(data),
        release_command=release if release.strip() else None,
        duration_s=float(duration) if isinstance(duration, (int, float)) else 0.0,
    )
