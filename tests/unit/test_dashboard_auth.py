"""The dashboard's gate: the token once in the query, then the cookie; our own origin only."""

from __future__ import annotations

import re

import pytest

from provisioner.dashboard.auth import Gate, header_map, matches, new_token

TOKEN = "s3cr3t-token_value"
GATE = Gate(TOKEN, 8700)
HOST = {"host": "127.0.0.1:8700"}


def session_of(gate: Gate) -> str:
    """The cookie's value after a visit of the token's address."""
    verdict = gate.verdict("GET", "/", f"token={gate.token}", {"host": f"127.0.0.1:{gate.port}"})
    assert verdict.set_cookie is not None
    return verdict.set_cookie.split(";")[0].split("=", 1)[1]


SESSION = session_of(GATE)
COOKIE = {**HOST, "cookie": f"dynoform_dashboard_8700={SESSION}"}


def test_new_tokens_are_long_and_differ() -> None:
    first, second = new_token(), new_token()
    assert first != second and len(first) >= 43


@pytest.mark.parametrize(
    ("given", "expected"),
    [(TOKEN, True), (TOKEN + "x", False), (TOKEN[:-1], False), ("", False), (None, False)],
)
def test_matches_only_the_whole_token(given: str | None, expected: bool) -> None:
    assert matches(given, TOKEN) is expected


def test_the_printed_address_holds_the_token() -> None:
    assert GATE.url() == f"http://127.0.0.1:8700/?token={TOKEN}"


def test_a_request_without_the_token_gets_401() -> None:
    assert GATE.verdict("GET", "/", "", HOST).status == 401
    assert GATE.verdict("GET", "/static/style.css", "", HOST).status == 401


def test_a_wrong_token_gets_401_in_the_query_and_in_the_cookie() -> None:
    assert GATE.verdict("GET", "/", "token=nope", HOST).status == 401
    bad = {**HOST, "cookie": "dynoform_dashboard_8700=nope"}
    assert GATE.verdict("GET", "/", "", bad).status == 401


def test_the_token_in_the_query_becomes_a_strict_http_only_cookie() -> None:
    verdict = GATE.verdict("GET", "/apps/web", f"token={TOKEN}&since=60", HOST)
    assert verdict.status == 303 and verdict.location == "/apps/web?since=60"
    assert verdict.set_cookie is not None
    assert re.fullmatch(
        r"dynoform_dashboard_8700=[\w-]{43}; Path=/; HttpOnly; SameSite=Strict", verdict.set_cookie
    )


def test_the_cookie_holds_a_new_session_id_never_the_token() -> None:
    """Browsers send it to every port of 127.0.0.1: it must not reveal the token."""
    first, second = session_of(GATE), session_of(GATE)
    assert TOKEN not in (first, second) and first != second
    assert GATE.verdict("GET", "/", "", {**HOST, "cookie": f"dynoform_dashboard_8700={first}"}).ok
    with_token = {**HOST, "cookie": f"dynoform_dashboard_8700={TOKEN}"}
    assert GATE.verdict("GET", "/", "", with_token).status == 401


def test_a_session_of_an_earlier_server_opens_nothing() -> None:
    """Sessions live in the server's memory: a cookie left in a browser dies with its server."""
    restarted = Gate(TOKEN, 8700)
    assert restarted.verdict("GET", "/", "", COOKIE).status == 401


def test_the_cookie_opens_every_page() -> None:
    assert GATE.verdict("GET", "/apps/web", "", COOKIE).ok
    with_others = {**HOST, "cookie": f"other=1; dynoform_dashboard_8700={SESSION}; x=y"}
    assert GATE.verdict("GET", "/", "", with_others).ok


def test_the_cookie_of_a_dashboard_on_another_port_does_not_open_this_one() -> None:
    other = {**HOST, "cookie": f"dynoform_dashboard_8701={SESSION}"}
    assert GATE.verdict("GET", "/", "", other).status == 401


def test_a_foreign_host_header_is_refused_even_with_the_token() -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1."""
    rebound = {**COOKIE, "host": "evil.example:8700"}
    assert GATE.verdict("GET", "/", "", rebound).status == 403
    assert GATE.verdict("GET", "/", "", {"cookie": COOKIE["cookie"]}).status == 403
    assert GATE.verdict("GET", "/", "", {**COOKIE, "host": "localhost:8700"}).ok


def test_a_post_needs_the_cookie_and_our_origin() -> None:
    ours = {**COOKIE, "origin": "http://127.0.0.1:8700"}
    assert GATE.verdict("POST", "/apps/web/actions/restart", "", ours).ok
    assert (
        GATE.verdict(
            "POST", "/apps/web/actions/restart", "", {**HOST, "origin": ours["origin"]}
        ).status
        == 401
    )
    foreign = {**COOKIE, "origin": "http://evil.example"}
    assert GATE.verdict("POST", "/apps/web/actions/restart", "", foreign).status == 403
    assert GATE.verdict("POST", "/apps/web/actions/restart", "", COOKIE).status == 403
    referred = {**COOKIE, "referer": "http://127.0.0.1:8700/apps/web"}
    assert GATE.verdict("POST", "/apps/web/actions/restart", "", referred).ok


def test_a_post_cannot_bring_the_token_in_its_query() -> None:
    """Only a GET trades the query's token for the cookie; a forged form has no cookie."""
    verdict = GATE.verdict("POST", "/apps/web/actions/restart", f"token={TOKEN}", HOST)
    assert verdict.status == 401


def test_header_names_are_read_in_any_case_and_the_first_wins() -> None:
    headers = header_map([("HOST", "127.0.0.1:8700"), ("Host", "evil.example"), ("Cookie", "a=b")])
    assert headers == {"host": "127.0.0.1:8700", "cookie": "a=b"}
