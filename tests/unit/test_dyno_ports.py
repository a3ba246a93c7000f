"""templates/dyno/dyno-ports, run for real: host port reservations and the listener check,
through the batch a rollout sends (its `reserve` step), or the tool's own `wait` called on its
own (the batch's `wait` step takes the ports its `reserve` step reserved).

The tool reads /etc/systemd/system, /run/dynoform/ports and /proc under DYNO_PORTS_ROOT, so
these tests give it a made-up host in a temporary directory (and, for one test, this machine's
own /proc).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioner.paths import resource_dir
from provisioner.plan.batch import PORT_MARK, batch_argv, parse_batch
from provisioner.plan.ports import parse_port_checks
from provisioner.render import ports_tool_source

TOOL = resource_dir("templates") / "dyno" / "dyno-ports"
WEB1 = "dyno-shop.v4.web.1.service"
WEB2 = "dyno-shop.v4.web.2.service"
OTHER = "dyno-blog.v9.web.1.service"
TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def env_of(root: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DYNO_PORTS_ROOT"}
    if root:
        env["DYNO_PORTS_ROOT"] = str(root)
    return env


def wait(
    root: Path | None, addr: str, timeout: float, unit: str, port: int
) -> subprocess.CompletedProcess[str]:
    """The tool's own `wait` for one dyno, as the batch's `wait` step runs it."""
    targets = [(unit, port)]
    call = f"import sys; exec(sys.stdin.read()); sys.exit(wait({addr!r}, {timeout}, {targets}))"
    return run_in_tool(call, root)


def run_in_tool(
    call: str, root: Path | None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Python `call` run with the tool's functions defined (its main not run)."""
    return subprocess.run(
        [sys.executable, "-I", "-c", call],
        input=ports_tool_source().replace('if __name__ == "__main__":', "if False:"),
        capture_output=True,
        text=True,
        env=env_of(root),
        timeout=30,
        check=check,
    )


def reserve(*units: str, low: int = 20000, high: int = 29999) -> dict[str, object]:
    """A batch's `reserve` step."""
    return {"op": "reserve", "low": low, "high": high, "units": list(units)}


def document(*steps: dict[str, object]) -> str:
    return json.dumps({"steps": list(steps)})


