"""router.log is copied aside and emptied past its size; HAProxy's O_APPEND writes go on."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from provisioner.localcloud.accesslog import LogCursor
from provisioner.localcloud.lb import _append, rotate_log


def test_a_big_log_is_copied_aside_and_emptied_and_writing_goes_on_at_its_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "router.log"
    writer = _append(log)  # as HAProxy's stdout is opened
    # and as HAProxy then sets it: non-blocking, with F_SETFL, which drops O_APPEND
    fcntl.fcntl(writer.fileno(), fcntl.F_SETFL, os.O_NONBLOCK)
    writer.write(b"GET /secret?token=1\n" * 10)
    writer.flush()
    assert rotate_log(log, limit=100, writers=[os.dup(writer.fileno())])  # a copy, as ours is
    kept = tmp_path / "router.log.1"
    assert kept.read_bytes() == b"GET /secret?token=1\n" * 10
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # request paths may carry tokens
    writer.write(b"after\n")
    writer.flush()
    writer.close()
    assert log.read_bytes() == b"after\n"  # no hole of zeros where the old lines were
    assert not (tmp_path / "router.log.1.tmp").exists()


def test_a_small_or_missing_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    assert not rotate_log(log, limit=100)
    log.write_bytes(b"x\n" * 50)
    assert not rotate_log(log, limit=100)
    assert log.read_bytes() == b"x\n" * 50
    assert not (tmp_path / "router.log.1").exists()


def test_the_daemons_readers_start_again_from_the_emptied_logs_start(tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    writer = _append(log)
    writer.write(b"before the reader\n")
    writer.flush()
    cursor = LogCursor(log)
    assert cursor.new_lines() == []  # from the log's end
    writer.write(b"one\n" + b"x" * 200 + b"\npart")
    writer.flush()
    assert cursor.new_lines() == ["one", "x" * 200]  # a line still being written waits
    assert rotate_log(log, limit=100)
    writer.write(b"two\n")
    writer.flush()
    writer.close()
    assert cursor.new_lines() == ["two"]
