"""Run one function per host on a bounded thread pool, with per-host results and a deadline.

Unlike fabric's ThreadingGroup (a thread per host, joined without a timeout), at most
max_workers hosts are worked on at once and the caller never waits past the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from provisioner.errors import DynoformError

K = TypeVar("K")
T = TypeVar("T")

MAX_WORKERS = 16


@dataclass
class Outcome(Generic[K, T]):
    item: K
    ok: bool
    value: T | None = None
    error: str | None = None
    seconds: float = 0.0


def _timed(fn: Callable[[K], T], item: K) -> tuple[T, float]:
    started = time.monotonic()
    value = fn(item)
    return value, time.monotonic() - started


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DynoformError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def fan_out(
    items: Sequence[K],
    fn: Callable[[K], T],
    *,
    max_workers: int = MAX_WORKERS,
    timeout: float | None = None,
    on_done: Callable[[Outcome[K, T]], None] | None = None,
) -> list[Outcome[K, T]]:
    """fn(item) for every item, at most max_workers at once; outcomes in the order of items."""
    if not items:
        return []
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items))))
    futures: dict[Future[tuple[T, float]], int] = {}
    outcomes: list[Outcome[K, T] | None] = [None] * len(items)
    try:
        # Submitted inside the guard: a Ctrl-C between two submits still waits for the work
        # already running (a dyno start that outlived the undo left the new release running).
        for index, item in enumerate(items):
            futures[pool.submit(_timed, fn, item)] = index
        pending = set(futures)
        while pending:
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures[future]
                outcome = _outcome(items[index], future)
                outcomes[index] = outcome
                if on_done:
                    on_done(outcome)
    except BaseException:
        # Interrupted (Ctrl-C): commands already running on hosts end first (their own
        # timeouts bound them), so that whatever the caller undoes next is not raced by them.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        # Never join stragglers: their own command timeouts end them.
        pool.shutdown(wait=False, cancel_futures=True)
    result: list[Outcome[K, T]] = []
    for index, maybe in enumerate(outcomes):
        if maybe is None:
            maybe = Outcome(items[index], False, error=f"timed out after {timeout or 0:.0f} s")
            if on_done:
                on_done(maybe)
        result.append(maybe)
    return result


def _outcome(item: K, future: Future[tuple[T, float]]) -> Outcome[K, T]:
    exc = future.exception()
    if exc is not None:
        return Outcome(item, False, error=_describe(exc))
    value, seconds = future.result()
    return Outcome(item, True, value=value, seconds=seconds)
