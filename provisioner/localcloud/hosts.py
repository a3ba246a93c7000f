"""One EC2 instance as a real Debian host: overlay disk, netns, seed files, systemd-nspawn.

Layout per host under <state>/hosts/<instance id>/: upper/ and work/ (the disk, kept across
stop/start), merged/ (mounted while it runs), nspawn.pid, console.log.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.localcloud import network
from provisioner.localcloud.image import USER, user_ids
from provisioner.localcloud.system import children, log, mounts_under, run, umount

REBOOT_EXIT = 133  # systemd-nspawn exits with this when the container asks for a reboot
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class Seed:
    """What a host gets on its first boot."""

    hostname: str
    authorized_key: str | None
    user_data: bytes
    resolv_conf: str
    ca_bundle: bytes | None


def hostname_for(address: str) -> str:
    """EC2's default name: ip-198-18-1-4."""
    return "ip-" + address.replace(".", "-")


def hosts_text(hostname: str) -> str:
    """/etc/hosts as cloud-init's manage_etc_hosts writes it (sudo resolves the hostname)."""
    return (
        f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n"
        "::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
    )


def resolver_text(resolv_conf: str, fallback: str | None) -> str:
    """The machine's resolver for hosts: loopback stubs (systemd-resolved) do not work there."""
    servers = [
        line.split()[1]
        for line in resolv_conf.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    real = [s for s in servers if not ipaddress.ip_address(s).is_loopback]
    if not real and fallback is not None:
        return resolver_text(fallback, None)
    others = [line for line in resolv_conf.splitlines() if line.startswith(("search", "options"))]
    others = [line for line in others if "edns0" not in line or real]
    return "".join(f"nameserver {s}\n" for s in real) + "".join(f"{o}\n" for o in others)


def machine_resolver() -> str:
    fallback = Path("/run/systemd/resolve/resolv.conf")
    return resolver_text(
        Path("/etc/resolv.conf").read_text(),
        fallback.read_text() if fallback.exists() else None,
    )


def nspawn_argv(merged: Path, netns: str, name: str) -> list[str]:
    return [
        "systemd-nspawn",
        "-D",
        str(merged),
        "--boot",
        # No system bus here: without these two nspawn tries to register with machined.
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{netns}",
        # An EC2 instance's root manages its own firewall (the runner role's nftables table);
        # the capability reaches only the host's own network namespace.
        "--capability=CAP_NET_ADMIN",
        "-M",
        name,
        "--console=read-only",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
    ]


@dataclass
class Host:
    instance_id: str
    address: str
    root: Path  # <state>/hosts/<instance id>
    image: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    stopping_since: float = 0.0
    ssh_ready_after: float | None = None
    boots: int = 0
    last_exit: int | None = None
    init_pid: int | None = None  # the container's PID 1 (nspawn's child), once seen
    netns: str = field(init=False)

    def __post_init__(self) -> None:
        self.netns = network.names_for(self.instance_id)[0]

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def pid_file(self) -> Path:
        return self.root / "nspawn.pid"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, seed: Callable[[], Seed]) -> None:
        """Mount the disk, make the network, seed a new disk (once), boot."""
        for part in ("upper", "work", "merged"):
            (self.root / part).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # the seed (user-data, keys) is for root only
        if not self.merged.is_mount():
            options = f"lowerdir={self.image},upperdir={self.upper},workdir={self.root / 'work'}"
            run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)])
        marker = self.root / "seeded"
        if not marker.exists():  # a marker, not the upper dir: a failed seed is retried
            self._seed(seed())
            marker.write_text("")
        network.host_net_up(self.instance_id, self.address)
        console = open(self.root / "console.log", "ab")
        try:
            self.proc = subprocess.Popen(
                nspawn_argv(self.merged, self.netns, self.netns),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals to the daemon's group must not reach hosts
            )
        finally:
            console.close()
        self.pid_file.write_text(f"{self.proc.pid}\n")
        self.started = time.monotonic()
        self.stopping_since = 0.0
        self.ssh_ready_after = None
        self.boots += 1
        log.info("%s: booting at %s (nspawn pid %d)", self.instance_id, self.address, self.proc.pid)

    def _seed(self, seed: Seed) -> None:
        etc = self.merged / "etc"
        (etc / "hostname").write_text(seed.hostname + "\n")
        (etc / "hosts").write_text(hosts_text(seed.hostname))
        (etc / "machine-id").write_text("")
        resolv = etc / "resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        resolv.write_text(seed.resolv_conf)
        if seed.ca_bundle:
            (etc / "ssl/certs/ca-certificates.crt").write_bytes(seed.ca_bundle)
        state = self.merged / "var/lib/dynoform"
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(state / "user-data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(seed.user_data)
        if seed.authorized_key:
            self._authorize(seed.authorized_key)

    def _authorize(self, key: str) -> None:
        uid, gid = user_ids(self.merged, USER)
        ssh_dir = self.merged / "home" / USER / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(key.strip() + "\n")
        keys.chmod(0o600)
        for path in (ssh_dir, keys):
            os.chown(path, uid, gid)

    def request_stop(self) -> None:
        """Orderly power-off: nspawn turns SIGTERM into a shutdown of the container's systemd."""
        if self.running and not self.stopping_since and self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.stopping_since = time.monotonic()

    def force_if_stuck(self, grace: float = 30) -> None:
        if self.running and self.stopping_since and self.proc is not None:
            if time.monotonic() - self.stopping_since > grace:
                log.warning("%s: did not power off in %.0f s; killing it", self.instance_id, grace)
                self.kill_container()
                self.proc.kill()

    def remember_init(self) -> None:
        """Note the container's PID 1 while nspawn runs: if nspawn dies first (SIGKILL), the
        container's processes live on, reparented to this machine's init, until killed."""
        if self.init_pid is None and self.proc is not None:
            found = children(self.proc.pid)
            self.init_pid = found[0] if found else None

    def kill_container(self) -> None:
        """SIGKILL the container's PID 1: the kernel then ends every process of its PID
        namespace (dynos, sshd, the controller). Only a process still in a PID namespace other
        than this machine's is killed: a recycled pid is left alone."""
        pid, self.init_pid = self.init_pid, None
        if pid is None:
            return
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/1/ns/pid"):
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone already

    def reboot(self) -> None:
        """Ctrl-Alt-Del for the container's systemd (SIGINT to its PID 1) reboots it."""
        if not self.running or self.proc is None:
            return
        for pid in children(self.proc.pid):
            os.kill(pid, signal.SIGINT)

    def console_tail(self, lines: int = 3) -> str:
        try:
            text = (self.root / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:])

    def probe_ssh(self) -> bool:
        if self.ssh_ready_after is not None:
            return True
        try:
            with socket.create_connection((self.address, 22), timeout=0.05) as sock:
                sock.settimeout(0.2)
                banner = sock.recv(8)
        except OSError:
            return False
        if banner.startswith(b"SSH-"):
            self.ssh_ready_after = time.monotonic() - self.started
            log.info("%s: SSH answers after %.2f s", self.instance_id, self.ssh_ready_after)
            return True
        return False

    def teardown(self, keep_disk: bool) -> None:
        """After the container is gone: unmount, remove the network, and the disk unless kept."""
        self.kill_container()  # nspawn may have died before its container (kill -9)
        for point in mounts_under(self.merged):
            umount(point)
        network.host_net_down(self.instance_id)
        self.pid_file.unlink(missing_ok=True)
        self.proc = None
        if not keep_disk:
            shutil.rmtree(self.root, ignore_errors=True)
