"""`git-remote-dynoform`: lets `git push dynoform main` deploy (remote URL `dynoform::APP`).

Git runs `git-remote-dynoform <remote> <url>` and talks the remote-helper protocol on stdin and
stdout. We offer `push`: each pushed commit is deployed like `dynoform deploy`, with the build
output on stderr (the pusher's terminal); a failed build or release fails the push.
The target comes from $DYNOFORM_TARGET or `git config dynoform.target` (default: local).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TextIO

from provisioner.errors import DynoformError
from provisioner.model.names import validate_app_name


def app_from_url(url: str) -> str:
    name = url.split("::", 1)[1] if "::" in url else url
    name = name.removeprefix("dynoform://").strip("/")
    return validate_app_name(name)


def target_name() -> str:
    if os.environ.get("DYNOFORM_TARGET"):
        return os.environ["DYNOFORM_TARGET"]
    result = subprocess.run(
        ["git", "config", "--get", "dynoform.target"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "local"


def deploy_ref(app: str, ref: str) -> str | None:
    """Deploy the commit ref points at; returns an error text, or None on success."""
    argv = [sys.executable, "-m", "provisioner", "-t", target_name(), "deploy", "-a", app]
    argv += ["--ref", ref, "."]
    # The CLI streams the build to stderr, which git shows on the pusher's terminal.
    result = subprocess.run(argv, stdout=sys.stderr, check=False)
    return None if result.returncode == 0 else "deploy failed"


def serve(app: str, stdin: TextIO, stdout: TextIO) -> None:
    pushes: list[str] = []
    for raw in stdin:
        line = raw.rstrip("\n")
        if line == "capabilities":
            stdout.write("push\noption\n\n")
        elif line.startswith("option "):
            stdout.write("unsupported\n")
        elif line.startswith("list"):
            stdout.write("\n")  # we keep no refs: every push is a deploy
        elif line.startswith("push "):
            pushes.append(line[len("push ") :])
            continue
        elif line == "" and pushes:
            for spec in pushes:
                src, _, dst = spec.lstrip("+").partition(":")
                error = deploy_ref(app, src) if src else "deleting refs is not supported"
                stdout.write(f"ok {dst}\n" if error is None else f"error {dst} {error}\n")
            stdout.write("\n")
            pushes = []
        elif line == "":
            break
        stdout.flush()


def main() -> None:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: git-remote-dynoform <remote> dynoform::APP\n")
        sys.exit(2)
    try:
        app = app_from_url(sys.argv[2])
    except DynoformError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    serve(app, sys.stdin, sys.stdout)
