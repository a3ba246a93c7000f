"""Local cloud figures: run_instances -> SSH-ready, hosts booted within 60 s, memory per idle host.

Usage (root, the local cloud is started if needed): python bench/localcloud.py [--quick] [--batch N]
Prints one JSON document. Uses a VPC in 198.19.0.0/16 so it never contests platform addresses.
"""

from __future__ import annotations

import io
import json
import random
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioner.aws.session import Aws, eventually
from provisioner.localcloud import DEBIAN_SSM_PARAMETER, control
from provisioner.localcloud.system import descendants
from provisioner.targets import LOCAL_TARGET

WINDOW = 60.0


def _key() -> tuple[paramiko.PKey, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), public


def ssh_ready(ip: str, pkey: paramiko.PKey, started: float, limit: float) -> float | None:
    """Seconds from `started` until admin logs in and runs a command, None past the limit."""
    while time.monotonic() - started < limit:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                ip,
                username="admin",
                pkey=pkey,
                timeout=1,
                banner_timeout=2,
                auth_timeout=5,
                look_for_keys=False,
                allow_agent=False,
            )
            client.exec_command("true")[1].channel.recv_exit_status()
            return time.monotonic() - started
        except (OSError, paramiko.SSHException):
            time.sleep(0.1)
        finally:
            client.close()
    return None


class Bench:
    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        ec2 = aws.ec2
        vpc = ec2.create_vpc(CidrBlock="198.19.0.0/16")["Vpc"]["VpcId"]
        third = random.randint(1, 254)  # noqa: S311
        cidr = f"198.19.{third}.0/24"
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        self.pkey, public = _key()
        self.key_name = f"bench-{uuid.uuid4().hex[:8]}"
        ec2.import_key_pair(KeyName=self.key_name, PublicKeyMaterial=public)
        param = aws.ssm.get_parameter(Name=DEBIAN_SSM_PARAMETER)
        self.image = param["Parameter"]["Value"]
        self.launched: list[str] = []

    def launch(self, count: int) -> list[dict[str, Any]]:
        result = self.aws.ec2.run_instances(
            ImageId=self.image,
            MinCount=count,
            MaxCount=count,
            SubnetId=self.subnet,
            KeyName=self.key_name,
        )["Instances"]
        self.launched.extend(i["InstanceId"] for i in result)
        return list(result)

    def terminate(self, ids: list[str]) -> None:
        if ids:
            eventually(self.aws.ec2.terminate_instances, InstanceIds=ids)  # maybe not known yet
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = {h["instance_id"] for h in control.status()["hosts"]}
            if not live & set(ids):
                return
            time.sleep(0.3)

    def boot_times(self, rounds: int) -> list[float]:
        times = []
        for _ in range(rounds):
            started = time.monotonic()
            instance = self.launch(1)[0]
            seconds = ssh_ready(instance["PrivateIpAddress"], self.pkey, started, WINDOW)
            if seconds is not None:
                times.append(seconds)
            self.terminate([instance["InstanceId"]])
        return times

    def batch(self, count: int) -> tuple[int, list[str], float | None]:
        started = time.monotonic()
        instances = self.launch(count)
        ips = [i["PrivateIpAddress"] for i in instances]
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda ip: ssh_ready(ip, self.pkey, started, WINDOW), ips))
        ready = [r for r in results if r is not None]
        return len(ready), [i["InstanceId"] for i in instances], max(ready) if ready else None


def memory(instance_ids: list[str]) -> dict[str, float]:
    """RSS and PSS (shared pages split fairly) of each host's nspawn process tree, in MiB."""
    hosts = {h["instance_id"]: h for h in control.status()["hosts"]}
    rss, pss = [], []
    for iid in instance_ids:
        pid = hosts.get(iid, {}).get("nspawn_pid")
        if not pid:
            continue
        values = {"Rss:": 0, "Pss:": 0}
        for proc in descendants(int(pid)):
            try:
                text = Path(f"/proc/{proc}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                field = line.split()
                if field and field[0] in values:
                    values[field[0]] += int(field[1])
        rss.append(values["Rss:"] / 1024)
        pss.append(values["Pss:"] / 1024)
    if not rss:
        return {}
    return {
        "hosts_measured": len(rss),
        "rss_mib_median": round(statistics.median(rss), 1),
        "pss_mib_median": round(statistics.median(pss), 1),
    }


def run(quick: bool, batch_size: int | None = None) -> dict[str, Any]:
    control.up()
    bench = Bench(Aws(LOCAL_TARGET))
    try:
        times = bench.boot_times(3 if quick else 5)
        batch_size = batch_size or (6 if quick else 60)
        ready, ids, slowest = bench.batch(batch_size)
        time.sleep(5 if quick else 15)  # let the hosts settle to idle
        mem = memory(ids)
        bench.terminate(ids)
    finally:
        bench.terminate(bench.launched)
        bench.aws.ec2.delete_key_pair(KeyName=bench.key_name)
    return {
        "ssh_ready_seconds": {
            "runs": len(times),
            "median": round(statistics.median(times), 2) if times else None,
            "min": round(min(times), 2) if times else None,
            "max": round(max(times), 2) if times else None,
        },
        "batch": {
            "launched_at_once": batch_size,
            "ssh_ready_within_60s": ready,
            "slowest_seconds": round(slowest, 2) if slowest else None,
        },
        "memory_per_idle_host": mem,
    }


if __name__ == "__main__":
    size = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else None
    print(json.dumps(run(quick="--quick" in sys.argv, batch_size=size), indent=2))
