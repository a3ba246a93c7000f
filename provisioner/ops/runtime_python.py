"""Python as a runtime kind: the CPython version an app asks for, made once per platform.

A host makes it (ops.runtimes.ensure) from a prebuilt standalone build through `uv python
install` where it reaches GitHub (EC2), else by compiling CPython's pinned source tarball
(python.org's, or the same bytes from Debian's pool: the local cloud reaches only that one)
with --prefix=/app/.heroku/python, where the slug carries it. Either way the tree is stripped
of what a slug need not carry (test suite, the 75 MB static libpython, idle, optimised
bytecode): 3.14.7 compiled here is 41 MB unpacked, 14 MB packed.
"""

from __future__ import annotations

from provisioner.ops.runtime_uv import UV_WHEELS
from provisioner.ops.runtimes import Acquire
from provisioner.plan import pythons
from provisioner.plan.runtimes import Runtime

# What compiling CPython needs on a Debian host for the modules apps use (ssl, sqlite3,
# ctypes, the compressors, readline, uuid, dbm); not tk.
BUILD_DEPS = (
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "libffi-dev",
    "zlib1g-dev",
    "libbz2-dev",
    "liblzma-dev",
    "libsqlite3-dev",
    "libreadline-dev",
    "libncurses-dev",
    "uuid-dev",
    "libgdbm-dev",
    "libzstd-dev",
)

# $1 the output dir; $2 version, $3 minor, $4 the source's sha256, $5 uv's wheel URL, $6 its
# sha256, then the source URLs. Leaves $1/runtime.tar.gz: the interpreter's prefix, with
# .dynoform-origin saying where it came from. Its last line says why when it cannot.
_SCRIPT = r"""set -eu
out=$1 version=$2 minor=$3 sha=$4 uv_url=$5 uv_sha=$6; shift 6
work=$PWD
root=$work/root/app/.heroku/python
mkdir -p "$work/root/app/.heroku"

standalone() {
  curl -fsS --connect-timeout 10 --max-time 120 -o uv.whl "$uv_url" || return 1
  echo "$uv_sha  uv.whl" | sha256sum -c --status || { echo "uv's wheel is not the pinned one"; return 1; }
  python3 -c 'import zipfile; z = zipfile.ZipFile("uv.whl")
name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
open("uv", "wb").write(z.read(name))' || return 1
  chmod 0755 uv
  UV_PYTHON_INSTALL_DIR="$work/uv-python" UV_CACHE_DIR="$work/uv-cache" UV_HTTP_TIMEOUT=15 \
    UV_HTTP_CONNECT_TIMEOUT=10 UV_HTTP_RETRIES=0 UV_PYTHON_DOWNLOADS=automatic \
    timeout 180 ./uv python install --no-bin --no-config "$version" >uv.log 2>&1 || {
      echo "       no prebuilt build reachable: $(grep -i 'error\|cause' uv.log | tail -n 1)"
      return 1
    }
  mv "$(ls -d "$work/uv-python/cpython-$version-linux-"*)" "$root"
  echo "prebuilt standalone build (uv $UV_VERSION, python-build-standalone)" >"$root/.dynoform-origin"
}

from_source() {
  got=
  for url in "$@"; do
    if curl -fsS --connect-timeout 10 --max-time 900 -o src.tar.xz "$url" 2>curl.log; then
      if echo "$sha  src.tar.xz" | sha256sum -c --status; then got=$url; break; fi
      echo "       $url: not the pinned sha256"
    else
      echo "       $url: $(tail -n 1 curl.log)"
    fi
  done
  [ -n "$got" ] || return 1
  echo "       compiling CPython $version from $got ($(nproc) cores, no PGO/LTO)"
  tar -xJf src.tar.xz
  cd "Python-$version"
  ./configure -q --prefix=/app/.heroku/python --with-ensurepip=no --disable-test-modules \
    >"$work/build.log" 2>&1 &&
    make -j"$(nproc)" -s >>"$work/build.log" 2>&1 &&
    make -s install DESTDIR="$work/root" >>"$work/build.log" 2>&1 || {
      tail -n 30 "$work/build.log"; echo "compiling CPython $version failed (the lines above)"; exit 1; }
  cd "$work"
  echo "CPython $version built from source ($got)" >"$root/.dynoform-origin"
}

strip_tree() {
  lib=$root/lib/python$minor
  rm -rf "$lib/test" "$lib/idlelib" "$lib/turtledemo" "$lib/tkinter" "$root/share" \
    "$root"/lib/libpython*.a "$lib"/config-"$minor"-*/libpython*.a "$root"/bin/idle3*
  find "$root" \( -name '*.opt-1.pyc' -o -name '*.opt-2.pyc' \) -delete
  find "$root/bin" "$lib/lib-dynload" -type f \( -name "python$minor" -o -name '*.so' \) \
    -exec strip --strip-unneeded {} + 2>/dev/null || true
  "$root/bin/python$minor" -c 'import ssl, sqlite3, ctypes, zlib, bz2, lzma, decimal, uuid' || {
    echo "CPython $version lacks modules apps need (ssl, sqlite3, ctypes...)"; exit 1; }
}

UV_VERSION=$(echo "$uv_url" | sed -n 's/.*uv-\([0-9.]*\)-.*/\1/p')
echo "       trying a prebuilt standalone build (uv python install $version)"
if ! standalone; then
  if ! from_source "$@"; then
    echo "Python $version cannot be had on this platform: no prebuilt build reachable" \
      "and no source tarball reachable ($*)"
    exit 1
  fi
fi
strip_tree
tar -czf "$out/runtime.tar.gz" -C "$root" .
echo "       $(du -sm "$root" | cut -f1) MB unpacked, $(du -m "$out/runtime.tar.gz" | cut -f1) MB packed"
"""


class PythonKind:
    """Python: the version from .python-version, runtime.txt, Pipfile or requires-python."""

    kind: str = "python"
    files: tuple[str, ...] = pythons.FILES

    def wanted(self, files: dict[str, bytes]) -> str | None:
        return pythons.asked(files)

    def resolve(self, spec: str, platform: str) -> Runtime | None:
        if pythons.system_serves(spec, platform):
            return None  # the host's python3 satisfies requires-python: no runtime to make
        return Runtime("python", pythons.choose(spec), platform)

    def acquire(self, runtime: Runtime) -> Acquire:
        release = pythons.release(runtime.version)
        machine = runtime.platform.rsplit("-", 1)[-1]
        uv_url, uv_sha = UV_WHEELS[machine]
        args = (runtime.version, release.minor, release.sha256, uv_url, uv_sha, *release.urls)
        return Acquire(
            what=f"getting Python {runtime.version} (a prebuilt build, else compiled from "
            "source: about 3 minutes)",
            script=_SCRIPT,
            origin="standalone or source",
            args=args,
            apt=BUILD_DEPS,
        )


PYTHON = PythonKind()
