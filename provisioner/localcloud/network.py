"""The local cloud's network: bridge, NAT rules (tagged), and one netns + veth per host.

Command builders are pure (argv lists, tested as data); `apply_*` functions run them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from provisioner.localcloud import (
    BRIDGE,
    CIDR,
    GATEWAY,
    NETNS_PREFIX,
    PREFIX_LEN,
    RULE_TAG,
    VETH_PREFIX,
)
from provisioner.localcloud.system import log, run

_TAG = ["-m", "comment", "--comment", RULE_TAG]
SYSCTL = Path("/proc/sys")
# Kernel settings the local cloud needs, as minimums; the originals are restored at `down`.
# Each booted host's systemd takes several inotify instances: at the default 128 per user,
# the 27th host or so fails to boot.
SYSCTLS = {
    "net/ipv4/ip_forward": 1,
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}
SAVED_SYSCTLS = "sysctl.orig.json"


def sysctl_changes(current: dict[str, int]) -> dict[str, int]:
    """The settings to raise (pure): only those below what we need."""
    return {key: want for key, want in SYSCTLS.items() if current.get(key, 0) < want}


def sysctls_up(state: Path) -> None:
    saved = state / SAVED_SYSCTLS
    current = {key: int((SYSCTL / key).read_text()) for key in SYSCTLS}
    if not saved.exists():  # after a crash the file holds the machine's real originals
        saved.write_text(json.dumps(current))
    for key, value in sysctl_changes(current).items():
        (SYSCTL / key).write_text(f"{value}\n")


def sysctls_restore(state: Path) -> None:
    saved = state / SAVED_SYSCTLS
    if not saved.exists():
        return
    for key, value in json.loads(saved.read_text()).items():
        (SYSCTL / key).write_text(f"{value}\n")
    saved.unlink()


def nat_rules() -> list[tuple[str, list[str]]]:
    """(table, rule spec) pairs: NAT out of every other interface, forwarding for the bridge."""
    return [
        ("nat", ["POSTROUTING", "-s", CIDR, "!", "-o", BRIDGE, "-j", "MASQUERADE", *_TAG]),
        ("filter", ["FORWARD", "-i", BRIDGE, "-j", "ACCEPT", *_TAG]),
        (
            "filter",
            ["FORWARD", "-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]
            + ["-j", "ACCEPT", *_TAG],
        ),
    ]


def delete_commands(listing: str, table: str) -> list[list[str]]:
    """From `iptables -t TABLE -S` output, the argv that delete each rule carrying our tag."""
    commands = []
    for line in listing.splitlines():
        words = shlex.split(line)
        if len(words) < 2 or words[0] != "-A" or RULE_TAG not in words:
            continue
        commands.append(["iptables", "-t", table, "-D", *words[1:]])
    return commands


def names_for(instance_id: str) -> tuple[str, str]:
    """(netns, host-side veth) for an instance; veth names are at most 15 characters."""
    suffix = instance_id.removeprefix("i-")
    return f"{NETNS_PREFIX}{suffix}", f"{VETH_PREFIX}{suffix[-12:]}"


def mac_for(instance_id: str) -> str:
    """A stable, locally administered MAC per instance: after a stop/start the host comes back
    with the same MAC, so neighbour caches (the bridge's, other hosts') stay right."""
    digest = hashlib.sha256(instance_id.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def bridge_up(state: Path) -> None:
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
    if f"{GATEWAY}/{PREFIX_LEN}" not in addrs:
        run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    sysctls_up(state)
    rules_delete()
    for table, spec in nat_rules():
        chain, rest = spec[0], spec[1:]
        run(["iptables", "-w", "-t", table, "-I", chain, "1", *rest])


def rules_delete() -> int:
    count = 0
    for table in ("nat", "filter"):
        listing = run(["iptables", "-w", "-t", table, "-S"], check=False)
        for argv in delete_commands(listing, table):
            run([argv[0], "-w", *argv[1:]], check=False)
            count += 1
    return count


def bridge_down(state: Path) -> None:
    rules_delete()
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "del", BRIDGE], check=False)
    sysctls_restore(state)


def host_net_up(instance_id: str, address: str) -> str:
    """Make the host's netns with a veth into the bridge at address/15; return the netns."""
    netns, veth = names_for(instance_id)
    host_net_down(instance_id)
    run(["ip", "netns", "add", netns])
    mac = mac_for(instance_id)
    run(
        [
            "ip",
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac,
            "netns",
            netns,
        ]
    )
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    run(["ip", "-n", netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "route", "add", "default", "via", GATEWAY])
    run(["ip", "neigh", "flush", "to", address, "dev", BRIDGE], check=False)
    return netns


def host_net_down(instance_id: str) -> None:
    netns, veth = names_for(instance_id)
    if Path(f"/sys/class/net/{veth}").exists():
        run(["ip", "link", "del", veth], check=False)
    if Path(f"/run/netns/{netns}").exists():
        run(["ip", "netns", "del", netns], check=False)


def our_netns() -> list[str]:
    base = Path("/run/netns")
    return (
        sorted(p.name for p in base.iterdir() if p.name.startswith(NETNS_PREFIX))
        if base.is_dir()
        else []
    )


def our_veths() -> list[str]:
    out = run(["ip", "-j", "link", "show"], check=False) or "[]"
    names = [link.get("ifname", "") for link in json.loads(out)]
    return sorted(n for n in names if n.startswith(VETH_PREFIX))


def leftovers_delete() -> list[str]:
    """Remove every netns and veth of ours; return what was removed."""
    removed = []
    for veth in our_veths():
        run(["ip", "link", "del", veth], check=False)
        removed.append(f"veth {veth}")
    for netns in our_netns():
        run(["ip", "netns", "del", netns], check=False)
        removed.append(f"netns {netns}")
    log.info("removed %s", ", ".join(removed) or "no leftover interfaces")
    return removed
