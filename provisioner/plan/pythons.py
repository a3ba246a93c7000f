"""The Python version an app asks for, and the exact CPython dynoform gives it (pure).

As Heroku's python buildpack: `.python-version` (`3.14` or `3.14.7`), else `runtime.txt`
(`python-3.14.7`), else Pipfile's `[requires]`, else pyproject.toml's `requires-python` (the
newest supported minor that satisfies it, unless the host's own python3 does: then no runtime,
as when nothing is asked: a `requires-python = ">=3.11"` need not cost a compile).

Each supported minor has one pinned release, the newest patch whose source tarball's sha256
dynoform knows (as Heroku's buildpack pins them). The tarball is CPython's own; Debian's
`.orig.tar.xz` of 3.13 and 3.14 is the same bytes as python.org's (same sha256), so both URLs
serve one entry; the local cloud reaches only Debian's.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from provisioner.errors import DynoformError

FILES = (".python-version", "runtime.txt", "Pipfile", "pyproject.toml")
_PYORG = "https://www.python.org/ftp/python/{v}/Python-{v}.tar.xz"
_DEBIAN = "https://deb.debian.org/debian/pool/main/p/python{m}/python{m}_{v}.orig.tar.xz"


@dataclass(frozen=True)
class Release:
    """One pinned CPython release: its source tarball's sha256 and the URLs serving it."""

    version: str
    sha256: str
    debian: bool = False  # Debian's pool has its orig tarball (byte-identical to python.org's)

    @property
    def minor(self) -> str:
        return self.version.rsplit(".", 1)[0]

    @property
    def urls(self) -> tuple[str, ...]:
        pyorg = _PYORG.format(v=self.version)
        if not self.debian:
            return (pyorg,)
        return (pyorg, _DEBIAN.format(m=self.minor, v=self.version))


# Newest minor first. sha256s: python.org's release files (3.13.15 and 3.14.7 checked equal to
# Debian's Sources index for the orig tarballs).
RELEASES = (
    Release("3.14.7", "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81", True),
    Release("3.13.15", "1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76", True),
    Release("3.12.14", "5c8462af5790baf43a321a1559dbe0db06d1be4300fb85fb53c40060668e548a"),
    Release("3.11.15", "272179ddd9a2e41a0fc8e42e33dfbdca0b3711aa5abf372d3f2d51543d09b625"),
    Release("3.10.21", "a0da1e72132e950154eca0f6f47d5db828454700de20e5113667940d81e0db04"),
)
SUPPORTED = "3.10 to 3.14"
_EXACT = re.compile(r"3\.(1[0-9])(\.[0-9]+)?")
_CLAUSE = re.compile(r"(===|==|!=|<=|>=|~=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?")


def release(version: str) -> Release:
    """The pinned release of an exact version (e.g. 3.14.7)."""
    for known in RELEASES:
        if known.version == version:
            return known
    raise DynoformError(f"Python {version} is not a version dynoform knows")


def asked(files: dict[str, bytes]) -> str | None:
    """The version spec the app's files ask for ("3.14", "3.14.7", ">=3.12"), or None."""
    if ".python-version" in files:
        return _version_file(_text(files[".python-version"], ".python-version"))
    if "runtime.txt" in files:
        return _runtime_txt(_text(files["runtime.txt"], "runtime.txt"))
    if "Pipfile" in files and (spec := _pipfile(_text(files["Pipfile"], "Pipfile"))):
        return spec
    if "pyproject.toml" in files:
        return _requires_python(_text(files["pyproject.toml"], "pyproject.toml"))
    return None


# The python3 each host OS ships (what a build uses when no runtime is needed).
SYSTEM_PYTHONS = {"debian-13": "3.13.5", "debian-12": "3.11.2"}


def system_serves(spec: str, platform: str) -> bool:
    """A requires-python range that the platform's own python3 satisfies (an exact version
    asked for in .python-version or runtime.txt never is: the app named what it wants)."""
    system = SYSTEM_PYTHONS.get(platform.rsplit("-", 1)[0])
    if system is None or spec[:1].isdigit():
        return False
    return all(_satisfies(system, op, want, star) for op, want, star in _clauses(spec))


