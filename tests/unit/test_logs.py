import json

import pytest

from provisioner import logs as lg


def entry(message, **fields):
    base = {"__REALTIME_TIMESTAMP": "1764123737123456", "MESSAGE": message}
    base.update(fields)
    return base


def test_app_output_line_is_heroku_formatted():
    line = lg.parse_journal_entry(
        entry("hello", DYNOFORM_APP="shop", DYNOFORM_DYNO="web.1", _PID="77"), "shop", "i-1"
    )
    assert line is not None
    assert line.format() == "2025-11-26T02:22:17.123456+00:00 app[web.1]: hello"
    assert (
        lg.parse_journal_entry(entry("x", DYNOFORM_APP="other", DYNOFORM_DYNO="web.1"), "shop")
        is None
    )


def test_systemd_messages_become_platform_events():
    unit = "dyno-shop.v3.web.2.service"
    cases = {
        "Main process exited, code=exited, status=3/NOTIMPLEMENTED": "Process exited with status 3",
        "Main process exited, code=killed, status=9/KILL": "Process killed by signal KILL",
        "Scheduled restart job, restart counter is at 2.": "Restarting (restart 2)",
        "Failed with result 'oom-kill'.": "Memory limit exceeded: process killed (R15)",
        "Started dynoform shop web.2 (v3).": "State changed from starting to up",
    }
    for text, expected in cases.items():
        line = lg.parse_journal_entry(entry(f"{unit}: {text}", _PID="1", UNIT=unit), "shop")
        assert line is not None and line.source == "dynoform" and line.dyno == "web.2"
        assert line.message == expected
    other = entry("x", _PID="1", UNIT="dyno-blog.v1.web.1.service")
    assert lg.parse_journal_entry(other, "shop") is None
    assert lg.parse_journal_entry(entry("Reloading.", _PID="1", UNIT="ssh.service"), "shop") is None


def test_binary_and_multiline_messages_are_escaped():
    raw = list("bad \x1b[31m\xff".encode("latin-1"))
    line = lg.parse_journal_entry(entry(raw, DYNOFORM_APP="a-b", DYNOFORM_DYNO="web.1"), "a-b")
    assert line is not None and "\\x1b" in line.message and "\n" not in line.format()
    line2 = lg.parse_journal_entry(
        entry("one\ntwo ünï", DYNOFORM_APP="a-b", DYNOFORM_DYNO="web.1"), "a-b"
    )
    assert line2 is not None and line2.message == "one\\ntwo ünï"


def test_router_lines_for_the_app_only_with_dyno_names():
    text = (
        '2026-11-26T03:25:33.687713+00:00 router[lb]: at=info method=GET path="/" '
        'host=shop.localhost:18003 request_id=abc fwd="127.0.0.1" dyno=198.18.0.4:20000 '
        "backend=tg-x connect=0ms service=1ms status=200 bytes=341 protocol=http"
    )
    line = lg.parse_router_line(text, ["shop.localhost"], {"198.18.0.4:20000": "web.1"})
    assert line is not None and line.dyno == "web.1"
    assert line.format().startswith("2026-11-26T03:25:33.687713+00:00 router: at=info method=GET")
    assert "dyno=web.1" in line.message and "backend=" not in line.message
    assert lg.parse_router_line(text, ["blog.localhost"], {}) is None
    assert lg.server_name("198.18.0.4", 20000) == "198.18.0.4:20000"


def test_select_and_merge():
    lines = [
        lg.LogLine(3.0, "app", "web.1", "c"),
        lg.LogLine(1.0, "router", "web.2", "a"),
        lg.LogLine(2.0, "dynoform", "worker.1", "b"),
    ]
    assert [x.message for x in lg.merge(lines, 2)] == ["b", "c"]
    assert [x.message for x in lg.select(lines, ps="web")] == ["c", "a"]
    assert [x.message for x in lg.select(lines, source="dynoform")] == ["b"]
    assert json.loads(json.dumps(lines[0].to_dict()))["dyno"] == "web.1"


def test_options_outside_what_heroku_keeps_are_refused():
    from provisioner.errors import ValidationError

    lg.check_options(0, None)
    lg.check_options(1500, "router")
    for lines in (-1, 1501):
        with pytest.raises(ValidationError) as refused:
            lg.check_options(lines, None)
        assert str(refused.value) == "--num: must be between 0 and 1500"
    with pytest.raises(ValidationError) as refused:
        lg.check_options(10, "web")
    assert str(refused.value) == "--source: must be one of app, dynoform, router"
