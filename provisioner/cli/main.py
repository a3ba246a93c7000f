"""The `dynoform` command: Heroku's vocabulary, `apps:create` and `apps create` alike."""

from __future__ import annotations

import gc
import sys
import threading

import typer

from provisioner.cli import common
from provisioner.cli.groups import LazyGroup

try:  # Typer 0.29+ bundles its own Click; older Typer uses the click package.
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]
from provisioner.errors import DynoformError

app = typer.Typer(
    name="dynoform",
    help=(
        "Heroku's workflow on your own EC2 hosts, or offline on the local cloud.\n\n"
        "Example: dynoform apps:create myapp && dynoform deploy -a myapp ."
    ),
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    target: str = typer.Option(
        "local", "--target", "-t", envvar="DYNOFORM_TARGET", help="Where the platform lives."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Skip confirmations."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr."),
) -> None:
    """Global options may stand anywhere on the command line."""
    state = common.g()
    state.target_name, state.json, state.yes, state.verbose = target, json_out, yes, verbose


# Options that belong to the root and may be written anywhere; hoisted before the command.
_GLOBAL_FLAGS = {"--json", "--yes", "-y", "-v", "--verbose", "-vv"}
_GLOBAL_VALUED = {"--target", "-t"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Hoist global options to the front and split `apps:create` into `apps create`."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _GLOBAL_FLAGS:
            hoisted.append(arg)
        elif arg in _GLOBAL_VALUED and i + 1 < len(argv):
            hoisted.extend([arg, argv[i + 1]])
            i += 1
        elif arg.startswith("--target="):
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    for index, arg in enumerate(rest):
        if arg == "--":
            break
        if not arg.startswith("-"):
            if ":" in arg:
                rest[index : index + 1] = arg.split(":")
            break
    return hoisted + rest


def _aws_failure(exc: Exception) -> DynoformError | None:
    """What a botocore error means to the user; None for any other error."""
    if "botocore.exceptions" not in sys.modules:
        return None  # botocore was never imported, so this is not one of its errors
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if not isinstance(exc, BotoCoreError | ClientError):
        return None
    if isinstance(exc, NoCredentialsError):
        return DynoformError(
            "no AWS credentials found", "set a profile with `targets:add --profile`"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return DynoformError(f"AWS said {error.get('Code')}: {error.get('Message')}")
    return DynoformError(f"AWS request failed: {exc}", "check the target's endpoint and network")


# The command's imports and its AWS clients' service models make about a million objects in its
# first few tenths of a second, and the cyclic garbage collector kept walking them as they were
# made: ~40 ms of every command (imports, an S3 and an EC2 client and paramiko: 0.33 -> 0.29 s,
# n=5, best 3). Reference counting still frees everything not in a cycle meanwhile; a command
# that runs long (logs --tail, the dashboard) gets the collector back after GC_PAUSE_S.
GC_PAUSE_S = 10.0


def _pause_gc() -> None:
    gc.disable()
    resume = threading.Timer(GC_PAUSE_S, gc.enable)
    resume.daemon = True
    resume.start()


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # the process's own command, not a test calling main() in its process
        _pause_gc()
    args = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    common.GLOBALS = common.Globals()  # fresh per invocation (tests call main() repeatedly)
    try:
        result = app(args=args, prog_name="dynoform", standalone_mode=False)
    except DynoformError as exc:
        _fail(exc)
    except click_errors.NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            sys.stderr.write(exc.ctx.get_help() + "\n")
        sys.exit(2)
    except click_errors.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click_errors.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        common.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        failure = _aws_failure(exc)
        if failure is None:
            raise
        _fail(failure)
    finally:
        common.GLOBALS.close()
    sys.exit(result if isinstance(result, int) else 0)


def _fail(exc: DynoformError) -> None:
    message = f"error: {exc.message}"
    if exc.hint:
        message += f" (hint: {exc.hint})"
    common.err.print(message, markup=False, soft_wrap=True)
    sys.exit(1)
