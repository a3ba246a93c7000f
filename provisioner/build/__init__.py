"""Builds: the pure side the deploy executor uses to run the build runner on a host.

`runner.py` (next to this file) is shipped to hosts and run there with the host's python3; its
pure helpers are re-exported here. This module adds what the executor needs on the client side:
where things live on a build host, the runner's argv, the `systemd-run` argv that runs it as a
transient unit, and the parser of the runner's JSON result. No I/O here.
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
from provisioner.model.names import validate_app_name

__all__ = [
    "BUILTIN_ORDER",
    "BUILD_USER",
    "MAX_SLUG_BYTES",
    "RUNNER_SOURCE",
    "BuildLayout",
    "BuildResult",
    "build_layout",
    "build_unit_argv",
    "buildpack_clone_argv",
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
BUILDS_DIR = "/srv/dynoform/builds"  # one work dir per build
CACHE_ROOT = "/srv/dynoform/cache"  # one build cache dir per app (also kept in S3)
BUILD_USER = "dynoform-build"  # unprivileged user the runner role creates
HOST_PYTHON = "/usr/bin/python3"
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
    source: str
    source_url: str
    slug: str
    result: str
    log: str
    cache_in: str
    cache_out: str
    runner: str = f"{BUILD_ROOT}/runner.py"
    buildpacks_dir: str = f"{BUILD_ROOT}/buildpacks"

    @property
    def unit(self) -> str:
        return f"dynoform-build-{self.app}-{self.build_id}"

    def buildpack_dir(self, index: int) -> str:
        """Where the app's Nth explicit buildpack goes (cloned or uploaded) for this build."""
        return f"{self.work_dir}/buildpacks/{int(index)}"


def build_layout(app: str, build_id: str) -> BuildLayout:
    validate_app_name(app)
    if not _BUILD_ID_RE.fullmatch(build_id):
        raise ValidationError(f"build id {build_id!r}", "must be lowercase letters, digits, dashes")
    work = f"{BUILDS_DIR}/{app}/{build_id}"
    return BuildLayout(
        app=app,
        build_id=build_id,
        work_dir=work,
        app_dir=f"{work}/app",
        cache_dir=f"{CACHE_ROOT}/{app}",
        env_dir=f"{work}/env",
        source=f"{work}/source.tgz",
        source_url=f"{work}/source.url",
        slug=f"{work}/slug.tgz",
        result=f"{work}/result.json",
        log=f"{work}/build.log",
        cache_in=f"{work}/cache-in.tgz",
        cache_out=f"{work}/cache-out.tgz",
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
    use_cache_tarballs: bool = False,
    source_from_url: bool = False,
    python: str = HOST_PYTHON,
    max_slug_bytes: int | None = None,
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
    if use_cache_tarballs:
        argv += [
            "--cache-in",
            _safe_path(layout.cache_in),
            "--cache-out",
            _safe_path(layout.cache_out),
        ]
    if max_slug_bytes is not None:
        argv += ["--max-slug-bytes", str(int(max_slug_bytes))]
    if source_version:
        if not re.fullmatch(r"[0-9a-fA-F]{7,64}", source_version):
            raise ValidationError("source version", "must be a commit id (hex)")
        argv += ["--source-version", source_version]
    return argv


def build_unit_argv(
    layout: BuildLayout,
    command: list[str],
    *,
    user: str = BUILD_USER,
    memory_max: str = "2G",
    runtime_max_sec: int = 900,
    tasks_max: int = 4096,
) -> list[str]:
    """`systemd-run` argv that runs `command` (usually runner_argv(...)) as a transient unit:
    unprivileged user, the build dir bind-mounted at /app, memory and time limits (15 minutes,
    like Heroku), output piped back to the caller (over SSH) and the exit status returned.

    The caller prepares (as root) layout.work_dir, layout.app_dir and layout.cache_dir owned by
    `user`, and layout.env_dir with files 0600 owned by `user`."""
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise ValidationError(f"user {user!r}", "must be a POSIX user name")
    if not re.fullmatch(r"[0-9]+[KMGT]?", memory_max):
        raise ValidationError(f"memory limit {memory_max!r}", "must be bytes or a K/M/G/T size")
    properties = [
        f"User={user}",
        f"Group={user}",
        f"BindPaths={_safe_path(layout.app_dir)}:/app",
        "WorkingDirectory=/app",
        f"MemoryMax={memory_max}",
        "MemorySwapMax=0",
        f"RuntimeMaxSec={int(runtime_max_sec)}",
        f"TasksMax={int(tasks_max)}",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        f"ReadWritePaths={_safe_path(layout.work_dir)} {_safe_path(layout.cache_dir)}",
        "IPAddressDeny=169.254.169.254",
        "KillMode=control-group",
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


_GIT_URL_RE = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9._~/%+-]+")
_GIT_REF_RE = re.compile(r"[A-Za-z0-9._/-]+")


def buildpack_clone_argv(url: str, dest: str, *, user: str = BUILD_USER) -> list[str]:
    """argv that clones a buildpack git URL (`https://host/repo.git#ref`, Heroku's form: ref is
    a branch or tag) on the build host, as the unprivileged build user, never prompting."""
    repo, _, ref = url.partition("#")
    if not _GIT_URL_RE.fullmatch(repo):
        raise ValidationError(
            f"buildpack URL {url!r}", "must be an https:// git URL, optionally with #branch-or-tag"
        )
    if ref and (not _GIT_REF_RE.fullmatch(ref) or ref.startswith("-")):
        raise ValidationError(f"buildpack ref {ref!r}", "must be a branch or tag name")
    argv = ["runuser", "-u", user, "--", "env", "GIT_TERMINAL_PROMPT=0"]
    argv += ["git", "clone", "--quiet", "--depth", "1"]
    if ref:
        argv += ["--branch", ref]
    return argv + ["--", repo, _safe_path(dest)]


@dataclass(frozen=True)
class BuildResult:
    """What the runner reports after a successful build."""

    sha256: str
    size: int
    buildpack: str
    process_types: dict[str, str]
    release_command: str | None
    duration_s: float


def parse_build_result(text: str | None, exit_status: int | None = None) -> BuildResult:
    """Parse the runner's result JSON; a failed build raises DynoformError with its message.

    `text` is None when the result file is missing: the unit was stopped before the runner
    could write it (over RuntimeMaxSec or MemoryMax, or killed)."""
    if text is None:
        raise DynoformError(
            f"the build stopped without a result (exit status {exit_status})",
            "a build may run 15 minutes and use the build unit's memory limit; see the output above",
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DynoformError(f"the build runner wrote an unreadable result: {exc}") from exc
    if not isinstance(data, dict):
        raise DynoformError("the build runner wrote an unreadable result: not an object")
    if not data.get("ok"):
        raise DynoformError(
            f"build failed ({data.get('stage', '?')}): {data.get('error', 'no message')}",
            "see the build output above",
        )
    sha = str(data.get("sha256", ""))
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise DynoformError("the build runner reported no valid slug sha256")
    types = data.get("process_types") or {}
    release = data.get("release_command")
    return BuildResult(
        sha256=sha,
        size=int(data["size"]),
        buildpack=str(data.get("buildpack", "")),
        process_types={str(k): str(v) for k, v in dict(types).items()},
        release_command=str(release) if release else None,
        duration_s=float(data.get("duration_s", 0.0)),
    )
