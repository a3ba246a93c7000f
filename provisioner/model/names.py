"""Names users choose: apps, config vars, process types."""

from __future__ import annotations

import ipaddress
import re

from provisioner.errors import ValidationError

# Heroku's rule, which also keeps target group names (no "--", no dash at the end) valid.
APP_NAME_RE = re.compile(r"[a-z](?!.*--)[a-z0-9-]{1,28}[a-z0-9]")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROCESS_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+")
_ROUTER_NAME_RE = re.compile(r"[^A-Za-z0-9_.:-]")

APP_NAME_RULE = (
    "must start with a lowercase letter, then lowercase letters, digits and single dashes, "
    "end with a letter or digit, 3 to 30 characters"
)


# A platform's name goes into AWS identifiers: `df-<platform>-postgres-1a2b3c` (RDS and
# ElastiCache, at most 40 characters: 21 left for the platform), the load balancer's
# `dynoform-<platform>` (32) and the bucket's. Longer names were cut, and two add-ons shared one.
PLATFORM_NAME_MAX = 21
PLATFORM_NAME_RE = re.compile(r"[a-z](?!.*--)(?:[a-z0-9-]{0,19}[a-z0-9])?")  # 1 to 21 characters
PLATFORM_NAME_RULE = (
    "must start with a lowercase letter, then lowercase letters, digits and single dashes, "
    f"end with a letter or digit, at most {PLATFORM_NAME_MAX} characters"
)


def validate_platform_name(name: str) -> str:
    """A name that keeps every AWS identifier made from it valid and unique."""
    if not isinstance(name, str) or not PLATFORM_NAME_RE.fullmatch(name):
        raise ValidationError(f"platform name {name!r}", PLATFORM_NAME_RULE)
    return name


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


# Custom domains ------------------------------------------------------------------------------
MAX_DOMAIN_LENGTH = 128  # an ALB host-header condition value holds at most 128 characters
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_TLD_RE = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
DOMAIN_RULE = (
    "must be a hostname such as www.example.com: two or more labels of letters, digits and "
    "dashes (no dash first or last, at most 63 each), a top-level label of letters (or xn--), "
    f"at most {MAX_DOMAIN_LENGTH} characters"
)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return bool(re.fullmatch(r"[0-9.]+", text))  # 10.1, 127.1: inet_aton's short forms
    return True


def normalise_domain(name: str) -> str:
    """How a domain is stored: lower case, without the root's trailing dot."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def validate_domain(name: str, platform_domain: str) -> str:
    """A custom domain an app may add, normalised (lower case, no trailing dot).

    Refused, each with its own reason: control characters and spaces, wildcards, IP
    addresses, and names equal to or under the platform's own domain (where every app has
    <app>.<platform domain>: another app's name would take over its rule)."""
    field = f"domain {name!r}"
    if not isinstance(name, str) or not name.isascii() or not name.isprintable() or " " in name:
        raise ValidationError(
            field,
            "must be plain ASCII: no spaces or control characters",
            "write an internationalised name in its xn-- form",
        )
    domain = normalise_domain(name)
    if "*" in domain:
        raise ValidationError(
            field, "wildcard domains are not supported", "add each hostname: www.example.com"
        )
    if _is_ip_address(domain):
        raise ValidationError(field, "is an IP address; a domain must be a hostname")
    platform = normalise_domain(platform_domain)
    if domain == platform or domain.endswith("." + platform):
        where = "the platform's domain" if domain == platform else "under the platform's domain"
        raise ValidationError(
            field,
            f"is {where} {platform}, whose names belong to the apps (<app>.{platform})",
            "add a domain of your own, such as www.example.com",
        )
    labels = domain.split(".")
    if (
        len(domain) > MAX_DOMAIN_LENGTH
        or len(labels) < 2
        or not all(_LABEL_RE.fullmatch(label) for label in labels)
        or not _TLD_RE.fullmatch(labels[-1])
    ):
        raise ValidationError(field, DOMAIN_RULE)
    return domain


def safe_name(text: str) -> str:
    """A router (HAProxy) proxy/server name: only [A-Za-z0-9_.:-]. The local router names its
    servers so, and its log lines say which dyno served by that name."""
    return _ROUTER_NAME_RE.sub("_", text)
