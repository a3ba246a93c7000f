"""View models (pure): what the pages show, made from what the operations return.

Nothing here reads the world; `gather` hands in the operations' results. Config values never
come here: only their names. An add-on's secret and resource stay out too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provisioner.fleet import HostRow
from provisioner.model.addons import Addon
from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.model.sizes import DYNO_SIZES
from provisioner.ops.apps import AppRow
from provisioner.ops.domains import DomainRow
from provisioner.ops.ps import Dyno

# How dyno states sort on a page: the ones to look at first.
STATE_ORDER = ("crashed", "starting", "stopping", "lost", "up")
RELEASES_SHOWN = 20


@dataclass(frozen=True)
class Count:
    label: str
    count: int


@dataclass(frozen=True)
class AppCard:
    name: str
    url: str | None
    release: str | None
    states: list[Count]
    hosts: list[Count]
    error: str | None = None

    @property
    def dynos(self) -> int:
        return sum(c.count for c in self.states)


@dataclass(frozen=True)
class Vitals:
    """What a host says of itself: /proc/loadavg and /proc/meminfo."""

    load1: float
    load5: float
    load15: float
    memory_mb: int | None = None
    available_mb: int | None = None


@dataclass(frozen=True)
class HostLoad:
    id: str
    role: str
    address: str
    zone: str
    type: str
    state: str
    dynos: int | None
    reserved_mb: int  # the memory of the dynos' sizes: what placement counts
    memory_mb: int  # the instance type's memory
    rss_mb: float | None  # what the dynos use now, where known
    vitals: Vitals | None

    @property
    def reserved_percent(self) -> int:
        return round(100 * self.reserved_mb / self.memory_mb) if self.memory_mb else 0


@dataclass(frozen=True)
class Overview:
    apps: list[AppCard]
    hosts: list[HostLoad]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReleaseRow:
    name: str
    description: str
    created_by: str
    created_at: str
    status: str
    current: bool


@dataclass(frozen=True)
class Process:
    type: str
    quantity: int
    size: str


@dataclass(frozen=True)
class AddonRow:
    name: str
    kind: str
    plan: str
    state: str
    attached_as: list[str]  # the config var names it sets on this app


@dataclass(frozen=True)
class AppPage:
    name: str
    url: str | None
    release: str | None
    maintenance: bool
    formation: list[Process]
    dynos: list[Dyno]
    states: list[Count]
    releases: list[ReleaseRow]
    rollback_to: list[str]  # succeeded releases other than the current one
    config_names: list[str]
    domains: list[DomainRow]
    addons: list[AddonRow]


def counts(labels: Iterable[str], order: Sequence[str] = ()) -> list[Count]:
    """Each label with how often it occurs: those of `order` first in that order, then by name."""
    tally = Counter(labels)
    rank = {label: i for i, label in enumerate(order)}
    keys = sorted(tally, key=lambda k: (rank.get(k, len(rank)), k))
    return [Count(k, tally[k]) for k in keys]


def app_cards(
    rows: Sequence[AppRow], urls: Mapping[str, str | None], dynos: Mapping[str, Sequence[Dyno]]
) -> list[AppCard]:
    return [
        AppCard(
            name=row.name,
            url=urls.get(row.name),
            release=row.release,
            states=counts((d.state for d in dynos.get(row.name, ())), STATE_ORDER),
            hosts=counts(d.host for d in dynos.get(row.name, ())),
            error=row.error,
        )
        for row in sorted(rows, key=lambda r: r.name)
    ]


def host_loads(
    rows: Sequence[HostRow],
    dynos: Iterable[Dyno],
    memory_of: Callable[[str], int],
    vitals: Mapping[str, Vitals],
) -> list[HostLoad]:
    """Each host with what runs on it: its dynos' reserved memory against its own, and RSS."""
    reserved: Counter[str] = Counter()
    rss: dict[str, float] = {}
    for dyno in dynos:
        size = DYNO_SIZES.get(dyno.size)
        reserved[dyno.host] += size.memory_mb if size else 0
        if dyno.memory_mb is not None:
            rss[dyno.host] = rss.get(dyno.host, 0.0) + dyno.memory_mb
    return [
        HostLoad(
            id=row.id,
            role=row.role,
            address=row.private_ip or "",
            zone=row.zone,
            type=row.type,
            state=row.state,
            dynos=row.dynos,
            reserved_mb=reserved[row.id],
            memory_mb=memory_of(row.type),
            rss_mb=round(rss[row.id], 1) if row.id in rss else None,
            vitals=vitals.get(row.id),
        )
        for row in sorted(rows, key=lambda r: (r.role, r.zone, r.id))
    ]


def parse_vitals(text: str) -> Vitals | None:
    """`cat /proc/loadavg /proc/meminfo` -> Vitals (None when the first line is not loadavg)."""
    lines = text.splitlines()
    try:
        load1, load5, load15 = (float(x) for x in lines[0].split()[:3])
    except (IndexError, ValueError):
        return None
    memory: dict[str, int] = {}
    for line in lines[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            memory[key] = int(parts[0]) // 1024
    return Vitals(load1, load5, load15, memory.get("MemTotal"), memory.get("MemAvailable"))


def release_rows(releases: Sequence[Release], current: int | None) -> list[ReleaseRow]:
    """Newest first, as the operation lists them; at most RELEASES_SHOWN."""
    return [
        ReleaseRow(
            name=r.name,
            description=r.description,
            created_by=r.created_by,
            created_at=short_time(r.created_at),
            status=r.status,
            current=r.version == current,
        )
        for r in releases[:RELEASES_SHOWN]
    ]


def addon_rows(addons: Sequence[Addon], app: str) -> list[AddonRow]:
    return [
        AddonRow(
            name=a.name,
            kind=a.kind,
            plan=a.plan,
            state=a.state,
            attached_as=sorted(att.var for att in a.attachments if att.app == app),
        )
        for a in sorted(addons, key=lambda a: a.name)
    ]


def app_page(
    card: AppCard,
    maintenance: bool,
    formation: Mapping[str, ProcessFormation],
    dynos: Sequence[Dyno],
    releases: Sequence[Release],
    current: int | None,
    config_names: Iterable[str],
    domains: Sequence[DomainRow],
    addons: Sequence[Addon],
) -> AppPage:
    return AppPage(
        name=card.name,
        url=card.url,
        release=card.release,
        maintenance=maintenance,
        formation=[Process(k, v.quantity, v.size) for k, v in sorted(formation.items())],
        dynos=list(dynos),
        states=counts((d.state for d in dynos), STATE_ORDER),
        releases=release_rows(releases, current),
        rollback_to=[r.name for r in releases if r.status == "succeeded" and r.version != current],
        config_names=sorted(config_names),
        domains=list(domains),
        addons=addon_rows(addons, card.name),
    )


def short_time(iso: str | None) -> str:
    """'2026-11-30T22:18:38.123+00:00' -> '2026-11-30 22:18:38' (UTC); unparsable: as given."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
