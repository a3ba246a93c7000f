"""What the controller decides, as pure functions of what it observed.

- which runner hosts are lost (EC2 says terminated or stopped, or the host has not answered for
  a grace period), and so must be replaced;
- how many hosts to launch to keep the declared fleet size;
- which dynos crash-loop, reported once per threshold of restarts;
- where a lost host's dynos were, so `ps` can say `lost` until they run elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

GRACE = 10.0  # seconds a running host's sshd may stay silent before the host is lost
# Seconds between the leader's looks at what runs on every host (an SSH command to each, and
# the apps' records), unless the hosts that answer changed. The cheap part of its loop (EC2,
# each host's sshd, verdicts) runs every loop; with 8 hosts, a look every loop (2 s) took a
# sixth of this 2-core machine's CPU while nothing happened.
OBSERVE_EVERY = 6.0
# A host still not bootstrapped this long after launch was abandoned half-way (hosts:add killed):
# it is lost too, and replaced. hosts:add may legitimately take 20 minutes on AWS (boot, apt);
# a host the controller launched is given less: the controller that bootstraps it is gone.
BOOTSTRAP_LIMIT = 1200.0
ABANDONED_LIMIT = 300.0
MAX_LAUNCH = 4  # hosts launched at once: a mistake must not launch a fleet
CRASH_THRESHOLDS = (3, 10, 30, 100, 300, 1000)
ALIVE = ("pending", "running")


@dataclass(frozen=True)
class HostView:
    """A runner as the controller sees it: from EC2 and the host's record in the state store."""

    id: str
    state: str  # EC2's word; "terminated" for a recorded host EC2 no longer lists
    bootstrapped: bool
    age: float  # seconds since launch
    lost: str | None = None  # why it was declared lost already
    by_controller: bool = False  # launched by a controller (not by hosts:add)
    impaired: bool = False  # EC2's status checks fail (where the cloud has them)
    # launched by a controller that no longer leads (its host lost, its process restarted, or
    # its lease lost): no one will finish the bootstrap it began, so no one waits for it
    orphaned: bool = False


@dataclass(frozen=True)
class Verdict:
    host: str
    reason: str


def track_silence(
    silent_since: Mapping[str, float], answered: Mapping[str, bool], now: float
) -> dict[str, float]:
    """When each host first failed to answer, among those that still do not."""
    return {host: silent_since.get(host, now) for host, ok in sorted(answered.items()) if not ok}


def observation_due(
    last_at: float | None,
    now: float,
    answered: Iterable[str],
    answered_before: Iterable[str],
    every: float = OBSERVE_EVERY,
) -> bool:
    """Whether the leader looks at what runs now: its first loop, `every` seconds after its
    last look, or at once when the hosts that answer changed (a host lost, silent, back or
    new: their dynos must move, or may go there)."""
    if last_at is None or now - last_at >= every:
        return True
    return set(answered) != set(answered_before)


def judge(
    hosts: Sequence[HostView], silent_since: Mapping[str, float], now: float, grace: float = GRACE
) -> list[Verdict]:
    """The hosts to declare lost now (those declared before are not judged again).

    Silence is weaker evidence than EC2's word: at most one host is declared lost for silence
    at a time, and none while most of the running hosts look silent at once (then the leader's
    own network is the likelier fault: it waits, and a healthier leader may take over)."""
    verdicts: list[Verdict] = []
    silent: list[Verdict] = []
    for host in hosts:
        reason = _lost_reason(host, silent_since.get(host.id), now, grace)
        if host.lost is not None or not reason:
            continue
        (silent if reason.startswith(SILENT) else verdicts).append(Verdict(host.id, reason))
    if silent and not suspect_self(hosts, silent_since):
        verdicts.append(silent[0])
    return verdicts


SILENT = "no answer"


