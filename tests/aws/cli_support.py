"""Running the CLI in-process against moto, as the tests/aws CLI tests do."""

from __future__ import annotations

from typing import Any

from provisioner.cli.main import main


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    """`dynoform ARGS` in this process: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
