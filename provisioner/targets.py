"""Targets: where a platform lives. `local` is built in; AWS targets live in targets.toml.

Credentials are never stored here: boto3's usual chain (profile, env, instance role) provides them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner import paths
from provisioner.errors import DynoformError, ValidationError
from provisioner.localfiles import LocalCloud
from provisioner.model.names import validate_platform_name

LOCAL = "local"
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


@dataclass(frozen=True)
class Target:
    name: str
    kind: str = "aws"  # "local" or "aws"
    profile: str | None = None
    region: str = "us-east-1"
    platform: str = "dynoform"
    endpoint_url: str | None = None
    vpc_cidr: str | None = None
    domain: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    @property
    def cidr(self) -> str:
        return self.vpc_cidr or ("198.18.0.0/16" if self.is_local else "10.42.0.0/16")

    @property
    def app_domain(self) -> str:
        return self.domain or ("localhost" if self.is_local else f"{self.platform}.example.com")

    @property
    def local(self) -> LocalCloud | None:
        """On `local`, the local cloud's files: its endpoint, status, router log and CA."""
        return LocalCloud(paths.local_state_dir()) if self.is_local else None


LOCAL_TARGET = Target(name=LOCAL, kind="local", region="us-east-1", platform="dynoform")


def targets_file() -> Path:
    return paths.config_dir() / "targets.toml"


def validate_target_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValidationError(
            f"target name {name!r}", "lowercase letters, digits and dashes, a letter first"
        )
    return name


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """All targets: the built-in `local`, then those of targets.toml."""
    path = path or targets_file()
    result = {LOCAL: LOCAL_TARGET}
    if not path.exists():
        return result
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DynoformError(f"{path}: not valid TOML: {exc}", "fix or remove the file") from exc
    known = set(Target.__dataclass_fields__) - {"name"}
    for name, entry in data.get("targets", {}).items():
        fields = {k: v for k, v in entry.items() if k in known}
        result[name] = Target(name=name, **fields)
    return result


def get_target(name: str, path: Path | None = None) -> Target:
    targets = load_targets(path)
    if name not in targets:
        raise DynoformError(
            f"no target named {name!r}",
            f"known: {', '.join(targets)}; add one with `dynoform targets:add {name} --region R`",
        )
    return targets[name]


def _toml_value(value: object) -> str:
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_targets(targets: dict[str, Target]) -> str:
    lines = ["# dynoform targets; credentials come from boto3's usual chain, never from here", ""]
    for name, target in sorted(targets.items()):
        if name == LOCAL:
            continue
        lines.append(f"[targets.{name}]")
        for key, value in asdict(target).items():
            if key != "name" and value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def save_targets(targets: dict[str, Target], path: Path | None = None) -> None:
    path = path or targets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_targets(targets))
    tmp.replace(path)


def add_target(target: Target, path: Path | None = None) -> None:
    validate_target_name(target.name)
    if target.name == LOCAL:
        raise ValidationError("target name 'local'", "is built in and cannot be redefined")
    if not _REGION_RE.fullmatch(target.region):
        raise ValidationError(f"region {target.region!r}", "expected a region such as eu-west-1")
    validate_platform_name(target.platform)
    targets = load_targets(path)
    targets[target.name] = target
    save_targets(targets, path)


def remove_target(name: str, path: Path | None = None) -> None:
    targets = load_targets(path)
    if name == LOCAL:
        raise ValidationError("target 'local'", "is built in and cannot be removed")
    if name not in targets:
        raise DynoformError(f"no target named {name!r}", "see `dynoform targets`")
    del targets[name]
    save_targets(targets, path)
