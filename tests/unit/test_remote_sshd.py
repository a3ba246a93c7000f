"""The SSH edge against a real OpenSSH server on 127.0.0.1 with its own host key.

Needs /usr/sbin/sshd (Debian: `apt-get install openssh-server`); skipped without it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from provisioner.remote.fanout import fan_out
from provisioner.remote.hostkeys import fingerprint, generate_ed25519
from provisioner.remote.ssh import Endpoint, HostKeyMismatch, Pool, RemoteError, connect

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="needs openssh-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sshd")
    tmp.chmod(0o755)
    host = generate_ed25519()
    client = generate_ed25519()
    (tmp / "host_ed25519").write_text(host.private_openssh)
    (tmp / "host_ed25519").chmod(0o600)
    (tmp / "client").write_text(client.private_openssh)
    (tmp / "client").chmod(0o600)
    (tmp / "authorized_keys").write_text(client.public + "\n")
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {tmp / 'host_ed25519'}",
                f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
                f"PidFile {tmp / 'sshd.pid'}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "MaxStartups 100",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield {"port": port, "host": host, "client": tmp / "client", "tmp": tmp}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _endpoint(sshd, pinned: str, name: str = "test-host") -> Endpoint:
    return Endpoint(
        name=name,
        address="127.0.0.1",
        port=sshd["port"],
        user=getpass.getuser(),
        key_path=sshd["client"],
        pinned=(pinned,),
    )


def test_pinned_key_accepted_and_connection_reused(sshd):
    endpoint = _endpoint(sshd, sshd["host"].public)
    with Pool() as pool:
        conn = pool.get(endpoint)
        result = conn.run(["echo", "hello world"], timeout=10)
        assert result.ok and result.stdout == "hello world\n"
        assert pool.get(endpoint) is conn  # reused, not reconnected
        assert conn.run(["sh", "-c", "exit 3"]).exit_code == 3
        assert conn.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # argv stays argv: a shell metacharacter is an argument, not syntax
        assert conn.run(["echo", "a; touch /nonexistent"]).stdout == "a; touch /nonexistent\n"


def test_command_timeout_and_stdin(sshd):
    with Pool() as pool:
        conn = pool.get(_endpoint(sshd, sshd["host"].public))
        assert conn.run(["cat"], stdin=b"abc").stdout == "abc"
        with pytest.raises(RemoteError, match="timed out"):
            conn.run(["sleep", "5"], timeout=0.5)


def test_put_is_atomic_and_sets_mode(sshd):
    target = sshd["tmp"] / "put" / "file.txt"
    target.parent.mkdir()
    user = getpass.getuser()
    with Pool() as pool:
        conn = pool.get(_endpoint(sshd, sshd["host"].public))
        conn.put(b"secret\n", str(target), mode="0600", owner=user, group=user)
    assert target.read_text() == "secret\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]  # no temp file left


def test_other_host_key_refused_and_nothing_run(sshd):
    marker = sshd["tmp"] / "marker"
    other = generate_ed25519().public
    endpoint = _endpoint(sshd, other, name="i-0123")
    with pytest.raises(HostKeyMismatch) as caught:
        conn = connect(endpoint, retry_for=2)
        conn.run(["touch", str(marker)])
    message = str(caught.value)
    assert "i-0123" in message
    assert fingerprint(other) in message
    assert fingerprint(sshd["host"].public) in message
    assert "nothing was run" in message
    assert not marker.exists()


def test_unreachable_host_fails_after_retries(sshd):
    endpoint = Endpoint("i-gone", "127.0.0.1", sshd["client"], (sshd["host"].public,), port=1)
    started = time.monotonic()
    with pytest.raises(RemoteError, match="cannot connect to host i-gone"):
        connect(endpoint, timeout=0.5, retry_for=1.0)
    assert time.monotonic() - started < 5


def test_fan_out_bounded_with_per_host_results(sshd):
    good = _endpoint(sshd, sshd["host"].public, name="good")
    bad = _endpoint(sshd, generate_ed25519().public, name="bad")
    with Pool() as pool:

        def work(endpoint: Endpoint) -> str:
            return pool.get(endpoint).run(["hostname"], check=True).stdout.strip()

        outcomes = fan_out([good, bad, good], work, max_workers=2, timeout=30)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].value == socket.gethostname()
    assert outcomes[1].error and "bad" in outcomes[1].error
