"""Which Node.js an app asks for, and which published version satisfies it (pure).

The ask comes from package.json's `engines.node`, else `.nvmrc`, else `.node-version`. Ranges
are the part of npm's semver that people write for Node: `22.11.0`, `22`, `22.x`, `22.11.x`,
`^20.1`, `~20.1.2`, `>=18 <21`, `>=20`, `18 - 20`, alternatives with `||`, and nvm's aliases
`node`, `latest`, `current`, `lts/*`, `lts/<codename>`. Only plain X.Y.Z releases are chosen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provisioner.errors import ValidationError

Version = tuple[int, int, int]
FILES = ("package.json", ".nvmrc", ".node-version")
# nvm's LTS codenames (lts/<name>); `lts/*` is the newest of them.
LTS = {
    "argon": 4,
    "boron": 6,
    "carbon": 8,
    "dubnium": 10,
    "erbium": 12,
    "fermium": 14,
    "gallium": 16,
    "hydrogen": 18,
    "iron": 20,
    "jod": 22,
    "krypton": 24,
}
# The npm major each Node.js line ships with (nodejs.org's own builds); a line not listed takes
# the newest npm that accepts it.
NPM_LINE = {14: 6, 16: 8, 18: 10, 20: 10, 22: 10, 24: 11}
_RELEASE = re.compile(r"v?([0-9]+)\.([0-9]+)\.([0-9]+)")
_PARTIAL = re.compile(r"v?(\*|x|X|[0-9]+)(?:\.(\*|x|X|[0-9]+))?(?:\.(\*|x|X|[0-9]+))?")
_COMPARATOR = re.compile(r"\s*(\^|~>?|>=|<=|>|<|=)?\s*([^\s<>=^~]+|(?=\S))")
_ALIASES = {"node", "latest", "current", "stable"}
_TOP: Version = (1 << 30, 0, 0)


@dataclass(frozen=True)
class Bound:
    """One condition on a version: op is one of >=, >, <, <=."""

    op: str
    version: Version

    def allows(self, version: Version) -> bool:
        if self.op == ">=":
            return version >= self.version
        if self.op == ">":
            return version > self.version
        if self.op == "<":
            return version < self.version
        return version <= self.version


Range = tuple[tuple[Bound, ...], ...]  # alternatives (||) of conditions that must all hold


def release(text: str) -> Version | None:
    """A plain release X.Y.Z (a leading v allowed), else None (prereleases, junk)."""
    match = _RELEASE.fullmatch(text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def show(version: Version) -> str:
    return ".".join(map(str, version))


def parse_range(spec: str) -> Range:
    """npm's semver range syntax (the parts above), as alternatives of bounds."""
    text = spec.strip()
    if text.lower() in _ALIASES:
        text = "*"
    if text.lower().startswith("lts/"):
        text = str(_lts_major(spec, text[4:].lower()))
    alternatives = []
    for part in text.split("||"):
        hyphen = re.fullmatch(r"\s*(\S+)\s+-\s+(\S+)\s*", part)
        if hyphen:
            low, high = _partial(spec, hyphen[1]), _partial(spec, hyphen[2])
            alternatives.append((*_bounds(spec, ">=", low), *_bounds(spec, "<=", high)))
            continue
        words = _COMPARATOR.findall(part)
        if not words:
            words = [("", "*")]
        alternatives.append(
            tuple(b for op, w in words for b in _bounds(spec, op, _partial(spec, w)))
        )
    return tuple(alternatives)


def _lts_major(spec: str, name: str) -> int:
    if name == "*":
        return max(LTS.values())
    if name not in LTS:
        raise ValidationError(f"Node.js version {spec!r}", f"lts/ names one of {', '.join(LTS)}")
    return LTS[name]


Partial = tuple[int | None, int | None, int | None]


def _partial(spec: str, word: str) -> Partial:
    match = _PARTIAL.fullmatch(word)
    if not match:
        raise ValidationError(
            f"Node.js version {spec!r}", "expected e.g. 22, 22.x, 22.11.0, ^20.1, >=18 <21"
        )
    parts = [None if p is None or p in "*xX" else int(p) for p in match.groups()]
    # Anything after a wildcard is a wildcard too (22.x.5 means 22.x).
    for i in range(1, 3):
        if parts[i - 1] is None:
            parts[i] = None
    return (parts[0], parts[1], parts[2])


def _low(p: Partial) -> Version:
    return (p[0] or 0, p[1] or 0, p[2] or 0)


