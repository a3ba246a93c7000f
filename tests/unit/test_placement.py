"""Placement: capacity, spread, determinism and stability, proven with hypothesis."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import DynoformError
from provisioner.model.formation import Formation, ProcessFormation
from provisioner.plan.placement import (
    DynoRef,
    HostSpace,
    by_host,
    count_dynos,
    desired_dynos,
    held_formations,
    host_usage,
    moved_dynos,
    place,
    placement_benchmark,
    placement_from_dict,
    placement_to_dict,
    synthetic_fleet,
)

SIZES = ["basic", "standard-1x", "standard-2x"]
RESERVE = 512


@st.composite
def fleets(draw: st.DrawFn, roomy: bool = True) -> tuple[dict[str, Formation], list[HostSpace]]:
    """Apps with 1-3 process types and hosts in 1-3 zones.

    roomy: every host could hold every dyno, so capacity never limits the spread.
    """
    n_apps = draw(st.integers(1, 4))
    formations: dict[str, Formation] = {}
    for a in range(n_apps):
        types = draw(
            st.lists(
                st.sampled_from(["web", "worker", "clock"]), min_size=1, max_size=3, unique=True
            )
        )
        formations[f"app-{a}"] = {
            t: ProcessFormation(draw(st.integers(0, 12)), draw(st.sampled_from(SIZES)))
            for t in types
        }
    n_hosts = draw(st.integers(1, 8))
    zones = draw(st.integers(1, 3))
    if roomy:
        memory = [400_000] * n_hosts  # more than any formation here could use
    else:
        memory = [draw(st.sampled_from([1024, 2048, 4096, 8192])) for _ in range(n_hosts)]
    hosts = [HostSpace(f"h{i}", f"z{i % zones}", memory[i]) for i in range(n_hosts)]
    return formations, hosts


def memory_of(formations: dict[str, Formation]) -> dict[DynoRef, int]:
    return desired_dynos(formations)


def assert_capacity(placement, formations, hosts) -> None:
    used = host_usage(placement, memory_of(formations), hosts)
    for host in hosts:
        assert used[host.id] <= host.memory_mb - RESERVE, (host, used[host.id])


def assert_spread(placement, hosts) -> None:
    groups: dict[tuple[str, str], Counter[str]] = {}
    for dyno, host in placement.items():
        groups.setdefault((dyno.app, dyno.type), Counter())[host] += 1
    for group, counts in groups.items():
        per_host = [counts.get(h.id, 0) for h in hosts]
        assert max(per_host) - min(per_host) <= 1, (group, per_host)


def scaled(formations: dict[str, Formation], factor: float, extra: int) -> dict[str, Formation]:
    return {
        app: {
            t: ProcessFormation(max(0, min(100, int(pf.quantity * factor) + extra)), pf.size)
            for t, pf in f.items()
        }
        for app, f in formations.items()
    }


@settings(max_examples=150, deadline=None)
@given(fleets(roomy=False))
def test_capacity_is_never_exceeded_and_shortage_is_explained(fleet) -> None:
    formations, hosts = fleet
    try:
        placement = place(formations, hosts, reserve_mb=RESERVE)
    except DynoformError as exc:
        assert "not enough host memory" in exc.message and "MB more is missing" in exc.message
        assert exc.hint
        return
    assert set(placement) == set(memory_of(formations))
    assert_capacity(placement, formations, hosts)


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_each_type_spreads_evenly_when_capacity_allows(fleet) -> None:
    formations, hosts = fleet
    placement = place(formations, hosts, reserve_mb=RESERVE)
    assert_spread(placement, hosts)
    assert_capacity(placement, formations, hosts)


@settings(max_examples=100, deadline=None)
@given(fleets(roomy=False))
def test_placement_is_deterministic_whatever_the_input_order(fleet) -> None:
    formations, hosts = fleet
    try:
        first = place(formations, hosts, reserve_mb=RESERVE)
    except DynoformError:
        return
    reordered = {app: dict(reversed(f.items())) for app, f in reversed(formations.items())}
    assert place(reordered, list(reversed(hosts)), reserve_mb=RESERVE) == first
    # Placing again with the result as the existing state changes nothing.
    assert place(formations, hosts, first, reserve_mb=RESERVE) == first


@settings(max_examples=150, deadline=None)
@given(fleets(), st.integers(0, 6))
def test_scaling_up_moves_no_dyno(fleet, extra) -> None:
    formations, hosts = fleet
    before = place(formations, hosts, reserve_mb=RESERVE)
    bigger = scaled(formations, 1, extra)
    after = place(bigger, hosts, before, reserve_mb=RESERVE)
    assert moved_dynos(before, after) == []
    assert all(after[d] == h for d, h in before.items())
    assert_spread(after, hosts)


@settings(max_examples=150, deadline=None)
@given(fleets(), st.floats(0, 1))
def test_scaling_down_removes_highest_numbers_and_moves_only_to_restore_spread(
    fleet, factor
) -> None:
    formations, hosts = fleet
    before = place(formations, hosts, reserve_mb=RESERVE)
    smaller = scaled(formations, factor, 0)
    after = place(smaller, hosts, before, reserve_mb=RESERVE)
    wanted = memory_of(smaller)
    assert set(after) == set(wanted)  # web.1..web.N remain: the highest numbers went away
    assert_spread(after, hosts)
    # A dyno moves only off a host that held more than its fair share of the type.
    kept_counts = Counter((d.app, d.type, h) for d, h in before.items() if d in wanted)
    for dyno in moved_dynos(before, after):
        quantity = smaller[dyno.app][dyno.type].quantity
        fair = -(-quantity // len(hosts))
        assert kept_counts[(dyno.app, dyno.type, before[dyno])] > fair


def test_spread_over_zones_before_hosts_of_the_same_zone() -> None:
    hosts = [HostSpace("a1", "a", 8192), HostSpace("a2", "a", 8192), HostSpace("b1", "b", 8192)]
    placement = place({"shop": {"web": ProcessFormation(2)}}, hosts)
    zones = {h.id: h.zone for h in hosts}
    assert sorted(zones[h] for h in placement.values()) == ["a", "b"]


def test_new_dynos_go_to_the_least_loaded_host_and_types_of_an_app_avoid_each_other() -> None:
    hosts = [HostSpace("h1", "z", 4096), HostSpace("h2", "z", 4096)]
    busy = {DynoRef("other", "web", 1): "h1"}
    formations = {
        "other": {"web": ProcessFormation(1)},
        "shop": {"web": ProcessFormation(1), "worker": ProcessFormation(1)},
    }
    placement = place(formations, hosts, busy)
    assert placement[DynoRef("other", "web", 1)] == "h1"
    assert placement[DynoRef("shop", "web", 1)] != placement[DynoRef("shop", "worker", 1)]


def test_dynos_of_a_removed_host_are_placed_again() -> None:
    hosts = [HostSpace("h1", "z", 4096), HostSpace("h2", "z", 4096)]
    formations = {"shop": {"web": ProcessFormation(2)}}
    before = place(formations, hosts)
    gone = before[DynoRef("shop", "web", 1)]
    after = place(formations, [h for h in hosts if h.id != gone], before)
    assert set(after.values()) == {h.id for h in hosts if h.id != gone}


def test_resized_dynos_that_no_longer_fit_move_and_the_rest_stay() -> None:
    hosts = [HostSpace("h1", "z", 1024), HostSpace("h2", "z", 8192)]  # h1: 512 MB usable
    before = {DynoRef("shop", "web", 1): "h1", DynoRef("shop", "web", 2): "h2"}
    after = place({"shop": {"web": ProcessFormation(2, "standard-2x")}}, hosts, before)
    assert after == {DynoRef("shop", "web", 1): "h2", DynoRef("shop", "web", 2): "h2"}


def test_shortage_says_how_much_is_missing() -> None:
    hosts = [HostSpace("h1", "z", 2048)]  # 1536 MB usable: 3 standard-1x
    with pytest.raises(DynoformError) as err:
        place({"shop": {"web": ProcessFormation(5)}}, hosts)
    assert "2 dynos (shop/web.4, shop/web.5) need 1024 MB" in err.value.message
    assert "at least 1024 MB more is missing" in err.value.message


def test_other_apps_hold_what_runs_not_what_they_wish() -> None:
    running = [
        (DynoRef("shop", "web", 1), "standard-1x"),
        (DynoRef("shop", "web", 2), "standard-1x"),
        (DynoRef("shop", "worker", 1), "standard-2x"),
        (DynoRef("blog", "run", 3), "basic"),
    ]
    assert held_formations(running) == {
        "blog": {"run": ProcessFormation(3, "basic")},
        "shop": {"web": ProcessFormation(2), "worker": ProcessFormation(1, "standard-2x")},
    }
    assert held_formations([]) == {}


def test_a_failed_app_wishes_do_not_block_a_running_app_scaling_down() -> None:
    """Near capacity: a new app whose first deploy failed runs nothing and holds nothing."""
    hosts = [HostSpace("h1", "z", 2048)]  # 1536 MB usable: 3 standard-1x
    running = {DynoRef("shop", "web", i): "h1" for i in (1, 2)}
    formations = held_formations((d, "standard-1x") for d in running if d.app != "shop")
    formations["shop"] = {"web": ProcessFormation(1)}  # shop scales down to 1
    # what the fleet recorded for the failed app (web=4) is not in the formations any more
    assert place(formations, hosts, running) == {DynoRef("shop", "web", 1): "h1"}


def test_duplicate_hosts_are_rejected() -> None:
    with pytest.raises(DynoformError, match="listed twice"):
        place({}, [HostSpace("h1", "z", 1024), HostSpace("h1", "z", 1024)])


def test_dict_round_trip_and_grouping() -> None:
    hosts = [HostSpace("h1", "z", 4096), HostSpace("h2", "z", 4096)]
    placement = place({"shop": {"web": ProcessFormation(2), "worker": ProcessFormation(1)}}, hosts)
    data = placement_to_dict(placement)
    assert set(data["shop"]) == {"web.1", "web.2", "worker.1"}
    assert placement_from_dict(data) == placement
    assert sum(len(v) for v in by_host(placement).values()) == 3


def test_ten_thousand_dynos_on_five_hundred_hosts_all_fit() -> None:
    """The benchmark's fleet (its time is a figure of `python -m bench`, not a test)."""
    formations, fleet = synthetic_fleet(1000, 500)
    placement = place(formations, fleet)
    assert len(placement) == count_dynos(formations) >= 10_000
    memory = desired_dynos(formations)
    capacity = {h.id: h.memory_mb - RESERVE for h in fleet}
    assert all(used <= capacity[h] for h, used in host_usage(placement, memory, fleet).items())
    assert placement_benchmark(100, 50) > 0
