"""The dashboard's gate (pure): a secret token, then a cookie; only our own origin may POST.

The token comes once in the URL's query (`/?token=...`, the address `dynoform dashboard`
prints); the answer sends the browser on to the same page without it, setting an HttpOnly
SameSite=Strict cookie that later requests carry. Cookies are shared by every port of a host, so
the cookie's name carries the port, and its value is not the token but a random session id kept
only in this server's memory: a browser sends it to every server on 127.0.0.1 (another user's
too), where it reveals nothing and opens nothing once this server stops. The Host header must
name our own address: a DNS name that points at 127.0.0.1 (DNS rebinding) gets nothing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

TOKEN_PARAM = "token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def header_map(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names in lower case; of a repeated header, the first (as http.server reads it)."""
    result: dict[str, str] = {}
    for name, value in items:
        result.setdefault(name.lower(), value)
    return result


def matches(given: str | None, token: str) -> bool:
    """Constant-time comparison: the time taken says nothing about how much of it was right."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


@dataclass(frozen=True)
class Verdict:
    status: int  # 200: serve; 303: go on to `location` setting the cookie; else refuse
    reason: str = ""
    location: str | None = None
    set_cookie: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Gate:
    token: str
    port: int
    sessions: set[str] = field(default_factory=set, compare=False)  # ids given out by `enter`

    @property
    def cookie_name(self) -> str:
        return f"dynoform_dashboard_{self.port}"

    @property
    def origins(self) -> tuple[str, ...]:
        return (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    def url(self, path: str = "/") -> str:
        """The address to open: the only place the token shows."""
        return f"{self.origins[0]}{path}?{urlencode({TOKEN_PARAM: self.token})}"

    def enter(self) -> str:
        """A new session (one per visit of the token's address) and the cookie that carries it."""
        session = new_token()
        self.sessions.add(session)
        return f"{self.cookie_name}={session}; Path=/; HttpOnly; SameSite=Strict"

    def verdict(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> Verdict:
        """What to do with a request: serve it, redirect it (token in the query), or refuse.
        `headers` has lower-case names (see `header_map`)."""
        if headers.get("host", "") not in {o.removeprefix("http://") for o in self.origins}:
            return Verdict(403, "unknown Host")
        params = parse_qsl(query, keep_blank_values=True)
        from_query = dict(params).get(TOKEN_PARAM)
        if method == "GET" and from_query is not None:
            if not matches(from_query, self.token):
                return Verdict(401, "wrong token")
            rest = urlencode([(k, v) for k, v in params if k != TOKEN_PARAM])
            return Verdict(
                303, location=path + (f"?{rest}" if rest else ""), set_cookie=self.enter()
            )
        if not self._known(self._cookie_value(headers.get("cookie"))):
            return Verdict(401, "no token: open the address `dynoform dashboard` printed")
        if method != "GET" and not self._same_origin(headers):
            return Verdict(403, "cross-origin request")
        return Verdict(200)

    def _known(self, session: str | None) -> bool:
        """Compared with every session, each in constant time (a set lookup would hash it)."""
        return any([matches(session, known) for known in list(self.sessions)])

    def _cookie_value(self, header: str | None) -> str | None:
        if not header:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None else None

    def _same_origin(self, headers: Mapping[str, str]) -> bool:
        """Browsers send Origin with every POST; a request without one is not from our page."""
        origin = headers.get("origin")
        if origin is not None:
            return origin in self.origins
        referer = headers.get("referer", "")
        return any(referer.startswith(o + "/") for o in self.origins)
