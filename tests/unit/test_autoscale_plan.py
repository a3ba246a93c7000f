"""Autoscaling decisions as data: policy, windows and state in; verdict, decision and message out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.errors import ValidationError
from provisioner.plan import autoscale as a

MINUTE = 1796065440.0  # 2026-11-30 19:04:00 UTC
NOW = MINUTE + 30
POLICY = a.make_policy("web", 1, 3, 100, 60)


def w(start: float, p95: float | None, requests: int) -> a.Window:
    return a.Window(start, p95, requests)


SLOW = [w(MINUTE - 60, 80.0, 500), w(MINUTE, 301.4, 412)]
FAST = [w(MINUTE - 60, 30.0, 500), w(MINUTE, 20.0, 412)]


def step(
    windows: list[a.Window], state: a.State, quantity: int, policy: a.Policy = POLICY
) -> tuple[a.State, a.Decision | None]:
    reading = a.read(policy, windows, NOW, state.changed_at)
    seen = a.observe(state, reading, NOW)
    return seen, a.decide(policy, seen, quantity, reading, NOW)


def said(decision: a.Decision | None) -> tuple[str, int, int, str] | None:
    return (
        None
        if decision is None
        else (decision.action, decision.before, decision.after, decision.message)
    )


@pytest.mark.parametrize(
    ("windows", "state", "quantity", "expected"),
    [
        # the p95 first seen above the goal: not yet (it must stay above for two ticks)
        (SLOW, a.State(), 1, None),
        (
            SLOW,
            a.State(above_since=NOW - 10),
            1,
            (
                "out",
                1,
                2,
                "web 1 -> 2: p95 301 ms > goal 100 ms (412 requests in the minute from "
                "19:04 UTC), above it for 10 s",
            ),
        ),
        (
            SLOW,
            a.State(above_since=NOW - 20),
            3,
            (
                "at-max",
                3,
                3,
                "web stays at 3: p95 301 ms > goal 100 ms (412 requests in the minute from "
                "19:04 UTC), above it for 20 s; 3 is the maximum",
            ),
        ),
        (
            FAST,
            a.State(below_since=NOW - 60),
            2,
            (
                "in",
                2,
                1,
                "web 2 -> 1: p95 20 ms < 50 ms, half the goal (412 requests in the minute "
                "from 19:04 UTC), for 60 s",
            ),
        ),
        (
            [],
            a.State(below_since=NOW - 75, changed_at=NOW - 100),
            3,
            ("in", 3, 2, "web 3 -> 2: quiet (0 requests in the last two minutes), for 75 s"),
        ),
        # below, but not for long enough, or the last change is too recent, or at the minimum
        (FAST, a.State(below_since=NOW - 59), 2, None),
        (FAST, a.State(below_since=NOW - 90, changed_at=NOW - 30), 2, None),
        (FAST, a.State(below_since=NOW - 90), 1, None),
        # outside the bounds: brought inside at once, whatever the p95
        (FAST, a.State(), 0, ("bounds", 0, 1, "web 0 -> 1: the policy's minimum")),
        (SLOW, a.State(), 5, ("bounds", 5, 3, "web 5 -> 3: the policy's maximum")),
    ],
)
def test_decisions(windows, state, quantity, expected):
    assert said(step(windows, state, quantity)[1]) == expected


@pytest.mark.parametrize(
    ("windows", "since", "expected"),
    [
        (SLOW, None, a.Reading("above", 301.4, 412, MINUTE)),
        (FAST, None, a.Reading("below", 20.0, 412, MINUTE)),
        ([w(MINUTE, 60.0, 100)], None, a.Reading("steady", 60.0, 100, MINUTE)),
        # the current minute has too few requests yet: the previous one is judged
        (
            [w(MINUTE - 60, 301.0, 500), w(MINUTE, 10.0, 3)],
            None,
            a.Reading("above", 301.0, 500, MINUTE - 60),
        ),
        # minutes that began before the last change measured the old formation
        (SLOW, MINUTE + 5, a.Reading("unknown", None, 912)),
        (
            [w(MINUTE - 60, 301.0, 500), w(MINUTE, 20.0, 30)],
            MINUTE - 1,
            a.Reading("below", 20.0, 30, MINUTE),
        ),
        # older than the previous minute: not looked at
        ([w(MINUTE - 120, 301.0, 500)], None, a.Reading("quiet", None, 0)),
        ([w(MINUTE, 900.0, 9)], None, a.Reading("quiet", None, 9)),
        ([], None, a.Reading("quiet", None, 0)),
    ],
)
def test_readings(windows, since, expected):
    assert a.read(POLICY, windows, NOW, since) == expected


def test_state_tracks_since_when_and_resets():
    above = a.Reading("above", 200.0, 50, MINUTE)
    first = a.observe(a.State(), above, NOW)
    assert (first.above_since, first.below_since) == (NOW, None)
    assert a.observe(first, above, NOW + 10).above_since == NOW  # it stays since then
    steady = a.observe(first, a.Reading("steady", 80.0, 50, MINUTE), NOW + 10)
    assert (steady.above_since, steady.below_since) == (None, None)
    quiet = a.observe(first, a.Reading("quiet"), NOW + 10)
    assert (quiet.above_since, quiet.below_since) == (None, NOW + 10)
    unknown = a.observe(quiet, a.Reading("unknown", None, 40), NOW + 20)
    assert (unknown.above_since, unknown.below_since) == (None, None)


def test_a_change_is_remembered_and_starts_the_wait_again():
    seen, decision = step(SLOW, a.State(above_since=NOW - 10), 1)
    assert decision is not None
    after = a.said(seen, decision, NOW)
    assert after is not None
    assert (after.above_since, after.changed_at, after.decisions) == (None, NOW, (decision,))
    # the next tick judges only minutes that began after the change
    assert step(SLOW, after, 2)[1] is None
    # scaling in: the below clock restarts with the change, one dyno per scale_in_after
    seen, decision = step(FAST, a.State(below_since=NOW - 60), 2)
    assert decision is not None
    after = a.said(seen, decision, NOW)
    assert after is not None and (after.below_since, after.changed_at) == (NOW, NOW)


def test_a_hold_is_said_once_per_reason():
    seen, decision = step(SLOW, a.State(above_since=NOW - 20), 3)
    assert decision is not None and decision.action == "at-max"
    once = a.said(seen, decision, NOW)
    assert once is not None and once.held == "at-max" and once.changed_at is None
    seen, again = step(SLOW, once, 3)
    assert again is not None and a.said(seen, again, NOW) is None
    # when the p95 comes down, the hold is forgotten: the next one is said again
    assert step(FAST, once, 3)[0].held == ""


def test_no_room_and_failure_messages():
    _, decision = step(SLOW, a.State(above_since=NOW - 10), 2)
    assert decision is not None
    held = a.no_room(decision, "not enough host memory: 1 dynos (app/web.3) need 512 MB")
    assert said(held) == (
        "no-room",
        2,
        2,
        "web stays at 2: p95 301 ms > goal 100 ms (412 requests in the minute from 19:04 UTC), "
        "above it for 10 s; the fleet's memory holds no more (not enough host memory: 1 dynos "
        "(app/web.3) need 512 MB)",
    )
    failed = a.failed(decision, "no usable hosts")
    assert failed.message.endswith("above it for 10 s; failed: no usable hosts")
    state = a.said(a.State(), failed, NOW)
    assert state is not None and state.changed_at == NOW  # judged again on a fresh minute


def test_decisions_kept_and_stored_round_trip():
    decision = a.Decision(NOW, "out", "web", 1, 2, 301.4, 100, 412, "web 1 -> 2: ...")
    state = a.State()
    for i in range(a.KEEP_DECISIONS + 2):
        state = a.said(state, replace(decision, at=NOW + i), NOW + i) or state
    assert len(state.decisions) == a.KEEP_DECISIONS
    assert state.decisions[-1].at == NOW + a.KEEP_DECISIONS + 1
    assert a.State.from_dict(state.to_dict()) == state
    assert a.Policy.from_dict(POLICY.to_dict()) == POLICY


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("worker", 1, 2, 100),
            "process type 'worker': only web dynos can be autoscaled (as on Heroku): the "
            "router's response times measure web dynos alone",
        ),
        (("web", 0, 2, 100), "--min: must be between 1 and 100, got 0"),
        (("web", 3, 2, 100), "--max: must be between --min (3) and 100"),
        (("web", 1, 2, 0), "--p95: must be a positive number of milliseconds, got 0"),
        (("web", 1, 2, 100, -1), "--scale-in-after: must be 0 or more seconds, not -1"),
    ],
)
def test_policy_errors_name_the_option(args, message):
    with pytest.raises(ValidationError) as caught:
        a.make_policy(*args)
    assert caught.value.message == message


def test_manual_scale_of_an_autoscaled_type_says_who_owns_it():
    error = a.owned_error("shop", a.make_policy("web", 1, 6, 300))
    assert str(error) == (
        "web of shop is autoscaled (1..6 dynos, p95 goal 300 ms): autoscaling owns its quantity "
        "(hint: dynoform ps:autoscale:disable web -a shop, then scale)"
    )
    assert a.scaled_types(["web=3", "my-worker-1", "web+1:standard-2x", "nonsense"]) == {
        "web",
        "my-worker",
    }
    assert POLICY.summary() == "web: 1..3 dynos, p95 goal 100 ms, scale in after 60 s"


def test_percentile_is_nearest_rank():
    assert a.percentile([], 95) is None
    assert a.percentile([0.3], 95) == 0.3
    values = [0.01] * 9 + [0.1] * 10 + [0.3]
    assert a.percentile(values, 95) == 0.1  # the 19th of 20
    assert a.percentile(values, 100) == 0.3
    assert a.percentile(list(range(1, 101)), 95) == 95
