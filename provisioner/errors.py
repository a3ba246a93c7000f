"""The one error type users see: a message, and a hint saying what to do about it."""


class DynoformError(Exception):
    """An error shown to the user as one line, with an optional hint; exit status 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ValidationError(DynoformError, ValueError):
    """Bad input: names the field and the rule it broke."""

    def __init__(self, field: str, rule: str, hint: str | None = None) -> None:
        super().__init__(f"{field}: {rule}", hint)
        self.field = field
        self.rule = rule


class NotFound(DynoformError):
    """What was asked for does not exist: an app, a release, a host, an add-on, a dyno."""


class NoPlatform(NotFound):
    """The target has no platform yet (`dynoform platform:init` makes one)."""


class Conflict(DynoformError):
    """Another command or app holds what this one needs: a lease, a name, a domain."""


class Unsupported(DynoformError):
    """What was asked cannot be done here: e.g. a provider that has no such operation."""