def suspect_self(hosts: Sequence[HostView], silent_since: Mapping[str, float]) -> bool:
    """More than half of two or more running, bootstrapped hosts silent at once."""
    running = [h for h in hosts if h.state == "running" and h.bootstrapped and h.lost is None]
    quiet = [h for h in running if h.id in silent_since]
    return len(running) >= 2 and len(quiet) * 2 > len(running)


def _lost_reason(host: HostView, silent: float | None, now: float, grace: float) -> str | None:
    if host.state in ("terminated", "shutting-down"):
        return "terminated"
    if host.state in ("stopping", "stopped"):
        return f"{host.state} (EC2)"
    if host.impaired and host.bootstrapped:
        return "EC2 status checks failed"
    if not host.bootstrapped and host.orphaned:
        return "abandoned half-way: the controller that launched it no longer leads"
    if not host.bootstrapped:
        limit = ABANDONED_LIMIT if host.by_controller else BOOTSTRAP_LIMIT
        if host.age > limit:
            return f"not bootstrapped {round(host.age)} s after launch"
        return None
    if host.state == "running" and silent is not None and now - silent >= grace:
        return f"{SILENT} from its sshd for {round(now - silent)} s"
    return None


def shortfall(desired: int | None, hosts: Iterable[HostView], launching: int = 0) -> int:
    """How many runners to launch now: none when no size is declared (a platform from before
    declared sizes, until `hosts:add` or `hosts:remove` declares one)."""
    if desired is None:
        return 0
    alive = sum(1 for h in hosts if h.lost is None and h.state in ALIVE)
    return max(0, min(MAX_LAUNCH, desired - alive - launching))


def crash_threshold(restarts: int) -> int:
    """The highest threshold a restart count has reached (0: none yet)."""
    reached = [t for t in CRASH_THRESHOLDS if restarts >= t]
    return reached[-1] if reached else 0


@dataclass(frozen=True)
class Placed:
    """One dyno on one host, as the controller last saw it."""

    app: str
    name: str  # web.1
    release: int

    def as_list(self) -> list[str | int]:
        return [self.app, self.name, self.release]


Placement = dict[str, list[Placed]]  # host id -> its dynos
PLACEMENT_KEY = "controller/placement.json"  # where the controller records it


def next_placement(
    previous: Mapping[str, list[Placed]],
    seen: Mapping[str, list[Placed]],
    unseen: Iterable[str],
) -> Placement:
    """The snapshot after a look at the fleet: what `seen` hosts run now; for hosts not seen
    (lost, or silent), what they ran before, less the dynos now running elsewhere."""
    result: Placement = {host: sorted(dynos, key=_order) for host, dynos in seen.items()}
    running = {(d.app, d.name) for dynos in seen.values() for d in dynos}
    for host in sorted(set(unseen)):
        left = [d for d in previous.get(host, []) if (d.app, d.name) not in running]
        if left:
            result[host] = left
    return result


def _order(placed: Placed) -> tuple[str, str, int]:
    return placed.app, placed.name, placed.release


def placement_from_dict(data: Mapping[str, list[list[str | int]]]) -> Placement:
    return {
        host: [Placed(str(a), str(n), int(r)) for a, n, r in dynos] for host, dynos in data.items()
    }


def placement_to_dict(placement: Mapping[str, list[Placed]]) -> dict[str, list[list[str | int]]]:
    return {host: [d.as_list() for d in dynos] for host, dynos in sorted(placement.items())}


def stranded(
    placement: Mapping[str, list[Placed]], hosts: Iterable[str], app: str
) -> list[tuple[str, Placed]]:
    """The app's dynos recorded on `hosts` (lost or silent ones): (host, dyno)."""
    return [
        (host, d) for host in sorted(set(hosts)) for d in placement.get(host, []) if d.app == app
    ]


def moved_from(placement: Mapping[str, list[Placed]], app: str, name: str) -> str | None:
    """The host a dyno was last seen on, if any (to say where a restarted dyno came from)."""
    for host, dynos in sorted(placement.items()):
        if any(d.app == app and d.name == name for d in dynos):
            return host
    return None
