"""uv as a runtime every build gets: the pinned uv binary, made once per platform from its PyPI
wheel (sha256-checked) and kept in the bucket like Python and Node.js (ops.runtimes.ensure).

The python buildpack installs an app's requirements with it from $DYNOFORM_UV_RUNTIME/bin/uv,
so an app's first build no longer installs uv into its own build cache (~3 s of a cold deploy).
The runtime is only bin/uv; builds read it in place (read-only) and never copy it into the slug.
"""

from __future__ import annotations

from provisioner.errors import DynoformError
from provisioner.ops.runtimes import Acquire
from provisioner.plan.runtimes import Runtime

# uv from PyPI, pinned (its wheel's sha256), per machine. The python buildpack names the same
# version (UV_VERSION in buildpacks/python/bin/compile; a unit test keeps them equal), and the
# Python runtime's maker runs it for `uv python install` (ops/runtime_python.py).
UV_VERSION = "0.13.9"
UV_WHEELS = {
    "x86_64": (
        "https://files.pythonhosted.org/packages/3d/aa/"
        "26d64642d808de4a652579ef950d7cd2d37f080a8babf9c67c6b75fc4c3f/"
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    "aarch64": (
        "https://files.pythonhosted.org/packages/fe/2f/"
        "51a5de367c602592c018a42a23d57fba5f2689fe6c3bf025dcf043b39c61/"
        "uv-0.13.9-py3-none-manylinux_2_28_aarch64.whl",
        "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",
    ),
}

# $1 the output dir, $2 the wheel's URL, $3 its sha256, $4 uv's version. Leaves
# $1/runtime.tar.gz holding bin/uv, which must say it is that version.
SCRIPT = r"""set -eu
out=$1 url=$2 sha=$3 version=$4
echo "       downloading uv $version's wheel from PyPI"
curl -fsS --retry 3 --connect-timeout 10 --max-time 300 -o uv.whl -- "$url"
echo "$sha  uv.whl" | sha256sum -c --status ||
  { echo "uv's wheel from $url is not the pinned one (its sha256 is not $sha)"; exit 5; }
mkdir -p root/bin
python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
open(sys.argv[2], "wb").write(z.read(name))' uv.whl root/bin/uv
chmod 0755 root/bin/uv
found=$(root/bin/uv --version)
case $found in "uv $version" | "uv $version "*) ;; *)
  echo "the wheel's uv says '$found', not uv $version"; exit 6 ;;
esac
tar -cf - -C root . | gzip -6 >"$out/runtime.tar.gz"
echo "       $found: $(du -sm root | cut -f1) MB unpacked, $(du -m "$out/runtime.tar.gz" | cut -f1) MB packed"
"""


class UvKind:
    """The `Kind` of ops/runtimes.py for uv: no file asks for it; every build gets the pin."""

    kind: str = "uv"
    files: tuple[str, ...] = ()

    def wanted(self, files: dict[str, bytes]) -> str | None:
        return UV_VERSION

    def resolve(self, spec: str, platform: str) -> Runtime | None:
        """None where PyPI has no pinned wheel for the machine (the buildpack then says so)."""
        if platform.rsplit("-", 1)[-1] not in UV_WHEELS:
            return None
        return Runtime(self.kind, spec, platform)

    def acquire(self, runtime: Runtime) -> Acquire:
        machine = runtime.platform.rsplit("-", 1)[-1]
        if runtime.version != UV_VERSION or machine not in UV_WHEELS:
            raise DynoformError(f"no pinned wheel of uv {runtime.version} for {runtime.platform}")
        url, sha256 = UV_WHEELS[machine]
        return Acquire(
            what=f"downloading uv {runtime.version} from PyPI",
            script=SCRIPT,
            origin="pypi",
            args=(url, sha256, runtime.version),
            timeout=600,
        )


UV = UvKind()
