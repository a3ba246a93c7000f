"""EC2 instance types: memory for placement, architecture for the AMI and the fleet (pure)."""

from __future__ import annotations

import pytest

from provisioner.aws.instances import DEBIAN_13_PARAMETERS, one_architecture
from provisioner.errors import DynoformError
from provisioner.model.sizes import DEFAULT_HOST_MEMORY_MB, architecture, instance_memory_mb


@pytest.mark.parametrize(
    ("instance_type", "memory_mb"),
    [
        ("t3.small", 2048),
        ("t4g.small", 2048),
        ("t4g.2xlarge", 32768),
        ("m7g.large", 8192),
        ("c7g.2xlarge", 16384),
        ("r7g.xlarge", 32768),
        ("m5.large", 8192),
        ("c5.large", 4096),
        ("m7i-flex.large", 8192),
        ("m7g.medium", 4096),
        ("a1.large", 4096),  # Graviton 1: 2 GiB a vCPU
        ("a1.4xlarge", 32768),
        ("weird", DEFAULT_HOST_MEMORY_MB),
        ("p5.48xlarge", DEFAULT_HOST_MEMORY_MB),
    ],
)
def test_memory_of_instance_types(instance_type, memory_mb):
    assert instance_memory_mb(instance_type) == memory_mb


def test_graviton_types_are_arm64_and_pick_the_arm64_ami():
    arm = [
        "t4g.small",
        "m7g.large",
        "c7g.xlarge",
        "c7gn.large",
        "r8g.large",
        "x2gd.large",
        "a1.large",
    ]
    amd = ["t3.small", "t3a.small", "m7i.large", "c5.large", "g5.xlarge", "m7i-flex.large"]
    assert {architecture(t) for t in arm} == {"arm64"}
    assert {architecture(t) for t in amd} == {"amd64"}
    assert DEBIAN_13_PARAMETERS["arm64"] == "/aws/service/debian/release/13/latest/arm64"
    assert DEBIAN_13_PARAMETERS["amd64"] == "/aws/service/debian/release/13/latest/amd64"


def test_a_platform_keeps_one_architecture():
    one_architecture([], "t4g.small")
    one_architecture(["t4g.small", "m7g.large"], "c7g.large")
    with pytest.raises(DynoformError) as caught:
        one_architecture(["t3.small"], "t4g.small")
    assert caught.value.message == (
        "t4g.small is arm64; this platform's runners are amd64: "
        "a slug built on one runs native code of that one"
    )
