"""Config vars: POSIX names, any UTF-8 text as values, a size limit per app."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from provisioner.errors import ValidationError
from provisioner.model.names import validate_config_key

MAX_CONFIG_BYTES = 32 * 1024


def validate_config_value(key: str, value: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"config var {key}", "value must be text")
    if "\x00" in value:
        raise ValidationError(f"config var {key}", "value must not contain a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"config var {key}", "value must be valid UTF-8") from exc
    return value


def config_size(config: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in config.items())


def validate_config(config: Mapping[str, str]) -> dict[str, str]:
    """Check every name and value and the total size; returns a plain sorted dict."""
    for key, value in config.items():
        validate_config_key(key)
        validate_config_value(key, value)
    size = config_size(config)
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(
            "config", f"is {size} bytes; at most {MAX_CONFIG_BYTES} bytes per app are allowed"
        )
    return dict(sorted(config.items()))


def parse_assignment(text: str) -> tuple[str, str]:
    """`KEY=VALUE` from the command line; the value may hold '=' and anything else."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValidationError(f"config assignment {text!r}", "expected KEY=VALUE")
    return validate_config_key(key), validate_config_value(key, value)


def apply_changes(
    current: Mapping[str, str], set_vars: Mapping[str, str], unset: Iterable[str] = ()
) -> dict[str, str]:
    """The config after setting and unsetting some vars (pure)."""
    result = dict(current)
    result.update(set_vars)
    for key in unset:
        result.pop(key, None)
    return validate_config(result)


def parse_env_file(text: str) -> dict[str, str]:
    """A .env file: KEY=VALUE lines, '#' comments, optional single or double quotes.

    Double-quoted values understand \\n, \\t, \\" and \\\\ so a value can hold newlines.
    """
    result: dict[str, str] = {}
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            raise ValidationError(f"env file line {number}", "expected KEY=VALUE")
        key = validate_config_key(key.strip())
        result[key] = _unquote(value.strip(), number)
    return validate_config(result)


def _unquote(value: str, number: int) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out: list[str] = []
        chars = iter(value[1:-1])
        escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
        for ch in chars:
            if ch == "\\":
                nxt = next(chars, "")
                out.append(escapes.get(nxt, "\\" + nxt))
            else:
                out.append(ch)
        return "".join(out)
    if value[:1] in ("'", '"'):
        raise ValidationError(f"env file line {number}", "unterminated quoted value")
    return value
