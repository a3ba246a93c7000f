"""The Procfile: process types and their commands, in Heroku's format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from provisioner.errors import ValidationError

_LINE_RE = re.compile(r"([A-Za-z0-9_-]+)[ \t]*:[ \t]*(.*)")
RELEASE_TYPE = "release"
ONE_OFF_TYPE = "run"  # one-off dynos are run.N
SCHEDULER_TYPE = "scheduler"  # cron runs are one-off dynos named scheduler.N
ONE_OFF_TYPES = (ONE_OFF_TYPE, SCHEDULER_TYPE)


@dataclass(frozen=True)
class Procfile:
    """Process types in file order; `release` is the release-phase command, not a dyno type."""

    processes: dict[str, str] = field(default_factory=dict)

    @property
    def release_command(self) -> str | None:
        return self.processes.get(RELEASE_TYPE)

    @property
    def dyno_types(self) -> dict[str, str]:
        return {k: v for k, v in self.processes.items() if k != RELEASE_TYPE}

    def render(self) -> str:
        return "".join(f"{name}: {command}\n" for name, command in self.processes.items())


def parse_procfile(text: str) -> Procfile:
    """Parse Procfile text; errors name the line number and what is wrong."""
    processes: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.fullmatch(line)
        if not match:
            raise ValidationError(
                f"Procfile line {number}",
                "expected 'type: command' with a type of letters, digits, '_' or '-'",
            )
        name, command = match.group(1), match.group(2).strip()
        if not command:
            raise ValidationError(
                f"Procfile line {number}", f"process type {name!r} has no command"
            )
        if name in ONE_OFF_TYPES:
            raise ValidationError(
                f"Procfile line {number}",
                f"process type {name!r} is reserved for one-off dynos (`dynoform run`, cron)",
            )
        if name in processes:
            raise ValidationError(
                f"Procfile line {number}",
                f"process type {name!r} is defined twice (first on line {first_line[name]})",
            )
        processes[name] = command
        first_line[name] = number
    return Procfile(processes)
