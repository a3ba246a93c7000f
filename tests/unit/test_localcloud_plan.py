"""Pure parts of the local cloud: address decisions, iptables rule handling, names, resolver."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

from provisioner.localcloud import RULE_TAG, image, plan
from provisioner.localcloud.hosts import hosts_text, nspawn_argv, resolver_text
from provisioner.localcloud.network import (
    delete_commands,
    mac_for,
    names_for,
    nat_rules,
    sysctl_changes,
)
from provisioner.localcloud.system import install_hint, missing_tools
from provisioner.paths import resource_dir


def inst(iid: str, ip: str | None, state: str = "running", order: str = "1") -> plan.Instance:
    return plan.Instance(iid, state, ip, "key", f"{order} {iid}")


def test_from_api_reads_what_the_reconciler_needs() -> None:
    raw = {
        "InstanceId": "i-1",
        "State": {"Name": "pending"},
        "PrivateIpAddress": "198.18.1.4",
        "KeyName": "k",
        "LaunchTime": datetime(2026, 1, 1, tzinfo=UTC),
    }
    got = plan.from_api(raw)
    assert (got.instance_id, got.desired, got.private_ip, got.key_name) == (
        "i-1",
        plan.RUNNING,
        "198.18.1.4",
        "k",
    )


def test_states_map_to_what_the_host_should_be() -> None:
    assert inst("i", "198.18.1.4", "stopping").desired == plan.STOPPED
    assert inst("i", "198.18.1.4", "shutting-down").desired == plan.GONE
    assert inst("i", "198.18.1.4", "weird").desired == plan.GONE


def test_address_problems() -> None:
    assert plan.address_problem("198.18.1.4") is None
    assert plan.address_problem("198.19.255.4") is None
    assert "outside 198.18.0.0/15" in (plan.address_problem("10.0.0.4") or "")
    assert "reserved" in (plan.address_problem("198.18.0.1") or "")
    assert "no private IP" in (plan.address_problem(None) or "")


def test_the_earliest_launch_keeps_a_contested_address() -> None:
    ok, refused = plan.assign(
        [inst("i-b", "198.18.1.4", order="2"), inst("i-a", "198.18.1.4", order="1")], {}
    )
    assert list(ok) == ["i-a"]
    assert refused == {"i-b": "address 198.18.1.4 is already taken by i-a"}


def test_a_realised_host_keeps_its_address_against_an_earlier_launch() -> None:
    ok, refused = plan.assign(
        [inst("i-b", "198.18.1.4", order="2"), inst("i-a", "198.18.1.4", order="1")],
        {"i-b": "198.18.1.4"},
    )
    assert list(ok) == ["i-b"] and "i-a" in refused


def test_terminated_instances_are_neither_realised_nor_refused() -> None:
    ok, refused = plan.assign([inst("i-a", "10.0.0.4", "terminated")], {})
    assert ok == {} and refused == {}


def test_outside_addresses_are_refused_with_the_reason() -> None:
    ok, refused = plan.assign([inst("i-a", "10.1.2.3")], {})
    assert ok == {} and refused["i-a"] == "address 10.1.2.3 lies outside 198.18.0.0/15"


def test_every_rule_we_add_carries_the_tag() -> None:
    for _, spec in nat_rules():
        assert spec[spec.index("--comment") + 1] == RULE_TAG


def test_only_tagged_rules_are_deleted() -> None:
    listing = "\n".join(
        [
            "-P FORWARD ACCEPT",
            "-A FORWARD -i docker0 -j ACCEPT",
            f'-A FORWARD -i dfbr0 -m comment --comment "{RULE_TAG}" -j ACCEPT',
        ]
    )
    assert delete_commands(listing, "filter") == [
        ["iptables", "-t", "filter", "-D", "FORWARD", "-i", "dfbr0"]
        + ["-m", "comment", "--comment", RULE_TAG, "-j", "ACCEPT"]
    ]


def test_names_fit_the_kernel_limits() -> None:
    netns, veth = names_for("i-0123456789abcdef0")
    assert netns == "df-0123456789abcdef0"
    assert veth == "dfv56789abcdef0" and len(veth) <= 15


def test_mac_is_stable_and_locally_administered() -> None:
    mac = mac_for("i-0123456789abcdef0")
    assert mac == mac_for("i-0123456789abcdef0") != mac_for("i-1")
    assert mac.startswith("02:") and len(mac.split(":")) == 6


def test_resolver_skips_loopback_stubs() -> None:
    stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n"
    real = "nameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    assert resolver_text(stub, real) == "nameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    assert resolver_text(real, None) == real


def test_hosts_file_resolves_the_hostname() -> None:
    assert "127.0.1.1 ip-198-18-1-4\n" in hosts_text("ip-198-18-1-4")


def test_nspawn_runs_without_a_system_bus() -> None:
    argv = nspawn_argv(Path("/m"), "df-1", "df-1")
    assert {"--register=no", "--keep-unit", "--boot"} <= set(argv)
    assert "--network-namespace-path=/run/netns/df-1" in argv
    assert "--capability=CAP_NET_ADMIN" in argv  # nftables inside the host's own namespace


def test_missing_tools_name_the_package_to_install() -> None:
    found = {"systemd-nspawn": None, "debootstrap": "/usr/sbin/debootstrap", "haproxy": None}
    missing = missing_tools(found)
    assert missing == ["systemd-nspawn", "haproxy", "iptables", "ip"]
    assert install_hint(missing) == "apt-get install -y haproxy iproute2 iptables systemd-container"


def test_recipe_hash_covers_the_debootstrap_line_and_files() -> None:
    first = image.recipe_hash()
    assert first == image.recipe_hash() and len(first) == 16
    original = image.PACKAGES[:]
    try:
        image.PACKAGES.append("less")
        assert image.recipe_hash() != first
    finally:
        image.PACKAGES[:] = original


def _firstboot():  # the script ships into hosts; load it as a module to test its pure parts
    path = resource_dir("templates") / "localcloud" / "firstboot.py"
    spec = importlib.util.spec_from_file_location("firstboot", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runcmd_becomes_a_shell_script_like_cloud_init() -> None:
    fb = _firstboot()
    script = fb.runcmd_script({"runcmd": ["echo a > /x", ["touch", "/a file"]]})
    assert script == "#!/bin/sh\necho a > /x\ntouch '/a file'\n"
    assert fb.runcmd_script({}) == ""


def test_write_files_content_decoding() -> None:
    fb = _firstboot()
    assert fb.decode({"content": "aGk=", "encoding": "b64"}) == b"hi"
    assert fb.decode({"content": "plain"}) == b"plain"
    assert fb.cloud_config(b"#cloud-config\nruncmd: [ls]\n") == {"runcmd": ["ls"]}
    assert fb.cloud_config(b"#!/bin/sh\n") == {}


def test_sysctls_are_only_raised() -> None:
    current = {
        "net/ipv4/ip_forward": 0,
        "fs/inotify/max_user_instances": 128,
        "fs/inotify/max_user_watches": 1048576,
    }
    assert sysctl_changes(current) == {
        "net/ipv4/ip_forward": 1,
        "fs/inotify/max_user_instances": 8192,
    }
