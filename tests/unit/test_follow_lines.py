"""`logs --tail` follows router.log's new lines, and goes on after the log is emptied."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from provisioner.localcloud.lb import _append, rotate_log
from provisioner.ops.logs import follow_lines, read_router


def test_new_lines_are_followed_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    writer = _append(log)
    writer.write(b"old line, before the tail\n")
    writer.flush()
    stop = threading.Event()
    seen: list[bytes] = []
    tail = threading.Thread(target=lambda: seen.extend(follow_lines(log, stop, poll=0.01)))
    tail.start()
    try:
        time.sleep(0.1)  # the tail is at the end now
        writer.write(b"first " + b"x" * 200 + b"\n")
        writer.flush()
        _wait(lambda: len(seen) == 1)
        assert rotate_log(log, limit=100)
        writer.write(b"after\npart")  # a line still being written waits
        writer.flush()
        _wait(lambda: len(seen) == 2)
    finally:
        stop.set()
        tail.join(5)
        writer.close()
    assert seen == [b"first " + b"x" * 200, b"after"]


def _wait(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.01)


def _router_line(path: str) -> bytes:
    return (
        f'2026-11-26T03:25:33.687713+00:00 router[lb]: at=info method=GET path="{path}" '
        'host=shop.localhost:18003 request_id=abc fwd="127.0.0.1" dyno=198.18.0.4:20000 '
        "backend=tg-x connect=0ms service=1ms status=200 bytes=341 protocol=http\n"
    ).encode()


def test_history_reads_the_rotated_log_too_when_the_newest_is_short(tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    (tmp_path / "router.log.1").write_bytes(b"".join(_router_line(f"/old{i}") for i in range(5)))
    log.write_bytes(b"\0" * 40 + _router_line("/new"))  # a writer that kept its old offset
    one = len(_router_line("/old0"))  # max_bytes below: the zeros count against it
    paths = [
        line.message.split('path="')[1].split('"')[0]
        for line in read_router(log, ["shop.localhost"], {}, max_bytes=3 * one + 45)
    ]
    assert paths == ["/old3", "/old4", "/new"]  # the cut line of the older log is left out
    assert read_router(tmp_path / "gone.log", ["shop.localhost"], {}) == []