def choose(spec: str) -> str:
    """The exact pinned version for a spec; a one-line DynoformError when there is none."""
    if spec[:1].isdigit():
        return _exact(spec)
    clauses = _clauses(spec)
    for known in RELEASES:
        if all(_satisfies(known.version, op, want, star) for op, want, star in clauses):
            return known.version
    raise DynoformError(
        f"requires-python {spec!r} matches no Python dynoform offers ({_known()})",
        "change requires-python, or name a version in .python-version",
    )


def _exact(spec: str) -> str:
    match = _EXACT.fullmatch(spec)
    minor = f"3.{match.group(1)}" if match else None
    pinned = [r for r in RELEASES if r.minor == minor]
    if not pinned:
        raise DynoformError(
            f"Python {spec} is not supported: dynoform offers CPython {SUPPORTED} ({_known()})",
            "name one of them in .python-version, e.g. 3.14",
        )
    if match and match.group(2) is None:
        return pinned[0].version
    if spec not in {r.version for r in pinned}:
        raise DynoformError(
            f"Python {spec} is not a version dynoform knows: for {minor} it has "
            f"{', '.join(r.version for r in pinned)}",
            f"ask for {minor} to get the newest dynoform knows",
        )
    return spec


def _known() -> str:
    return ", ".join(r.version for r in RELEASES)


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DynoformError(f"{name} is not UTF-8 text") from error


def _version_file(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    if len(lines) != 1:
        raise DynoformError(
            f".python-version must name one version, e.g. 3.14; it has {len(lines)} lines",
            "keep one line like 3.14 (comments start with #)",
        )
    return _plain(lines[0].removeprefix("python-"), ".python-version")


def _runtime_txt(text: str) -> str:
    value = text.strip()
    if not value.startswith("python-"):
        raise DynoformError(f"runtime.txt says {value[:40]!r}; expected e.g. python-3.14.7")
    return _plain(value.removeprefix("python-"), "runtime.txt")


def _plain(value: str, name: str) -> str:
    if not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)?", value):
        raise DynoformError(
            f"{name} says {value[:40]!r}; expected a CPython version like 3.14 or 3.14.7"
        )
    return value


def _pipfile(text: str) -> str | None:
    requires = _toml(text, "Pipfile").get("requires", {})
    value = requires.get("python_full_version") or requires.get("python_version")
    return _plain(str(value), "Pipfile [requires]") if value else None


def _requires_python(text: str) -> str | None:
    value = _toml(text, "pyproject.toml").get("project", {}).get("requires-python")
    if value is None:
        return None
    spec = str(value).strip()
    _clauses(spec)  # checked now: a bad specifier fails before any runtime is looked at
    return spec


def _toml(text: str, name: str) -> dict[str, dict[str, object]]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DynoformError(f"{name} cannot be read: {error}") from error


def _clauses(spec: str) -> list[tuple[str, tuple[int, ...], bool]]:
    clauses = []
    for part in spec.split(","):
        match = _CLAUSE.fullmatch(part.strip())
        if not match:
            raise DynoformError(
                f"requires-python {spec!r}: cannot read {part.strip()!r}",
                "use clauses like >=3.12 or ==3.13.*",
            )
        version = tuple(int(x) for x in match.group(2).split("."))
        clauses.append((match.group(1), version, match.group(3) is not None))
    return clauses


def _satisfies(version: str, op: str, want: tuple[int, ...], star: bool) -> bool:
    have = tuple(int(x) for x in version.split("."))
    if star:  # ==3.12.* / !=3.12.*: a prefix match
        same = have[: len(want)] == want
        return same if op == "==" else not same if op == "!=" else False
    if op == "~=":  # ~=3.11 is >=3.11 and ==3.*; ~=3.11.2 is >=3.11.2 and ==3.11.*
        return _cmp(have, want) >= 0 and have[: len(want) - 1] == want[:-1]
    order = _cmp(have, want)
    return {
        "==": order == 0,
        "===": order == 0,
        "!=": order != 0,
        "<=": order <= 0,
        ">=": order >= 0,
        "<": order < 0,
        ">": order > 0,
    }[op]


def _cmp(have: tuple[int, ...], want: tuple[int, ...]) -> int:
    width = max(len(have), len(want))
    a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return (a > b) - (a < b)