def batch_process(root: Path) -> subprocess.Popen[str]:
    """`python3 -I -c TOOL batch`, as a rollout runs it, reading its document on stdin."""
    return subprocess.Popen(
        [sys.executable, *batch_argv(ports_tool_source())[1:]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env_of(root),
    )


def host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    for sub in ("etc/systemd/system", "run/dynoform/ports", "proc/net"):
        (root / sub).mkdir(parents=True)
    return root


def unit_file(root: Path, unit: str, port: int) -> None:
    text = f"[Service]\nEnvironment=DYNO=web.1\nEnvironment=PORT={port}\n"
    (root / "etc/systemd/system" / unit).write_text(text)


def listening(root: Path, *ports_inodes: tuple[int, int]) -> None:
    rows = [
        f"   {i}: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
        f"00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        for i, (port, inode) in enumerate(ports_inodes)
    ]
    established = (
        "   9: 0100007F:4E2A 0100007F:A000 01 00000000:00000000 00:00000000 00000000"
        "  1000        0 999 1 0000000000000000 20 4 30 10 -1\n"
    )
    (root / "proc/net/tcp").write_text(TCP_HEADER + "".join(rows) + established)
    (root / "proc/net/tcp6").write_text(TCP_HEADER)


def process(root: Path, pid: int, unit: str, inode: int) -> None:
    proc = root / "proc" / str(pid)
    (proc / "fd").mkdir(parents=True)
    (proc / "fd" / "3").symlink_to(f"socket:[{inode}]")
    (proc / "fd" / "4").symlink_to("/dev/null")
    # cgroup v1/hybrid: one line a hierarchy; the unit is the leaf.
    (proc / "cgroup").write_text(
        f"12:memory:/dynoform.slice/{unit}\n1:name=systemd:/dynoform.slice/{unit}\n"
        f"0::/dynoform.slice/{unit}\n"
    )
    (proc / "comm").write_text("python3\n")


def test_reserve_skips_unit_ports_reservations_and_listeners(tmp_path: Path) -> None:
    root = host(tmp_path)
    unit_file(root, OTHER, 20000)  # another app's running dyno
    listening(root, (20001, 4711))  # something else listens (a squatter)
    fresh = root / "run/dynoform/ports" / "dyno-blog.v10.web.1.service"
    fresh.write_text("20002\n")  # another rollout between reserving and starting
    stale = root / "run/dynoform/ports" / "dyno-gone.v1.web.1.service"
    stale.write_text("20003\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    done = batch(root, [reserve(WEB1, WEB2)])
    assert done.returncode == 0, done.stderr
    assert parse_batch(done.stdout).reserved == {WEB1: 20003, WEB2: 20004}
    assert not stale.exists() and fresh.exists()
    assert (root / "run/dynoform/ports" / WEB1).read_text() == "20003\n"
    # Asking again (a retried rollout) gives the same ports; a new unit gets the next one.
    again = batch(root, [reserve(WEB1, "dyno-shop.v4.web.3.service")])
    assert parse_batch(again.stdout).reserved == {
        WEB1: 20003,
        "dyno-shop.v4.web.3.service": 20005,
    }


def test_reservations_made_at_the_same_moment_never_share_a_port(tmp_path: Path) -> None:
    root = host(tmp_path)
    procs = [batch_process(root) for _ in range(8)]
    for n, proc in enumerate(procs):  # all of them get their document before any is read
        assert proc.stdin is not None
        units = [f"dyno-app{n}.v1.web.{i}.service" for i in (1, 2, 3)]
        proc.stdin.write(document(reserve(*units)))
        proc.stdin.close()
    outputs = [p.stdout.read() for p in procs if p.stdout and p.wait(60) == 0]
    ports = [port for out in outputs for port in parse_batch(out).reserved.values()]
    assert len(ports) == 24 and len(set(ports)) == 24
    assert set(ports) == set(range(20000, 20024))


def test_a_reservation_waits_for_the_hosts_lock(tmp_path: Path) -> None:
    root = host(tmp_path)
    with open(root / "run/dynoform/ports.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another rollout is reserving
        proc = batch_process(root)
        assert proc.stdin is not None
        proc.stdin.write(document(reserve(WEB1)))
        proc.stdin.close()
        time.sleep(1.0)
        assert proc.poll() is None and not (root / "run/dynoform/ports" / WEB1).exists()
        unit_file(root, OTHER, 20000)  # what the other rollout wrote before letting go
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert proc.stdout is not None
    assert parse_batch(proc.stdout.read()).reserved == {WEB1: 20001}
    assert proc.wait(30) == 0


def test_reserve_refuses_a_full_range_and_bad_names(tmp_path: Path) -> None:
    root = host(tmp_path)
    unit_file(root, OTHER, 20000)
    full = batch(root, [reserve(WEB1, low=20000, high=20000)])
    assert full.returncode == 2 and "no free dyno ports" in full.stderr
    bad = batch(root, [reserve("../../etc/passwd")])
    assert bad.returncode == 2 and "not a dyno unit name" in bad.stderr


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_wait_accepts_a_port_held_by_the_dynos_own_unit(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        root = host(tmp_path)
        listening(root, (port, 5150))
        process(root, 321, WEB1, 5150)
        done = wait(root, "127.0.0.1", 5, WEB1, port)
        assert done.returncode == 0, done.stdout + done.stderr
        assert parse_port_checks(done.stdout)[port].state == "ok"
        # The same socket seen from another app's new dyno: foreign at once, naming the holder.
        started = time.monotonic()
        other = wait(root, "127.0.0.1", 5, OTHER, port)
        assert other.returncode == 1 and time.monotonic() - started < 4
        check = parse_port_checks(other.stdout)[port]
        assert (check.state, check.holder) == ("foreign", f"321 {WEB1}")
    finally:
        server.shutdown()


def test_wait_names_a_real_process_on_this_machine_and_times_out_on_silence(
    tmp_path: Path,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = wait(None, "127.0.0.1", 5, WEB1, port)
        assert done.returncode == 1, done.stderr
        check = parse_port_checks(done.stdout)[port]
        assert check.state == "foreign" and check.holder.split()[0] == str(os.getpid())
    root = host(tmp_path)
    listening(root)
    quiet = wait(root, "127.0.0.1", 0.3, WEB1, 20009)
    assert quiet.returncode == 1 and quiet.stdout == "timeout 20009\n"


def test_the_kernels_listeners_are_those_proc_lists() -> None:
    """sock_diag (what `reserve` and `wait` ask on a host) finds what /proc/net/tcp{,6} list."""
    with socket.socket() as four, socket.socket(socket.AF_INET6) as six:
        four.bind(("127.0.0.1", 0))
        four.listen()
        six.bind(("::1", 0))
        six.listen()
        ports = [four.getsockname()[1], six.getsockname()[1]]
        call = (  # only these ports: other listeners of the machine may come and go meanwhile
            "import sys; exec(sys.stdin.read()); "
            f"print([(_diag_listeners().get(p), _proc_listeners().get(p)) for p in {ports}])"
        )
        done = run_in_tool(call, None, check=True)
        inodes = [os.fstat(four.fileno()).st_ino, os.fstat(six.fileno()).st_ino]
        assert done.stdout == f"{[({i}, {i}) for i in inodes]}\n", done.stdout


def batch(root: Path, steps: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    """`python3 -I -c TOOL batch` with the document on stdin, as a rollout runs it."""
    return subprocess.run(
        [sys.executable, *batch_argv(ports_tool_source())[1:]],
        input=document(*steps),
        capture_output=True,
        text=True,
        env=env_of(root),
        timeout=30,
        check=False,
    )


def test_batch_takes_the_release_and_boots_a_web_dyno_in_one_go(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    log = tmp_path / "ran"
    try:
        root = host(tmp_path)
        # The dyno's own process holds the port once started (the `start` step puts it there).
        listening(root, (port, 5150))
        started = tmp_path / "tcp-started"
        (root / "proc/net/tcp").rename(started)
        listening(root)
        process(root, 321, WEB1, 5150)
        record = ["sh", "-c", 'echo "$1 $(cat)" >> "$2"; [ -z "$3" ] || cp "$3" "$4"', "sh"]
        done = batch(
            root,
            [
                {"op": "run", "name": "user", "argv": [*record, "user", str(log)]},
                {"op": "write", "path": "/usr/lib/launch", "mode": "0755", "text": "#!/bin/sh\n"},
                {"op": "run", "argv": [*record, "unpack", str(log)], "stdin": "url = x"},
                {"op": "write", "path": "/srv/env/v4.json", "mode": "0600", "text": "{}\n"},
                {"op": "reserve", "low": port, "high": port, "units": [WEB1]},
                {"op": "units", "files": {WEB1: f"[Service]\nEnvironment=PORT={PORT_MARK}\n"}},
                {
                    "op": "run",
                    "name": "start-units",
                    "argv": [*record, "start", str(log), str(started), str(root / "proc/net/tcp")],
                },
                {"op": "wait", "addr": "127.0.0.1", "timeout": 5, "units": [WEB1]},
            ],
        )
        assert done.returncode == 0, done.stderr
        result = parse_batch(done.stdout)
        assert result.reserved == {WEB1: port} and result.checks[port].state == "ok"
        assert log.read_text() == "user \nunpack url = x\nstart \n"  # in order, stdin given
        unit = root / "etc/systemd/system" / WEB1
        assert unit.read_text() == f"[Service]\nEnvironment=PORT={port}\n"
        assert (unit.stat().st_mode & 0o777, (root / "srv/env/v4.json").stat().st_mode & 0o777) == (
            0o644,
            0o600,
        )
        assert (root / "usr/lib/launch").stat().st_mode & 0o777 == 0o755
    finally:
        server.shutdown()


def test_batch_ends_at_the_first_failing_step_and_prints_no_file(tmp_path: Path) -> None:
    root = host(tmp_path)
    listening(root)
    done = batch(
        root,
        [
            {"op": "write", "path": "/srv/env/v4.json", "mode": "0600", "text": "SECRET=s3cr3t"},
            {
                "op": "run",
                "name": "unpack-release",
                "argv": ["sh", "-c", "echo bad sum >&2; exit 3"],
            },
            {"op": "reserve", "low": 20000, "high": 20009, "units": [WEB1]},
        ],
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "dyno-ports: unpack-release exited 3: bad sum"
    assert "s3cr3t" not in done.stdout + done.stderr
    assert not (root / "run/dynoform/ports" / WEB1).exists()  # no step after the failure
    # A dyno that never answers: exit 1, its port reserved and its `wait` line printed.
    quiet = batch(
        root,
        [
            {"op": "reserve", "low": 20000, "high": 20009, "units": [WEB1]},
            {"op": "wait", "addr": "127.0.0.1", "timeout": 0.3, "units": [WEB1]},
        ],
    )
    assert quiet.returncode == 1
    assert quiet.stdout == f"reserved {WEB1} 20000\ntimeout 20000\n"


def test_the_tool_is_the_shipped_file() -> None:
    assert ports_tool_source() == TOOL.read_text(encoding="utf-8")


class _Stream(BaseHTTPRequestHandler):
    """A `/` that never ends its body (server-sent events)."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        with contextlib.suppress(OSError):
            while True:
                self.wfile.write(b"data: x\n\n")
                self.wfile.flush()
                time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


def test_a_streaming_page_answers_at_its_status_line() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The tool's own answers_http, as the host runs it (its body is not read: it never ends).
        answered = _probe(server.server_address[1])
    finally:
        server.shutdown()
    assert answered == "True"


def _probe(port: int) -> str:
    """The tool's own answers_http on 127.0.0.1:port, as the host runs it."""
    probe = f"import sys; exec(sys.stdin.read()); print(answers_http('127.0.0.1', {port}))"
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        input=ports_tool_source().replace('if __name__ == "__main__":', "if False:"),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return done.stdout.strip() or done.stderr


@pytest.mark.parametrize(
    ("reply", "answers"),
    [
        (b"HTTP/1.0 503\r\n\r\n", "True"),  # any status: the router's check judges it
        (b"HTTP/1.1 200 OK\r\nX: y\r\n", "True"),  # closed before the headers ended
        (b"SSH-2.0-OpenSSH_9.2\r\n", "False"),
        (b"", "False"),
    ],
)
def test_only_an_http_status_line_is_an_answer(reply: bytes, answers: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def reply_once() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(reply)

        threading.Thread(target=reply_once, daemon=True).start()
        assert _probe(server.getsockname()[1]) == answers


def test_writing_a_unit_calls_off_its_pending_stop_and_waits_for_one_under_way(
    tmp_path: Path,
) -> None:
    """stop-units marks each unit's stop (templates/dyno/stop-units): a batch writing a unit
    of the same name removes a pending mark (that stop then leaves the unit alone), and waits
    while the mark says the unit is being stopped, so neither removes nor stops the other's."""
    root = host(tmp_path)
    stops = root / "run/dynoform/stops"
    stops.mkdir(parents=True)
    (stops / WEB1).write_text("pending 4242\n")
    (stops / WEB2).write_text("stopping 4343\n")
    (stops / OTHER).write_text("pending 4444\n")
    step = {"op": "units", "files": {WEB1: "[Service]\n"}}
    assert batch(root, [step]).returncode == 0
    assert not (stops / WEB1).exists() and (root / "etc/systemd/system" / WEB1).exists()
    assert (stops / OTHER).read_text() == "pending 4444\n"  # another unit's stop: untouched
    slow = batch_process(root)
    assert slow.stdin is not None
    slow.stdin.write(document({"op": "units", "files": {WEB2: "[Service]\n"}}))
    slow.stdin.close()
    time.sleep(0.5)
    assert slow.poll() is None and not (root / "etc/systemd/system" / WEB2).exists()
    (stops / WEB2).unlink()  # the stop is done
    assert slow.wait(timeout=10) == 0
    assert (root / "etc/systemd/system" / WEB2).exists()
    (stops / WEB2).write_text("stopping 4545\n")
    os.utime(stops / WEB2, (time.time() - 400, time.time() - 400))  # its stop-units died
    assert batch(root, [{"op": "units", "files": {WEB2: "[Service]\n"}}]).returncode == 0
