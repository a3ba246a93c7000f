"""Formation: how many dynos of each process type, and of which size."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.errors import ValidationError
from provisioner.model.names import validate_process_type
from provisioner.model.sizes import DEFAULT_SIZE, dyno_size

MAX_QUANTITY = 100
_SCALE_RE = re.compile(r"([A-Za-z0-9_-]+)(=|\+|-)(\d+)(?::([a-z0-9-]+))?")


@dataclass(frozen=True)
class ProcessFormation:
    quantity: int
    size: str = DEFAULT_SIZE

    def to_dict(self) -> dict[str, object]:
        return {"quantity": self.quantity, "size": self.size}


Formation = dict[str, ProcessFormation]


def validate_quantity(process_type: str, quantity: int) -> int:
    if not 0 <= quantity <= MAX_QUANTITY:
        raise ValidationError(
            f"quantity of {process_type}", f"must be between 0 and {MAX_QUANTITY}, got {quantity}"
        )
    return quantity


def formation_from_dict(data: Mapping[str, Mapping[str, object]]) -> Formation:
    result: Formation = {}
    for name, entry in data.items():
        validate_process_type(name)
        quantity = int(str(entry.get("quantity", 0)))
        size = str(entry.get("size", DEFAULT_SIZE))
        dyno_size(size)
        result[name] = ProcessFormation(validate_quantity(name, quantity), size)
    return result


def formation_to_dict(formation: Formation) -> dict[str, dict[str, object]]:
    """The stored form; what formation_from_dict would refuse is refused before it is written."""
    for name, pf in formation.items():
        validate_process_type(name)
        validate_quantity(name, pf.quantity)
        dyno_size(pf.size)
    return {name: pf.to_dict() for name, pf in sorted(formation.items())}


def apply_scale(formation: Formation, requests: list[str], known_types: set[str]) -> Formation:
    """Apply `web=3`, `web+1`, `worker-1`, `web=2:standard-2x` to a formation (pure)."""
    result = dict(formation)
    for text in requests:
        match = _SCALE_RE.fullmatch(text)
        if not match:
            raise ValidationError(
                f"scale request {text!r}", "expected TYPE=N, TYPE+N, TYPE-N or TYPE=N:SIZE"
            )
        name, op, amount, size = match.group(1), match.group(2), int(match.group(3)), match.group(4)
        if name not in known_types:
            known = ", ".join(sorted(known_types)) or "none yet"
            raise ValidationError(
                f"process type {name!r}", f"is not in the Procfile (known: {known})"
            )
        current = result.get(name, ProcessFormation(0))
        quantity = {"=": amount, "+": current.quantity + amount, "-": current.quantity - amount}[op]
        new_size = dyno_size(size).name if size else current.size
        result[name] = ProcessFormation(validate_quantity(name, quantity), new_size)
    return result


def apply_resize(formation: Formation, requests: list[str], known_types: set[str]) -> Formation:
    """Apply `web=standard-2x` requests (ps:type)."""
    result = dict(formation)
    for text in requests:
        name, sep, size = text.partition("=")
        if not sep:
            raise ValidationError(f"type request {text!r}", "expected TYPE=SIZE")
        if name not in known_types:
            raise ValidationError(f"process type {name!r}", "is not in the Procfile")
        current = result.get(name, ProcessFormation(0))
        result[name] = ProcessFormation(current.quantity, dyno_size(size).name)
    return result


def default_formation(process_types: list[str], current: Formation) -> Formation:
    """Heroku's default: on the first release of a type, `web` gets one dyno, others none."""
    result = {k: v for k, v in current.items() if k in process_types}
    for name in process_types:
        if name not in result:
            result[name] = ProcessFormation(1 if name == "web" else 0)
    return result
