"""Figures of the pure core and the state store (no hosts needed)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from moto import mock_aws

from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, StaleWrite
from provisioner.plan.placement import placement_benchmark
from provisioner.targets import Target


def placement(runs: int) -> dict[str, Any]:
    """Placing 10,000 dynos of 1,000 apps on 500 hosts."""
    times = [placement_benchmark(apps=1000, hosts=500) for _ in range(runs)]
    return {"placement_10k_s": _summary(times)}


def state_ops(seconds: float) -> dict[str, Any]:
    """State store reads and conditional writes per second, against moto (in process)."""
    with mock_aws():
        aws = Aws(Target("bench", region="us-east-1"))
        docs = Documents(aws.s3, "dynoform-bench-state")
        docs.ensure_bucket("us-east-1")
        etag = docs.create("apps/bench/formation.json", {"n": 0})
        writes = 0
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < end:
            etag = docs.update("apps/bench/formation.json", {"n": writes}, etag)
            writes += 1
        write_rate = writes / (time.perf_counter() - started)
        try:
            docs.update("apps/bench/formation.json", {"n": -1}, '"stale"')
            stale_refused = False
        except StaleWrite:
            stale_refused = True
        reads = 0
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < end:
            docs.get("apps/bench/formation.json")
            reads += 1
        read_rate = reads / (time.perf_counter() - started)
    return {
        "state_ops_per_s": {
            "conditional_writes": round(write_rate, 1),
            "reads": round(read_rate, 1),
            "stale_write_refused": stale_refused,
        }
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": len(values),
    }
