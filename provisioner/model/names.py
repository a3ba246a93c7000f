"""Names users choose: apps, config vars, process types."""

from __future__ import annotations

import re

from provisioner.errors import ValidationError

# Heroku's rule, which also keeps target group names (no "--", no dash at the end) valid.
APP_NAME_RE = re.compile(r"[a-z](?!.*--)[a-z0-9-]{1,28}[a-z0-9]")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROCESS_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+")

APP_NAME_RULE = (
    "must start with a lowercase letter, then lowercase letters, digits and single dashes, "
    "end with a letter or digit, 3 to 30 characters"
)


def validate_app_name(name: str) -> str:
    """Heroku's rule for app names; returns the name or raises ValidationError."""
    if not isinstance(name, str) or not APP_NAME_RE.fullmatch(name):
        raise ValidationError(f"app name {name!r}", APP_NAME_RULE)
    return name


def validate_config_key(key: str) -> str:
    if not isinstance(key, str) or not CONFIG_KEY_RE.fullmatch(key):
        raise ValidationError(
            f"config var name {key!r}",
            "must be a POSIX name: a letter or underscore, then letters, digits, underscores",
        )
    return key


def validate_process_type(name: str) -> str:
    if not isinstance(name, str) or not PROCESS_TYPE_RE.fullmatch(name):
        raise ValidationError(
            f"process type {name!r}", "must be letters, digits, underscores and dashes"
        )
    return name
