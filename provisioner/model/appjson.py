"""app.json (Heroku's app manifest): `env`, config vars an app asks for on its first deploy, and
`cron`, Dokku's scheduled jobs (kept in step with every deploy)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model.config import validate_config_key, validate_config_value


def parse_app_json(text: str) -> dict[str, dict[str, Any]]:
    """The `env` entries, each normalised to a dict (a bare string is its value)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError("app.json", f"is not valid JSON: {exc}") from exc
    env = data.get("env", {}) if isinstance(data, dict) else None
    if not isinstance(env, dict):
        raise ValidationError("app.json env", "must be an object of KEY: {...}")
    result = {}
    for key, entry in env.items():
        validate_config_key(key)
        spec = {"value": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, dict):
            raise ValidationError(f"app.json env {key}", "must be a string or an object")
        result[key] = spec
    return result


def initial_config(
    env: Mapping[str, Mapping[str, Any]],
    current: Mapping[str, str],
    secret: Callable[[], str] = lambda: secrets.token_hex(32),
) -> dict[str, str]:
    """Vars to add on the first deploy: values and generated secrets for keys not yet set.

    A `required` key with no value, no generator and nothing set yet is an error naming it.
    """
    added: dict[str, str] = {}
    missing = []
    for key, spec in env.items():
        if key in current:
            continue
        if spec.get("generator") == "secret":
            added[key] = secret()
        elif "value" in spec:
            added[key] = validate_config_value(key, str(spec["value"]))
        elif spec.get("required", True):
            missing.append(key)
    if missing:
        raise ValidationError(
            "app.json",
            f"requires {', '.join(missing)}",
            "set it first: dynoform config:set KEY=VALUE",
        )
    return added


def parse_app_json_cron(text: str) -> list[tuple[str, str]]:
    """The `cron` entries as (schedule, command), as Dokku reads them:
    `"cron": [{"schedule": "*/10 * * * *", "command": "python manage.py cleanup"}]`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError("app.json", f"is not valid JSON: {exc}") from exc
    entries = data.get("cron", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValidationError("app.json cron", "must be a list of {schedule, command}")
    result = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) and entry[k].strip() for k in ("schedule", "command")
        ):
            raise ValidationError(
                f"app.json cron entry {number}", "needs a schedule and a command, both strings"
            )
        result.append((entry["schedule"].strip(), entry["command"].strip()))
    return result
