"""Fan-out: bounded concurrency, per-item results in order, a deadline that is kept."""

from __future__ import annotations

import threading
import time

import pytest

from provisioner.errors import DynoformError
from provisioner.remote.fanout import fan_out


def test_at_most_max_workers_at_once_and_results_in_order():
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        if n == 3:
            raise DynoformError("host 3 is broken")
        return n * n

    outcomes = fan_out(list(range(10)), work, max_workers=3)
    assert peak <= 3
    assert [o.item for o in outcomes] == list(range(10))
    assert [o.value for o in outcomes if o.ok] == [n * n for n in range(10) if n != 3]
    assert outcomes[3].ok is False and outcomes[3].error == "host 3 is broken"


def test_the_deadline_is_kept_and_stragglers_reported():
    release = threading.Event()
    seen = []

    def work(n: int) -> int:
        if n == 1:
            release.wait(5)
        return n

    started = time.monotonic()
    outcomes = fan_out([0, 1], work, timeout=0.3, on_done=seen.append)
    release.set()
    assert time.monotonic() - started < 2
    assert outcomes[0].ok and not outcomes[1].ok
    assert "timed out" in (outcomes[1].error or "")
    assert len(seen) == 2


def test_nothing_to_do():
    assert fan_out([], lambda n: n) == []


def test_an_interrupted_fan_out_lets_running_work_end_before_it_raises() -> None:
    """Ctrl-C: what the caller undoes next must not be raced by commands still running."""
    running, finished = threading.Event(), threading.Event()

    def work(item: str) -> str:
        if item == "slow":
            running.set()
            time.sleep(0.5)
            finished.set()
        else:
            running.wait(5)  # both are at work on their hosts when Ctrl-C comes
        return item

    def interrupt(outcome: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fan_out(["fast", "slow"], work, on_done=interrupt)
    assert finished.is_set()


def test_an_interrupt_between_submits_still_waits_for_the_running_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands while the work is being handed out: the first item already runs."""
    from concurrent.futures import ThreadPoolExecutor

    finished = threading.Event()
    submit = ThreadPoolExecutor.submit
    calls = 0

    def interrupted_submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return submit(self, *args, **kwargs)

    def work(item: str) -> str:
        time.sleep(0.3)
        finished.set()
        return item

    monkeypatch.setattr(ThreadPoolExecutor, "submit", interrupted_submit)
    with pytest.raises(KeyboardInterrupt):
        fan_out(["first", "second"], work)
    assert finished.is_set()
