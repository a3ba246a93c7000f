"""Metrics, the pure part: what a host says about its dynos' memory and CPU (a command plus a
parser), the numbers the controller publishes from it, and CloudWatch's answers turned into
what `dynoform metrics` shows (AppMetrics).

Memory and CPU come from systemd (`MemoryCurrent`, `MemoryMax`, `CPUUsageNSec`, `NRestarts`).
Where the dyno's cgroup has no memory or CPU controller (cgroup v1 without delegation, as in the
local cloud's containers) systemd reports them `[not set]`; then the figures are summed over the
processes of the unit's cgroup from /proc: their resident memory, and their CPU time (that of
processes already gone is not counted there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model.names import validate_app_name
from provisioner.plan.units import UNIT_PREFIX, parse_unit_name

PERIOD = 60  # seconds: one point per minute, as the ALB publishes
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
PERCENTILES = ("p50", "p95", "p99")
_MIB = 2**20

# sampling the dynos of a host ----------------------------------------------------------------
SAMPLE_PROPERTIES = "Id,ActiveState,MemoryCurrent,MemoryMax,CPUUsageNSec,NRestarts"
PROCS_MARK = "#procs"
# Run on the host as `python3 -c SAMPLE_SCRIPT PROPERTIES PATTERN`: systemctl's properties of
# the units, then (cgroup v1 only: the glob is empty on v2) each dyno cgroup's resident bytes
# and CPU nanoseconds, summed over its processes.
SAMPLE_SCRIPT = """\
import glob, os, subprocess, sys
props, pattern = sys.argv[1:3]
shown = subprocess.run(["systemctl", "show", "--property=" + props, pattern],
                       capture_output=True, text=True).stdout
