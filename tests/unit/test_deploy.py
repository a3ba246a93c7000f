"""What a deploy says about the release it makes (pure parts of ops/deploy)."""

from __future__ import annotations

from provisioner.model.release import Release
from provisioner.ops.deploy import dropped_types


def release(version: int, *types: str) -> Release:
    return Release(version, "Deploy", "me", "now", process_types={t: "cmd" for t in types})


def test_a_release_without_web_says_the_app_stops_serving() -> None:
    assert dropped_types(release(3, "web", "worker"), release(4, "worker", "clock")) == [
        "warning: v4 has no 'web' process type: the app stops serving requests"
    ]
    assert dropped_types(release(3, "web", "worker"), release(4, "web")) == [
        "warning: v4 has no 'worker' process type: its worker dynos stop"
    ]


def test_nothing_to_say_on_a_first_release_or_when_types_stay() -> None:
    assert dropped_types(None, release(1, "web")) == []
    assert dropped_types(release(1, "web"), release(2, "web", "worker")) == []
