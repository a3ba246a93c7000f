"""The local router's access logs, as the ALB's: for every load balancer whose
`access_logs.s3.*` attributes are on, its new router lines go to its bucket every few seconds
(`router-logs/local/<ms>-<lb>.log`, router.log's own format), where the platform's controller
reads them for log drains (aws/accesslogs.py, ops/drainship.py)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from provisioner.aws.accesslogs import LOCAL_PREFIX
from provisioner.model.names import safe_name

EVERY = 2.0  # seconds between deliveries (the ALB's are 5 minutes apart)


def split_by_lb(lines: list[str]) -> dict[str, list[str]]:
    """Router lines by the load balancer named in `router[LB]`."""
    found: dict[str, list[str]] = {}
    for line in lines:
        head, sep, _ = line.partition("]: ")
        if sep and " router[" in head:
            found.setdefault(head.rpartition("router[")[2], []).append(line)
    return found


class LogCursor:
    """A reader of router.log: each call gives the complete lines added since the one before
    (the first call: none, it starts from the log's end), from 0 again once the file shrank
    (the daemon rotates it: copy and truncate)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset: int | None = None

    def new_lines(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if self.offset is None or size < self.offset:  # first call, or log rotated
            self.offset = size if self.offset is None else 0
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        return complete.decode("utf-8", "replace").splitlines()


class AccessLogs:
    """Delivers router.log's new lines; the first call starts from the log's end."""

    def __init__(self, router_log: Path, elbv2: Any, s3: Any) -> None:
        self.log = LogCursor(router_log)
        self.elbv2 = elbv2
        self.s3 = s3

    def deliver(self, lbs: Iterable[tuple[str, str]]) -> int:
        """Write the new lines of load balancers (name, ARN) with access logs on; returns how
        many."""
        lines = self.log.new_lines()
        if not lines:
            return 0
        by_lb = split_by_lb(lines)
        written = 0
        for name, arn in lbs:
            mine = by_lb.get(safe_name(name))
            bucket = self._bucket(arn) if mine else None
            if mine and bucket:
                key = f"{LOCAL_PREFIX}{int(time.time() * 1000):013d}-{safe_name(name)}.log"
                self.s3.put_object(Bucket=bucket, Key=key, Body="\n".join(mine).encode() + b"\n")
                written += len(mine)
        return written

    def _bucket(self, lb_arn: str) -> str | None:
        attrs = {
            a["Key"]: a["Value"]
            for a in self.elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)[
                "Attributes"
            ]
        }
        if attrs.get("access_logs.s3.enabled") != "true":
            return None
        return attrs.get("access_logs.s3.bucket") or None
