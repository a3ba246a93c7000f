"""`Tail.run` ends with `stop` set whatever kills it, its error the last line emitted."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner import logs as lg
from provisioner.ops import logs


class BrokenRollout:
    def observe(self) -> Any:
        raise RuntimeError("state store gone")


def test_an_unexpected_error_sets_stop_and_is_the_last_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "open_rollout", lambda ctx: BrokenRollout())
    monkeypatch.setattr(logs, "hostnames", lambda store, app, domain: [])
    monkeypatch.setattr(logs, "router_log_path", lambda target: None)

    class Ctx:
        store = None
        target = type("T", (), {"app_domain": "example.test"})()

        def fleet(self) -> None:
            return None

    heard: list[lg.LogLine] = []
    tail = logs.Tail(Ctx(), "shop", heard.append, source="app")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        tail.run(5.0)
    assert tail.stop.is_set()
    assert [line.message for line in heard] == ["the tail stopped: RuntimeError: state store gone"]
