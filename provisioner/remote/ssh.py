"""SSH connections with pinned host keys, TCP_NODELAY, retries, timeouts and a pool.

A paramiko SSHClient with RejectPolicy that knows only the pinned keys (never the operator's
known_hosts). Commands run on paramiko channels directly, each with a deadline, as argv lists
joined with shlex.join.
"""

from __future__ import annotations

import re
import select
import shlex
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import DynoformError
from provisioner.remote.hostkeys import fingerprint_blob, split_public

if TYPE_CHECKING:  # imported on the first connection (_paramiko): commands without SSH skip it
    import paramiko

DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 10.0

# Mode, owner and group are validated before they reach this fixed script; the content comes
# on stdin, lands in a temporary file next to the target and is renamed into place.
_PUT_SCRIPT = (
    'set -e; dir=$(dirname -- "$1"); mkdir -p -- "$dir"; '
    'tmp=$(mktemp -- "$dir/.dynoform-put.XXXXXX"); '
    "trap 'rm -f -- \"$tmp\"' EXIT; "
    'cat > "$tmp"; chmod -- "$2" "$tmp"; chown -- "$3" "$tmp"; '
    'mv -f -- "$tmp" "$1"; trap - EXIT'
)
_MODE_RE = re.compile(r"0?[0-7]{3,4}")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class HostKeyMismatch(DynoformError):
    """The host presented a key other than the pinned one: nothing was run."""


class RemoteError(DynoformError):
    """A command failed or timed out on a host."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host: its name for messages, address, login and pinned host keys."""

    name: str
    address: str
    key_path: Path
    pinned: tuple[str, ...]
    user: str = "admin"
    port: int = 22


@dataclass
class Result:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


_IMPORT_LOCK = threading.Lock()