def _next(p: Partial) -> Version:
    """The first version after everything the partial covers (22.1 -> 22.2.0)."""
    major, minor, patch = p
    if major is None:
        return _TOP
    if minor is None:
        return (major + 1, 0, 0)
    if patch is None:
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)


def _bounds(spec: str, op: str, p: Partial) -> tuple[Bound, ...]:
    major, minor, patch = p
    if major is None:
        return (Bound(">=", (0, 0, 0)),) if op in ("", "=", ">=", "<=", "^", "~", "~>") else ()
    low = _low(p)
    if op in ("", "="):
        return (Bound(">=", low), Bound("<", _next(p)))
    if op == ">=":
        return (Bound(">=", low),)
    if op == ">":
        return (Bound(">=", _next(p)),)
    if op == "<":
        return (Bound("<", low),)
    if op == "<=":
        return (Bound("<", _next(p)),)
    if op in ("~", "~>"):
        return (
            Bound(">=", low),
            Bound("<", _next((major, minor, None) if minor is not None else p)),
        )
    # ^: the leftmost non-zero part may not change
    if major > 0 or minor is None:
        top = (major + 1, 0, 0)
    elif minor > 0 or patch is None:
        top = (0, minor + 1, 0)
    else:
        top = (0, 0, patch + 1)
    return (Bound(">=", low), Bound("<", top))


def satisfies(version: Version, spec: Range) -> bool:
    return any(all(b.allows(version) for b in bounds) for bounds in spec)


def newest(versions: Iterable[str], spec: str) -> str | None:
    """The newest plain release among `versions` that `spec` allows, else None."""
    wanted = parse_range(spec)
    found = [v for v in map(release, versions) if v is not None and satisfies(v, wanted)]
    return show(max(found)) if found else None


def nearby(versions: Iterable[str], spec: str, count: int = 4) -> list[str]:
    """The newest release of the lines nearest the major the spec names (newest first), to say
    what exists when nothing matches."""
    lines: dict[int, Version] = {}
    for version in filter(None, map(release, versions)):
        lines[version[0]] = max(lines.get(version[0], version), version)
    named = re.search(r"[0-9]+", spec)
    asked = int(named[0]) if named else max(lines, default=0)
    closest = sorted(lines, key=lambda major: (abs(major - asked), -major))[:count]
    return [show(lines[major]) for major in sorted(closest, reverse=True)]


def wanted(files: Mapping[str, bytes]) -> str | None:
    """The Node.js version the source asks for: engines.node, else .nvmrc, else .node-version."""
    engines = _engines(files.get("package.json"))
    if engines is not None:
        return engines
    for name in (".nvmrc", ".node-version"):
        if name in files:
            line = _first_line(files[name])
            if line:
                return line
    return None


def engines_field(files: Mapping[str, bytes], field: str) -> str | None:
    """package.json's engines.<field> when it is a non-empty string."""
    try:
        package = json.loads(files.get("package.json", b"{}").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None  # the buildpack says package.json is not valid JSON
    engines = package.get("engines") if isinstance(package, dict) else None
    value = engines.get(field) if isinstance(engines, dict) else None
    return value.strip() or None if isinstance(value, str) else None


def _engines(text: bytes | None) -> str | None:
    return None if text is None else engines_field({"package.json": text}, "node")


def _first_line(text: bytes) -> str | None:
    for line in text.decode("utf-8", "replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line
    return None


def npm_for(node: str, npm_engines: Mapping[str, str | None]) -> str | None:
    """The npm to lay out with a Node.js version: the newest whose engines.node accepts it, of
    at most the npm major that line ships with (NPM_LINE). `npm_engines`: version -> engines.node
    of the registry's npm releases."""
    return _newest_accepting(node, npm_engines, NPM_LINE.get(_major(node)))


def corepack_for(node: str, corepack_engines: Mapping[str, str | None]) -> str | None:
    """The newest corepack whose engines.node accepts the Node.js version (None: none does)."""
    return _newest_accepting(node, corepack_engines, None)


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _newest_accepting(
    node: str, engines: Mapping[str, str | None], max_major: int | None
) -> str | None:
    target = release(node)
    if target is None:
        raise ValidationError(f"Node.js version {node!r}", "must be like 22.11.0")
    best: Version | None = None
    for text, accepts in engines.items():
        version = release(text)
        if version is None or (max_major is not None and version[0] > max_major):
            continue
        try:
            ok = accepts is None or satisfies(target, parse_range(accepts))
        except ValidationError:
            ok = False  # an engines field we cannot read: not chosen
        if ok and (best is None or version > best):
            best = version
    return show(best) if best else None
