"""Apps that share hosts: their dynos' ports and writable disk (issue 15, items 3 and 7).

Ports are reserved on each host under a lock, so two apps rolling out at the same moment never
get the same port; a deploy registers a dyno with the router only once the socket listening on
its port belongs to that dyno's own unit; a dyno's /tmp, /var/tmp and /dev/shm are size-capped
tmpfs, so it cannot fill the host's disk (or its shared memory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Url, cli, cli_at_once, cli_json, new_app, request

pytestmark = pytest.mark.cloud

ROUNDS = 3
REQUESTS = 20
# standard-1x (512 MB): /tmp, /var/tmp and /dev/shm are each capped at a quarter of its memory.
TMP_CAP_MB = 128

SQUAT_PY = r"""
import http.server, os, socketserver, threading

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"page of the squatter"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

def serve(port):
    try:
        server = Server(("", port), Page)
    except OSError:
        return False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return True

own = int(os.environ["PORT"])
serve(own)
# On purpose: also hold the next free ports of the dyno port range.
held, port = [], own + 1
while len(held) < 20 and port < 30000:
    if serve(port):
        held.append(port)
    port += 1
print("squatting", held, flush=True)
threading.Event().wait()
"""

# A squatter that watches for the victim's new dyno units (unit files are readable) and binds
# each one's PORT before its dyno does: the race that only SocketBindDeny= (cgroup v2) prevents,
# so the deploy's own check must catch it.
SNIPE_PY = (
    SQUAT_PY.split("own = int(")[0]
    + r"""
import glob, re, time
serve(int(os.environ["PORT"]))
tried = set()
while True:
    for path in glob.glob(f"/etc/systemd/system/dyno-{os.environ['VICTIM']}.*.service"):
        try:
            found = re.search(r"^Environment=PORT=(\d+)$", open(path).read(), re.M)
        except OSError:
            continue
        if found and int(found.group(1)) not in tried:
            tried.add(int(found.group(1)))
            if serve(int(found.group(1))):
                print("sniped", found.group(1), flush=True)
    time.sleep(0.02)
"""
)

DISK_PROBE = r"""
import errno, json, os
CHUNK = b"x" * (1 << 20)
LIMIT = 2 * @CAP@
def free():
    st = os.statvfs("/")
    return st.f_bavail * st.f_frsize
