"""Judging releases an interrupted command left pending (pure)."""

from __future__ import annotations

from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.plan.recovery import judge_pending, wanted_dynos
from provisioner.plan.units import DynoInstance

FORMATION = {"web": ProcessFormation(2), "worker": ProcessFormation(1)}
TYPES = {"web": "gunicorn app", "worker": "python worker.py"}


def pending(version: int, slug: bool = True, types: dict[str, str] | None = None) -> Release:
    return Release(
        version,
        "Deploy",
        "me",
        "now",
        "pending",
        "slugs/x.tgz" if slug else None,
        process_types=TYPES if types is None else types,
    )


def dynos(release: int) -> list[DynoInstance]:
    return [
        DynoInstance("shop", release, "web.1", "h1", 20001),
        DynoInstance("shop", release, "web.2", "h2", 20001),
        DynoInstance("shop", release, "worker.1", "h2"),
    ]


def web_units(release: int) -> set[str]:
    return {d.unit for d in dynos(release) if d.is_web}


def test_wanted_dynos_follow_the_formation_with_heroku_defaults() -> None:
    assert wanted_dynos(pending(4), FORMATION) == {"web.1", "web.2", "worker.1"}
    assert wanted_dynos(pending(1, types={"web": "x", "clock": "y"}), {}) == {"web.1"}


def test_a_release_whose_dynos_all_serve_succeeded() -> None:
    """Killed after the new dynos were healthy, before the record said so."""
    running = dynos(3) + dynos(4)
    assert judge_pending([pending(4)], FORMATION, running, web_units(4), 3) == {4: "succeeded"}


def test_a_release_killed_while_starting_failed() -> None:
    running = dynos(3) + dynos(4)[:1]  # only web.1 of v4 started
    assert judge_pending([pending(4)], FORMATION, running, web_units(4), 3) == {4: "failed"}


def test_web_dynos_count_only_when_the_router_finds_them_healthy() -> None:
    running = dynos(3) + dynos(4)
    assert judge_pending([pending(4)], FORMATION, running, set(), 3) == {4: "failed"}


def test_only_the_newest_serving_release_wins_and_old_leftovers_fail() -> None:
    running = dynos(5)
    judged = judge_pending(
        [pending(2), pending(5), pending(6)], FORMATION, running, web_units(5), 3
    )
    assert judged == {6: "failed", 5: "succeeded", 2: "failed"}


def test_a_release_with_nothing_to_run_has_nothing_to_prove() -> None:
    """A config change before the first deploy, or an app scaled to zero."""
    assert judge_pending([pending(1, slug=False)], {}, [], set()) == {1: "succeeded"}
    zero = {"web": ProcessFormation(0), "worker": ProcessFormation(0)}
    assert judge_pending([pending(7)], zero, dynos(6), set(), 6) == {7: "succeeded"}
