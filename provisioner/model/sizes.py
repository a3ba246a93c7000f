"""Dyno sizes: memory and CPU, used for systemd limits and for placement."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import ValidationError


@dataclass(frozen=True)
class DynoSize:
    name: str
    memory_mb: int
    cpu_percent: int  # systemd CPUQuota=; 100 is one full core
    tasks_max: int

    @property
    def tmp_mb(self) -> int:
        """Size cap of each of the dyno's writable areas (/tmp, /var/tmp, /dev/shm): a quarter
        of its memory. They are tmpfs, so what a dyno writes there is memory charged to the dyno
        (MemoryMax=), never the host's disk, and it goes when the dyno stops."""
        return self.memory_mb // 4


DYNO_SIZES: dict[str, DynoSize] = {
    s.name: s
    for s in (
        DynoSize("eco", 512, 50, 256),
        DynoSize("basic", 512, 50, 256),
        DynoSize("standard-1x", 512, 100, 256),
        DynoSize("standard-2x", 1024, 200, 512),
        DynoSize("performance-m", 2560, 200, 1024),
        DynoSize("performance-l", 14336, 400, 4096),
    )
}
DEFAULT_SIZE = "standard-1x"


def dyno_size(name: str) -> DynoSize:
    try:
        return DYNO_SIZES[name]
    except KeyError:
        raise ValidationError(
            f"dyno size {name!r}", "must be one of " + ", ".join(DYNO_SIZES)
        ) from None
