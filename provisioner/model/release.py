"""Releases: slug + config + process types, numbered v1, v2, ..."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model.names import validate_process_type

STATUSES = ("pending", "succeeded", "failed")


@dataclass
class Release:
    version: int
    description: str
    created_by: str
    created_at: str
    status: str = "pending"
    slug_key: str | None = None
    slug_sha256: str | None = None
    slug_size: int | None = None
    process_types: dict[str, str] = field(default_factory=dict)
    release_command: str | None = None
    config_version: int = 0
    stack: str = "debian-13"
    build_id: str | None = None

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValidationError("release version", "must be 1 or more")
        if self.status not in STATUSES:
            raise ValidationError("release status", "must be one of " + ", ".join(STATUSES))
        # Process types come from a build's output: untrusted until checked here, before any
        # document or unit is made of them.
        for name, command in self.process_types.items():
            validate_process_type(name)
            if not isinstance(command, str) or not command.strip() or "\0" in command:
                raise ValidationError(f"command of process type {name!r}", "must be a command")

    @property
    def name(self) -> str:
        return f"v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_version(text: str) -> int:
    """`v12` or `12` -> 12."""
    raw = text[1:] if text[:1] in ("v", "V") else text
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationError(f"release {text!r}", "expected a version such as v3")
    return int(raw)