report = {}
for area in ("/tmp", "/var/tmp", "/dev/shm"):
    before, written, error = free(), 0, None
    with open(os.path.join(area, "fill"), "wb", buffering=0) as out:
        try:
            while written < LIMIT:
                out.write(CHUNK)
                written += 1
            os.fsync(out.fileno())
        except OSError as exc:
            error = errno.errorcode.get(exc.errno, str(exc.errno))
    report[area] = {"written_mb": written, "error": error,
                    "host_free_drop_mb": (before - free()) // (1 << 20)}
print("DISK " + json.dumps(report), flush=True)
""".replace("@CAP@", str(TMP_CAP_MB))


def page_source(root: Path, app: str, label: str) -> Path:
    """A release whose page names its app and its round (a new slug each time)."""
    src = root / f"{app}-{label}"
    src.mkdir(parents=True)
    (src / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (src / "index.html").write_text(f"page of {app} {label}\n")
    return src


def pages(app: str, count: int = REQUESTS) -> list[str]:
    url = Url.of_app(app)
    bodies = []
    for _ in range(count):
        response = request(url, "/")
        body = response.body.decode(errors="replace").strip()  # type: ignore[attr-defined]
        bodies.append(f"HTTP {response.status}: {body[:60]}")
    return bodies


def web_rows(app: str) -> list[dict[str, object]]:
    rows = cli_json("ps", "-a", app)
    assert isinstance(rows, list)
    return [r for r in rows if r["type"] == "web"]


@pytest.fixture
def two_apps(fleet: object) -> Iterator[list[str]]:
    apps = [new_app("isoa"), new_app("isob")]
    yield apps
    for app in apps:
        cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def deploy_together(apps: list[str], sources: list[Path]) -> list[str]:
    """Deploy each app from its source at the same moment (threads, the real CLI)."""
    done = cli_at_once(
        [["deploy", "-a", app, str(src)] for app, src in zip(apps, sources, strict=True)]
    )
    return ["ok" if d.returncode == 0 else d.stderr[-600:] for d in done]


def test_two_apps_deployed_at_the_same_moment_serve_their_own_pages(
    two_apps: list[str], tmp_path: Path
) -> None:
    for app in two_apps:
        cli("deploy", "-a", app, str(page_source(tmp_path, app, "round 0")))
        cli("ps:scale", "web=2", "-a", app)
        assert len({r["host"] for r in web_rows(app)}) == 2, web_rows(app)
    wrong: list[str] = []
    for n in range(1, ROUNDS + 1):
        label = f"round {n}"
        sources = [page_source(tmp_path, app, label) for app in two_apps]
        outcomes = deploy_together(two_apps, sources)
        assert outcomes == ["ok", "ok"], f"{label}: {outcomes}"
        for app in two_apps:
            got = pages(app)
            bad = [b for b in got if b != f"HTTP 200: page of {app} {label}"]
            if bad:
                wrong.append(f"{label}: {app} got {len(bad)} of {len(got)} wrong, e.g. {bad[0]}")
            rows = [r for r in web_rows(app) if r["release"] == f"v{n + 1}"]
            looping = [r for r in rows if r["state"] != "up" or int(str(r["restarts"])) > 0]
            if len(rows) != 2 or looping:
                wrong.append(f"{label}: {app} web dynos of v{n + 1}: {rows}")
    assert wrong == [], "\n".join(wrong)


def test_a_dyno_squatting_on_ports_cannot_serve_another_apps_url(
    two_apps: list[str], tmp_path: Path
) -> None:
    victim, squatter = two_apps
    cli("deploy", "-a", victim, str(page_source(tmp_path, victim, "v1")))
    cli("ps:scale", "web=2", "-a", victim)
    squat = tmp_path / "squat"
    squat.mkdir()
    (squat / "Procfile").write_text("web: python3 /app/squat.py\n")
    (squat / "squat.py").write_text(SQUAT_PY)
    cli("deploy", "-a", squatter, str(squat))
    cli("ps:scale", "web=2", "-a", squatter)

    # The victim's next release needs new ports next to its running ones: the squatted ones
    # are the lowest free ports on both hosts.
    result = cli("deploy", "-a", victim, str(page_source(tmp_path, victim, "v2")), check=False)
    print("deploy exited", result.returncode, result.stderr.strip().splitlines()[-1:])
    got = pages(victim)
    assert not [b for b in got if "squatter" in b], got
    if result.returncode == 0:
        assert set(got) == {f"HTTP 200: page of {victim} v2"}, got
        rows = [r for r in web_rows(victim) if r["release"] == "v2"]
        assert len(rows) == 2 and all(r["state"] == "up" for r in rows), rows
    else:  # refused clearly, and the old release keeps serving
        assert "held by another process" in result.stderr, result.stderr[-1500:]
        assert set(got) == {f"HTTP 200: page of {victim} v1"}, got


def test_a_port_taken_before_the_dyno_binds_it_is_never_registered(
    two_apps: list[str], tmp_path: Path
) -> None:
    victim, sniper = two_apps
    cli("deploy", "-a", victim, str(page_source(tmp_path, victim, "v1")))
    snipe = tmp_path / "snipe"
    snipe.mkdir()
    (snipe / "Procfile").write_text("web: python3 /app/snipe.py\n")
    (snipe / "snipe.py").write_text(SNIPE_PY)
    cli("config:set", "-a", sniper, f"VICTIM={victim}")
    cli("deploy", "-a", sniper, str(snipe))
    cli("ps:scale", "web=2", "-a", sniper)  # one on each host, watching

    slow = page_source(tmp_path, victim, "v2")
    (slow / "Procfile").write_text("web: sleep 2 && exec python3 -m http.server $PORT\n")
    result = cli("deploy", "-a", victim, str(slow), check=False)
    print("deploy exited", result.returncode, result.stderr.strip().splitlines()[-1:])
    got = pages(victim)
    assert not [b for b in got if "squatter" in b], got
    if result.returncode == 0:  # the unit could not be sniped (SocketBindDeny= enforced)
        assert set(got) == {f"HTTP 200: page of {victim} v2"}, got
    else:
        assert "held by another process" in result.stderr, result.stderr[-1500:]
        assert "not registered with the router" in result.stderr
        assert set(got) == {f"HTTP 200: page of {victim} v1"}, got


def test_a_dyno_cannot_fill_the_hosts_disk(app_name: str, tmp_path: Path) -> None:
    cli("deploy", "-a", app_name, str(page_source(tmp_path, app_name, "disk")))
    result = cli("run", "-a", app_name, "--", "python3", "-c", DISK_PROBE, check=False)
    lines = [x for x in result.stdout.splitlines() if x.startswith("DISK ")]
    assert lines, result.stdout[-1500:] + result.stderr[-1500:]
    report = json.loads(lines[0][len("DISK ") :])
    assert set(report) == {"/tmp", "/var/tmp", "/dev/shm"}
    # Capped: the write stops at the cap with ENOSPC; the host's root filesystem does not move
    # (other work on this machine shares its disk: allow a little movement).
    wrong = {
        area: seen
        for area, seen in report.items()
        if seen["error"] != "ENOSPC"
        or seen["written_mb"] > TMP_CAP_MB
        or seen["host_free_drop_mb"] >= 32
    }
    assert wrong == {}, report
