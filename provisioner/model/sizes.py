"""Dyno sizes: memory and CPU, used for systemd limits and for placement; and the EC2 instance
types hosts run on: their memory (placement packs dynos by it) and architecture."""

from __future__ import annotations

import re
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


# EC2 instance types --------------------------------------------------------------------------------
# Burstable (t3, t3a, t4g) memory by size; other families by vCPUs times GiB per vCPU.
_BURSTABLE_MB = {"nano": 512, "micro": 1024, "small": 2048, "medium": 4096, "large": 8192,
                 "xlarge": 16384, "2xlarge": 32768}  # fmt: skip
_GIB_PER_VCPU = {"a": 2, "c": 2, "m": 4, "r": 8, "x": 16, "z": 8}
_VCPUS = {"medium": 1, "large": 2, "xlarge": 4}
DEFAULT_HOST_MEMORY_MB = 2048
_TYPE_RE = re.compile(r"(?P<family>[a-z]+\d+[a-z-]*)\.(?P<size>[a-z0-9]+)")
_ARM_FAMILY_RE = re.compile(r"[a-z]+\d+g[a-z]*")  # t4g, m7g, c7gn, r8g, x2gd, im4gn


def instance_memory_mb(instance_type: str) -> int:
    """The memory of an EC2 type (pure): t3.small 2048, m7g.large 8192, c7g.2xlarge 16384;
    DEFAULT_HOST_MEMORY_MB for a type it cannot tell."""
    match = _TYPE_RE.fullmatch(instance_type)
    if not match:
        return DEFAULT_HOST_MEMORY_MB
    family, size = match["family"], match["size"]
    if family.startswith("t"):
        return _BURSTABLE_MB.get(size, DEFAULT_HOST_MEMORY_MB)
    vcpus = _VCPUS.get(size)
    if vcpus is None and size.endswith("xlarge") and size[:-6].isdigit():
        vcpus = 4 * int(size[:-6])
    per_vcpu = _GIB_PER_VCPU.get(family[0])
    if vcpus is None or per_vcpu is None:
        return DEFAULT_HOST_MEMORY_MB
    return vcpus * per_vcpu * 1024


def architecture(instance_type: str) -> str:
    """`arm64` for Graviton types (a `g` after the generation: t4g, m7g, c7gn; and a1), else
    `amd64`, as Debian and its AMI parameters name them (pure)."""
    family = instance_type.split(".", 1)[0]
    return "arm64" if family == "a1" or _ARM_FAMILY_RE.fullmatch(family) else "amd64"