print(shown.rstrip("\\n"))
print()
print("#procs")
page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
for cg in sorted(glob.glob("/sys/fs/cgroup/systemd/*.slice/" + pattern)):
    rss = cpu = 0
    try:
        pids = open(cg + "/cgroup.procs").read().split()
    except OSError:
        continue
    for pid in pids:
        try:
            stat = open("/proc/" + pid + "/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        cpu += int(stat[11]) + int(stat[12])  # utime, stime (clock ticks)
        rss += int(stat[21])  # resident pages
    print(os.path.basename(cg), rss * page, cpu * 10**9 // tick)
"""


def sample_argv(app: str | None = None) -> list[str]:
    """argv sampling the loaded dyno units of one app (or of all apps) on a host."""
    pattern = (
        f"{UNIT_PREFIX}{validate_app_name(app)}.*.service" if app else f"{UNIT_PREFIX}*.service"
    )
    return ["python3", "-c", SAMPLE_SCRIPT, SAMPLE_PROPERTIES, pattern]


@dataclass(frozen=True)
class Sample:
    """One running dyno's figures at one moment (cumulative CPU: a rate needs two samples)."""

    app: str
    dyno: str  # web.1
    unit: str
    memory_bytes: int | None
    memory_limit_bytes: int | None
    cpu_nsec: int | None
    restarts: int


def parse_sample(text: str) -> list[Sample]:
    """The output of sample_argv -> the running dynos' samples, one-off dynos left out (each
    run of `scheduler.N` or `run.N` would be a new metric, billed on AWS, for a minute)."""
    units, _, procs_text = text.partition(PROCS_MARK)
    procs = {}
    for line in procs_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            procs[parts[0]] = (int(parts[1]), int(parts[2]))
    samples = []
    for block in units.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        unit = props.get("Id", "")
        inst = parse_unit_name(unit)
        if inst is None or inst.is_oneoff or props.get("ActiveState") != "active":
            continue
        rss, cpu = procs.get(unit, (None, None))
        memory = _number(props.get("MemoryCurrent"))
        samples.append(
            Sample(
                app=inst.app,
                dyno=inst.name,
                unit=unit,
                memory_bytes=memory if memory is not None else rss,
                memory_limit_bytes=_number(props.get("MemoryMax")),
                cpu_nsec=_number(props.get("CPUUsageNSec"), cpu),
                restarts=_number(props.get("NRestarts")) or 0,
            )
        )
    return sorted(samples, key=lambda s: (s.app, s.dyno))


def _number(text: str | None, otherwise: int | None = None) -> int | None:
    """systemd's number, or `otherwise` for `[not set]`, `infinity` and the like."""
    return int(text) if text and text.isdigit() else otherwise


def cpu_percent(before: tuple[float, int] | None, now: float, cpu_nsec: int | None) -> float | None:
    """Percent of one core used between two samples (`before` = (when, cpu_nsec)); None without
    a usable earlier sample (the first one, or a restarted unit whose counter went back)."""
    if before is None or cpu_nsec is None:
        return None
    at, used = before
    if now <= at or cpu_nsec < used:
        return None
    return round((cpu_nsec - used) / ((now - at) * 1e9) * 100.0, 1)


# what users read ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouterSummary:
    """The router's figures over the whole window."""

    requests: int
    responses: dict[str, int]  # 2xx, 3xx, 4xx, 5xx: answered by the app's dynos
    errors_5xx: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class DynoSummary:
    """One dyno's latest figures in the window."""

    name: str
    memory_mb: float | None
    memory_limit_mb: float | None
    cpu_percent: float | None
    restarts: int | None


@dataclass(frozen=True)
class DynoPoint:
    memory_mb: float | None
    cpu_percent: float | None


@dataclass(frozen=True)
class Point:
    """One minute: the router's figures and each dyno's."""

    at: str  # ISO 8601, UTC, the minute's start
    requests: int
    responses: dict[str, int]
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    dynos: dict[str, DynoPoint] = field(default_factory=dict)


@dataclass(frozen=True)
class AppMetrics:
    """`dynoform metrics`: the window's summary and its minutes, oldest first."""

    app: str
    since_s: int
    start: str
    end: str
    router: RouterSummary
    dynos: list[DynoSummary]
    points: list[Point]

    def to_json(self) -> dict[str, Any]:
        """A dict of JSON types (json.dumps takes it as is)."""
        return asdict(self)


Series = Mapping[float, float | None]  # minute start (epoch seconds) -> value


def app_metrics(
    app: str,
    since_s: int,
    start: float,
    end: float,
    router: Mapping[str, Series],
    window: Mapping[str, float | None],
    dynos: Mapping[str, Mapping[str, Series]],
) -> AppMetrics:
    """CloudWatch's answers -> what `dynoform metrics` shows: the router's per-minute series
    and whole-window percentiles (seconds), each dyno's per-minute series."""
    return AppMetrics(
        app=app,
        since_s=since_s,
        start=iso(start),
        end=iso(end),
        router=router_summary(router, window),
        dynos=dyno_summaries(dynos),
        points=points(start, end, router, dynos),
    )


def router_summary(
    minutes: Mapping[str, Series], window: Mapping[str, float | None]
) -> RouterSummary:
    """The per-minute series (`requests`, `2xx`.., `p95`..) and the whole-window percentiles
    (`p50`.., in seconds, as CloudWatch answers) -> the window's figures."""
    responses = {c: _total(minutes.get(c, {})) for c in STATUS_CLASSES}
    return RouterSummary(
        requests=_total(minutes.get("requests", {})),
        responses=responses,
        errors_5xx=responses["5xx"],
        p50_ms=_ms(window.get("p50")),
        p95_ms=_ms(window.get("p95")),
        p99_ms=_ms(window.get("p99")),
    )


def points(
    start: float,
    end: float,
    router: Mapping[str, Series],
    dynos: Mapping[str, Mapping[str, Series]],
) -> list[Point]:
    """Every minute of [start, end), those without requests included (charts need the gaps).
    `dynos` is dyno name -> `memory` (bytes), `cpu` (percent) series."""
    out = []
    for at in range(int(start) // PERIOD * PERIOD, int(end), PERIOD):
        minute = float(at)
        out.append(
            Point(
                at=iso(minute),
                requests=_count(router.get("requests", {}).get(minute)),
                responses={c: _count(router.get(c, {}).get(minute)) for c in STATUS_CLASSES},
                p50_ms=_ms(router.get("p50", {}).get(minute)),
                p95_ms=_ms(router.get("p95", {}).get(minute)),
                p99_ms=_ms(router.get("p99", {}).get(minute)),
                dynos={
                    name: DynoPoint(
                        _mb(series.get("memory", {}).get(minute)),
                        _round(series.get("cpu", {}).get(minute)),
                    )
                    for name, series in sorted(dynos.items())
                    if minute in series.get("memory", {}) or minute in series.get("cpu", {})
                },
            )
        )
    return out


def dyno_summaries(dynos: Mapping[str, Mapping[str, Series]]) -> list[DynoSummary]:
    """Each dyno's latest value of each figure; dynos with nothing in the window left out."""
    out = []
    for name in sorted(dynos, key=_dyno_order):
        series = dynos[name]
        if not any(series.values()):
            continue
        restarts = _latest(series.get("restarts", {}))
        out.append(
            DynoSummary(
                name=name,
                memory_mb=_mb(_latest(series.get("memory", {}))),
                memory_limit_mb=_mb(_latest(series.get("limit", {}))),
                cpu_percent=_round(_latest(series.get("cpu", {}))),
                restarts=None if restarts is None else int(restarts),
            )
        )
    return out


def _dyno_order(name: str) -> tuple[str, int]:
    kind, _, index = name.partition(".")
    return kind, int(index) if index.isdigit() else 0


def _latest(series: Series) -> float | None:
    known = [(at, v) for at, v in series.items() if v is not None]
    return max(known)[1] if known else None


def _total(series: Series) -> int:
    return sum(_count(v) for v in series.values())


def _count(value: float | None) -> int:
    return int(round(value)) if value else 0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value / _MIB, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def by_minute(stamps: Iterable[datetime], values: Iterable[float]) -> dict[float, float | None]:
    """CloudWatch's timestamps and values -> minute start -> value."""
    return {
        float(int(t.timestamp()) // PERIOD * PERIOD): v
        for t, v in zip(stamps, values, strict=False)
    }


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> int:
    """`--since`: `90s`, `30m`, `1h`, `2d` (or plain seconds) -> seconds."""
    value = text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in _UNITS else (value, "s")
    if not number.isdigit() or int(number) == 0:
        raise ValidationError(f"--since {text!r}", "a duration such as 90s, 30m, 1h or 2d")
    return int(number) * _UNITS[unit]