def _import_paramiko() -> None:
    """Import paramiko without invoke. paramiko.config imports invoke when it is installed,
    only to run `Match exec` lines of ssh_config files, which dynoform never reads; that import
    was half of paramiko's (~35 of ~75 ms), on the path of every command's first connection."""
    with _IMPORT_LOCK:
        if "paramiko" in sys.modules or "invoke" in sys.modules:
            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` fails
        try:
            import paramiko  # noqa: F401
        finally:
            if sys.modules.get("invoke", 0) is None:
                del sys.modules["invoke"]  # a later `import invoke` works as usual


def preload() -> None:
    """Import paramiko in a daemon thread of its own, for a caller about to connect: the
    import (~30 ms of CPU) then overlaps its waits on AWS (EC2, the host records) instead of
    coming after them on the first connection, which waits for it (_IMPORT_LOCK)."""
    if "paramiko" not in sys.modules:
        threading.Thread(target=_import_quietly, name="import-paramiko", daemon=True).start()


def _import_quietly() -> None:
    try:
        _import_paramiko()
    except Exception:  # noqa: BLE001, S110 - the connection imports it again and says why
        pass


def _hostkey_name(endpoint: Endpoint) -> str:
    if endpoint.port == 22:
        return endpoint.address
    return f"[{endpoint.address}]:{endpoint.port}"


def _pinned_keys(endpoint: Endpoint) -> list[paramiko.PKey]:
    import paramiko

    keys = []
    for line in endpoint.pinned:
        kind, blob = split_public(line)
        keys.append(paramiko.PKey.from_type_string(kind, blob))
    if not keys:
        raise DynoformError(
            f"host {endpoint.name} has no pinned host key",
            "it was not launched by dynoform; remove it and add a new host",
        )
    return keys


def _mismatch(endpoint: Endpoint, exc: paramiko.BadHostKeyException) -> HostKeyMismatch:
    got = fingerprint_blob(exc.key.asbytes())
    want = ", ".join(fingerprint_blob(split_public(p)[1]) for p in endpoint.pinned)
    return HostKeyMismatch(
        f"host {endpoint.name} ({endpoint.address}) presented host key {got}, "
        f"but {want} is pinned; refusing to connect, nothing was run",
        "if the host was rebuilt, remove it and add a new one; otherwise treat this as an attack",
    )


def _open_socket(endpoint: Endpoint, timeout: float) -> socket.socket:
    sock = socket.create_connection((endpoint.address, endpoint.port), timeout=timeout)
    # paramiko sends small packets; without NODELAY each command waits ~40 ms on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _load_key(endpoint: Endpoint) -> paramiko.PKey:
    import paramiko

    try:
        return paramiko.PKey.from_path(endpoint.key_path)
    except (OSError, paramiko.SSHException) as exc:
        raise DynoformError(
            f"cannot read the SSH key {endpoint.key_path}: {exc}",
            "run `dynoform platform:init` to make the platform's key",
        ) from None


def _connect_once(
    endpoint: Endpoint, pkey: paramiko.PKey, pinned: list[paramiko.PKey], timeout: float
) -> paramiko.SSHClient:
    import paramiko

    sock = _open_socket(endpoint, timeout)
    client = paramiko.SSHClient()  # knows no host keys: none loaded from known_hosts files
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    for key in pinned:
        client.get_host_keys().add(_hostkey_name(endpoint), key.get_name(), key)
    try:
        client.connect(
            endpoint.address,
            port=endpoint.port,
            username=endpoint.user,
            pkey=pkey,
            sock=sock,
            timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        sock.close()
        raise _mismatch(endpoint, exc) from None
    except BaseException:
        client.close()
        sock.close()
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return client


def _retryable() -> tuple[type[BaseException], ...]:
    """Errors a booting host gives: nothing listening yet, sshd starting, keys not in place."""
    import paramiko

    return (OSError, EOFError, paramiko.SSHException)


def connect(
    endpoint: Endpoint,
    timeout: float = CONNECT_TIMEOUT,
    retry_for: float = 0.0,
    cancel: threading.Event | None = None,
) -> Connection:
    """Connect, retrying with growing delays for up to retry_for seconds (hosts booting).

    Setting `cancel` stops the retries (an interrupted `hosts:add`).
    """
    _import_paramiko()
    import paramiko

    pkey = _load_key(endpoint)
    pinned = _pinned_keys(endpoint)
    deadline = time.monotonic() + retry_for
    delay = 0.25
    while True:
        try:
            return Connection(endpoint, _connect_once(endpoint, pkey, pinned, timeout))
        except HostKeyMismatch:
            raise
        except paramiko.BadHostKeyException as exc:  # pragma: no cover - caught inside
            raise _mismatch(endpoint, exc) from None
        except _retryable() as exc:
            if cancel is not None and cancel.is_set():
                raise RemoteError(f"connecting to host {endpoint.name} was cancelled") from None
            if time.monotonic() + delay > deadline:
                raise RemoteError(
                    f"cannot connect to host {endpoint.name} ({endpoint.address}:{endpoint.port}) "
                    f"as {endpoint.user}: {exc or type(exc).__name__}",
                    "is the host running, and does the security group allow SSH from here?",
                ) from None
            time.sleep(delay)
            delay = min(delay * 1.6, 5.0)


class Connection:
    """One live SSH connection to a host; safe to use from several threads."""

    def __init__(self, endpoint: Endpoint, client: paramiko.SSHClient) -> None:
        self.endpoint = endpoint
        self.client = client
        self.sudo = endpoint.user != "root"

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None:
            raise RemoteError(f"connection to host {self.endpoint.name} is closed")
        return transport

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport and transport.is_active())

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        stdin: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = False,
        label: str | None = None,
    ) -> Result:
        """Run argv on the host (as root with sudo=True) and wait at most timeout seconds."""
        full = list(argv)
        if sudo and self.sudo:
            full = ["sudo", "-n", "--", *full]
        started = time.monotonic()
        deadline = started + timeout
        chan = self.transport.open_session(timeout=min(timeout, CONNECT_TIMEOUT))
        try:
            chan.exec_command(shlex.join(full))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            code, out, err = _collect(chan, deadline, self.endpoint, label or shlex.join(full))
        finally:
            chan.close()
        result = Result(full, code, out, err, time.monotonic() - started)
        if check and not result.ok:
            raise RemoteError(
                f"on host {self.endpoint.name}: `{label or shlex.join(list(argv))}` exited {code}: "
                f"{(err or out).strip()[-400:]}"
            )
        return result

    def put(
        self,
        data: bytes,
        path: str,
        *,
        mode: str = "0644",
        owner: str = "root",
        group: str = "root",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        """Write data to path atomically: a temporary file beside it, renamed into place."""
        if not path.startswith("/"):
            raise RemoteError(f"remote path {path!r} must be absolute")
        if not _MODE_RE.fullmatch(mode) or not all(_NAME_RE.fullmatch(n) for n in (owner, group)):
            raise RemoteError(f"bad mode or owner for {path}: {mode} {owner}:{group}")
        argv = ["sh", "-c", _PUT_SCRIPT, "sh", path, mode, f"{owner}:{group}"]
        label = f"write {path}"
        return self.run(argv, sudo=True, stdin=data, timeout=timeout, check=True, label=label)

    def close(self) -> None:
        self.client.close()


def _collect(
    chan: paramiko.Channel, deadline: float, endpoint: Endpoint, label: str
) -> tuple[int, str, str]:
    out = bytearray()
    err = bytearray()
    while not chan.eof_received or chan.recv_ready() or chan.recv_stderr_ready():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(endpoint, label)
        if chan.closed and not (chan.recv_ready() or chan.recv_stderr_ready()):
            # The connection was closed under us (the command is being torn down): waiting
            # for an end of output that can no longer come would last until the deadline.
            raise RemoteError(f"on host {endpoint.name}: `{label}`: the connection was closed")
        select.select([chan], [], [], remaining)
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
    if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
        raise _timed_out(endpoint, label)
    code = chan.recv_exit_status()
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def _timed_out(endpoint: Endpoint, label: str) -> RemoteError:
    return RemoteError(
        f"on host {endpoint.name}: `{label}` timed out",
        "the host may be overloaded; retry, or inspect it with `dynoform hosts:exec`",
    )


@dataclass
class Pool:
    """One connection per host, opened on first use and reused until closed."""

    timeout: float = CONNECT_TIMEOUT
    _conns: dict[tuple[str, str, int], Connection] = field(default_factory=dict)
    _locks: dict[tuple[str, str, int], threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(
        self, endpoint: Endpoint, retry_for: float = 0.0, cancel: threading.Event | None = None
    ) -> Connection:
        key = (endpoint.name, endpoint.address, endpoint.port)
        with self._lock:
            host_lock = self._locks.setdefault(key, threading.Lock())
        with host_lock:
            conn = self._conns.get(key)
            if conn is not None and conn.alive and conn.endpoint == endpoint:
                return conn
            if conn is not None:
                conn.close()
            conn = connect(endpoint, self.timeout, retry_for, cancel)
            self._conns[key] = conn
            return conn

    def drop_name(self, name: str) -> None:
        """Close and forget the connections to the host of this name."""
        with self._lock:
            keys = [key for key in self._conns if key[0] == name]
            conns = [self._conns.pop(key) for key in keys]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
