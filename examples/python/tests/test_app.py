"""Checks the WSGI app without a server (left out of the slug by .slugignore)."""

from app import application


def test_page_names_the_dyno(monkeypatch):
    monkeypatch.setenv("DYNO", "web.1")
    seen = {}
    body = b"".join(application({"PATH_INFO": "/"}, lambda s, h: seen.update(status=s)))
    assert seen["status"] == "200 OK" and b"web.1" in body
