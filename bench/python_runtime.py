"""The first build of a new Python version through the source path, and what every later build
pays: `python -m bench.python_runtime [VERSION]` (default 3.14; root, the local cloud up).

On one runner it makes the runtime under a platform name of its own (so the shared platform's
copy, in the bucket and on the hosts, is neither used nor touched): the first time as a build
would (a prebuilt build where reachable, else compiled from source; the host's compilers are
installed the first time only, and not counted when already there), then again from the bucket
on a host without it, then from the host's copy; then removes what it made. Prints the figures.
"""

from __future__ import annotations

import json
import sys
import time

from provisioner.context import Context
from provisioner.ops.runtime_python import PYTHON
from provisioner.ops.runtimes import ensure, host_platform, read_pointer
from provisioner.plan.runtimes import Runtime


def measure(spec: str) -> dict[str, object]:
    with Context.open("local") as ctx:
        fleet = ctx.fleet()
        host = fleet.ready()[0]
        conn = fleet.connect(host)
        exact = PYTHON.resolve(spec, host_platform(conn))
        if exact is None:  # the host's own python3 satisfies the spec: nothing to make
            raise SystemExit(f"python {spec}: the host's python3 satisfies it, no runtime to make")
        runtime = Runtime("python", exact.version, "bench" + exact.platform)
        blobs = ctx.blobs()
        lines: list[str] = []

        def timed() -> float:
            started = time.monotonic()
            ensure(conn, blobs, runtime, lambda: PYTHON.acquire(runtime), print, lines.append)
            return round(time.monotonic() - started, 1)

        def drop_host_copy() -> None:
            conn.run(["rm", "-rf", "--", runtime.host_dir], sudo=True, check=True)

        try:
            first = timed()
            pointer = read_pointer(blobs, runtime) or {}
            drop_host_copy()
            from_bucket = timed()
            host_copy = timed()
        finally:
            drop_host_copy()
            blobs.delete_prefix(runtime.pointer_key.removesuffix(".json"))
    made = [
        x.strip()
        for x in lines
        if any(w in x for w in ("compiling CPython", "no prebuilt", "MB unpacked"))
    ]
    return {
        "python_version": runtime.version,
        "python_first_build_s": first,
        "python_from_bucket_s": from_bucket,
        "python_from_host_copy_s": host_copy,
        "python_runtime_tarball_mb": round(int(pointer.get("size", 0)) / 1e6, 1),
        "python_made": made,
    }


def main() -> None:
    figures = measure(sys.argv[1] if len(sys.argv) > 1 else "3.14")
    print(
        f"Python {figures['python_version']}: first build (once per platform) "
        f"{figures['python_first_build_s']} s; from the bucket on another host "
        f"{figures['python_from_bucket_s']} s; from the host's copy "
        f"{figures['python_from_host_copy_s']} s; tarball "
        f"{figures['python_runtime_tarball_mb']} MB"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
