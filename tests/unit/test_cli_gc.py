"""The CLI pauses the cyclic garbage collector for its first seconds only (cli/main.py)."""

from __future__ import annotations

import gc
import time

import pytest

from provisioner.cli import main as cli_main


def test_the_collector_comes_back_after_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "GC_PAUSE_S", 0.05)
    try:
        cli_main._pause_gc()
        assert not gc.isenabled()
        deadline = time.monotonic() + 5
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.isenabled()
    finally:
        gc.enable()


def test_main_called_with_arguments_leaves_the_collector_alone() -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    assert gc.isenabled()
