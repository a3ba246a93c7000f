"""The pure half of the local load balancers: ELBv2 describe_* answers -> model -> HAProxy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from provisioner.localcloud import haproxy as hx

GOLDEN = Path(__file__).parent / "golden" / "haproxy"
STATE = Path("/var/lib/dynoform/local")
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
LB = f"{ARN}:loadbalancer/app/shop/aaa"
LN80 = f"{ARN}:listener/app/shop/aaa/l80"
LN443 = f"{ARN}:listener/app/shop/aaa/l443"
TG_WEB = f"{ARN}:targetgroup/web/111"
TG_API = f"{ARN}:targetgroup/api/222"
TG_LAMBDA = f"{ARN}:targetgroup/fn/333"


def fixed(code: str, body: str) -> dict[str, Any]:
    return {
        "Type": "fixed-response",
        "FixedResponseConfig": {
            "StatusCode": code,
            "ContentType": "text/plain",
            "MessageBody": body,
        },
    }


def describe() -> dict[str, Any]:
    """Canned answers shaped like moto 5.2's (and AWS's)."""
    return {
        "load_balancers": [
            {
                "LoadBalancerArn": LB,
                "LoadBalancerName": "shop",
                "DNSName": "shop-1.us-east-1.elb.amazonaws.com",
                "Type": "application",
            }
        ],
        "listeners": {
            LB: [
                {
                    "ListenerArn": LN443,
                    "Port": 443,
                    "Protocol": "HTTPS",
                    "DefaultActions": [fixed("404", "no")],
                },
                {
                    "ListenerArn": LN80,
                    "Port": 80,
                    "Protocol": "HTTP",
                    "DefaultActions": [fixed("404", 'no "app" here\n')],
                },
            ]
        },
        "rules": {
            LN80: [
                {
                    "RuleArn": f"{LN80}/r-default",
                    "Priority": "default",
                    "IsDefault": True,
                    "Conditions": [],
                    "Actions": [fixed("404", "no")],
                },
                {
                    "RuleArn": f"{LN80}/r20",
                    "Priority": "20",
                    "Conditions": [
                        {"Field": "host-header", "Values": ["api.shop.test"]},
                        {"Field": "path-pattern", "Values": ["/v1/*"]},
                    ],
                    "Actions": [{"Type": "forward", "TargetGroupArn": TG_API}],
                },
                {
                    "RuleArn": f"{LN80}/r10",
                    "Priority": "10",
                    "Conditions": [
                        {
                            "Field": "host-header",
                            "HostHeaderConfig": {"Values": ["*.Shop.test", "shop.test"]},
                        }
                    ],
                    "Actions": [
                        {
                            "Type": "forward",
                            "ForwardConfig": {
                                "TargetGroups": [{"TargetGroupArn": TG_WEB, "Weight": 1}]
                            },
                        }
                    ],
                },
                {
                    "RuleArn": f"{LN80}/r30",
                    "Priority": "30",
                    "Conditions": [{"Field": "host-header", "Values": ["old.shop.test"]}],
                    "Actions": [
                        {
                            "Type": "redirect",
                            "RedirectConfig": {
                                "Protocol": "HTTPS",
                                "Port": "443",
                                "Host": "shop.test",
                                "StatusCode": "HTTP_301",
                            },
                        }
                    ],
                },
                {
                    "RuleArn": f"{LN80}/r40",
                    "Priority": "40",
                    "Conditions": [
                        {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}
                    ],
                    "Actions": [{"Type": "forward", "TargetGroupArn": TG_WEB}],
                },
            ]
        },
        "target_groups": [
            {
                "TargetGroupArn": TG_WEB,
                "TargetGroupName": "web",
                "Port": 80,
                "TargetType": "ip",
                "HealthCheckEnabled": True,
                "HealthCheckPath": "/health",
                "HealthCheckPort": "traffic-port",
                "HealthCheckIntervalSeconds": 5,
                "HealthCheckTimeoutSeconds": 3,
                "HealthyThresholdCount": 2,
                "UnhealthyThresholdCount": 3,
                "Matcher": {"HttpCode": "200-299"},
            },
            {
                "TargetGroupArn": TG_API,
                "TargetGroupName": "api",
                "Port": 8080,
                "TargetType": "instance",
                "HealthCheckPath": "/up",
                "HealthCheckPort": "9000",
                "HealthCheckIntervalSeconds": 30,
                "Matcher": {"HttpCode": "200,204"},
            },
            {"TargetGroupArn": TG_LAMBDA, "TargetGroupName": "fn", "TargetType": "lambda"},
        ],
        "attributes": {
            TG_WEB: [{"Key": "deregistration_delay.timeout_seconds", "Value": "10"}],
            TG_API: [{"Key": "stickiness.enabled", "Value": "false"}],
        },
        "targets": {
            TG_WEB: [
                {
                    "Target": {"Id": "198.18.0.12", "Port": 5001},
                    "TargetHealth": {"State": "healthy"},
                },
                {
                    "Target": {"Id": "198.18.0.11", "Port": 5000},
                    "TargetHealth": {"State": "healthy"},
                },
                {
                    "Target": {"Id": "198.18.0.13", "Port": 5000},
                    "TargetHealth": {"State": "draining"},
                },
            ],
            TG_API: [
                {"Target": {"Id": "i-0abc", "Port": 8080}, "TargetHealth": {"State": "healthy"}},
                {"Target": {"Id": "i-0def"}, "TargetHealth": {"State": "healthy"}},
            ],
        },
        "ports": {LN80: 18000},
        "instance_ips": {"i-0abc": "198.18.0.20"},
    }


def model(**changes: Any) -> hx.Model:
    d = describe()
    d.update(changes)
    return hx.build_model(
        d["load_balancers"],
        d["listeners"],
        d["rules"],
        d["target_groups"],
        d["attributes"],
        d["targets"],
        d["ports"],
        d["instance_ips"],
    )


# ---------------------------------------------------------------- model


def test_model_listeners_rules_and_actions() -> None:
    m = model()
    (lb,) = m.load_balancers
    assert lb.name == "shop" and lb.dns_name.startswith("shop-1.")
    http, https = lb.listeners
    assert (http.port, http.local_port, http.local_url) == (80, 18000, "http://127.0.0.1:18000")
    assert (https.port, https.local_port, https.local_url) == (443, None, None)
    assert [r.priority for r in http.rules] == [10, 20, 30]  # source-ip rule skipped
    r10, r20, r30 = http.rules
    assert r10.hosts == ("*.Shop.test", "shop.test") and r10.action.target_group_arn == TG_WEB
    assert r20.hosts == ("api.shop.test",) and r20.paths == ("/v1/*",)
    assert r30.action == hx.Action(
        kind="redirect", status_code=301, location="https://shop.test/%[path,regsub(^/,)]?%[query]"
    )
    assert http.default == hx.Action(
        kind="fixed-response", status_code=404, content_type="text/plain", body='no "app" here\n'
    )
    assert any("source-ip" in w for w in m.warnings)


def test_model_target_groups_health_and_targets() -> None:
    m = model()
    assert [tg.name for tg in m.target_groups] == ["api", "web"]  # lambda skipped
    api, web = m.target_groups
    assert web.health == hx.HealthCheck(
        enabled=True,
        path="/health",
        port=None,
        interval=5,
        timeout=3,
        healthy=2,
        unhealthy=3,
        matcher="200-299",
    )
    assert web.deregistration_delay == 10
    assert [(t.address, t.port) for t in web.targets] == [
        ("198.18.0.11", 5000),
        ("198.18.0.12", 5001),
    ]
    assert api.health.port == 9000 and api.health.matcher == "200,204"
    assert api.deregistration_delay == 300  # the ALB default
    # i-0abc resolved to its private IP; i-0def has none yet and is left out with a warning.
    assert api.targets == (hx.Target(id="i-0abc", address="198.18.0.20", port=8080),)
    assert any("i-0def" in w for w in m.warnings)


def test_bad_matcher_falls_back_to_200() -> None:
    d = describe()
    d["target_groups"][0]["Matcher"] = {"HttpCode": "2xx"}
    (web,) = [
        tg for tg in model(target_groups=d["target_groups"]).target_groups if tg.name == "web"
    ]
    assert web.health.matcher == "200"


# ---------------------------------------------------------------- ports


def test_ports_are_stable_and_lowest_free() -> None:
    ports = hx.allocate_ports({"b": 18000}, ["a", "b", "c"])
    assert ports == {"a": 18001, "b": 18000, "c": 18002}
    assert hx.allocate_ports(ports, ["c"]) == ports  # gone listeners keep their port
    assert hx.allocate_ports({}, ["x", "y"], base=20000, avoid={20000}) == {"x": 20001, "y": 20002}


# ---------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("values", "host", "matches"),
    [
        (["*.example.com"], "a.example.com", True),
        (["*.example.com"], "a.b.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "aexample.com", False),
        (["Shop.test"], "shop.test", True),
        (["a?.test"], "ab.test", True),
        (["a?.test"], "a.test", False),
        (["x.test", "y.test"], "y.test", True),
    ],
)
def test_host_regex(values: list[str], host: str, matches: bool) -> None:
    assert bool(re.match(hx.host_regex(values), host)) is matches


def test_regex_strings() -> None:
    assert hx.host_regex(["*.Example.com", "a?.b"]) == r"^(?:.*\.example\.com|a.\.b)$"
    assert hx.path_regex(["/v1/*"]) == "^(?:/v1/.*)$"
    assert hx.path_regex(["/it's"]) == "^(?:/it\\x27s)$"  # no bare quote in a '...' word
    # Whatever reaches the regex: no space, line break or control character stays raw.
    assert hx.path_regex(["/a b\n\x00\u2028"]) == "^(?:/a\\x20b\\x0a\\x00\\xe2\\x80\\xa8)$"


def test_redirect_location_defaults_and_ports() -> None:
    assert hx.redirect_location({}) == (
        "%[var(txn.proto)]://%[var(txn.host)]:%[var(txn.port)]/%[path,regsub(^/,)]?%[query]"
    )
    assert hx.redirect_location({"Protocol": "HTTP", "Port": "8080", "Query": ""}) == (
        "http://%[var(txn.host)]:8080/%[path,regsub(^/,)]"
    )
    assert hx.redirect_location({"Path": "/100%"}).endswith(":%[var(txn.port)]/100%%?%[query]")


def test_haproxy_string_escapes() -> None:
    assert hx.haproxy_string('a "b" \\ $HOME #x\n') == '"a \\"b\\" \\\\ \\$HOME \\#x\\n"'
    assert hx.haproxy_string("a\r\n\x00\t\x7fz") == '"a\\x0d\\n\\x00\\x09\\x7fz"'


# ---------------------------------------------------------------- rendering


def test_render_matches_golden() -> None:
    text = hx.render_config(model(), STATE)
    golden = GOLDEN / "shop.cfg"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_render_empty_backend_and_missing_target_group() -> None:
    d = describe()
    d["rules"][LN80][2]["Actions"] = [
        {"Type": "forward", "TargetGroupArn": f"{ARN}:targetgroup/gone/9"}
    ]
    text = hx.render_config(model(rules=d["rules"], targets={}), STATE)
    assert "backend lb-shop-80-r10\n    http-request return status 503" in text
    assert "    server " not in text


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_rendered_config(tmp_path: Path) -> None:
    for m in (model(), hx.without_targets(model())):
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(hx.render_config(m, tmp_path))
        result = subprocess.run(
            ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert "ALERT" not in result.stderr


# ---------------------------------------------------------------- values that could inject


def _rule(priority: int, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "RuleArn": f"{LN80}/r{priority}",
        "Priority": str(priority),
        "Conditions": conditions,
        "Actions": [{"Type": "forward", "TargetGroupArn": TG_WEB}],
    }


HOSTILE_RULES = [
    (50, "host-header", "HostHeaderConfig", "evil.test\nfrontend x"),
    (51, "host-header", "HostHeaderConfig", "evil.test\n"),
    (52, "host-header", "HostHeaderConfig", "evil.test#x"),
    (53, "path-pattern", "PathPatternConfig", "/a\n    bind :1 #x"),
    (54, "path-pattern", "PathPatternConfig", "/a b"),
    (55, "http-request-method", "HttpRequestMethodConfig", "GET if TRUE"),
    (56, "http-request-method", "HttpRequestMethodConfig", "GET\r"),
]


def test_rule_values_that_are_no_alb_value_are_skipped_with_a_warning() -> None:
    """Values anyone can create through the ELBv2 API (moto takes any text): such a rule
    is left out, exactly as if it did not exist, and the daemon log says why."""
    d = describe()
    for priority, kind, config, value in HOSTILE_RULES:
        d["rules"][LN80].append(_rule(priority, [{"Field": kind, config: {"Values": [value]}}]))
    d["targets"][TG_WEB] += [
        {"Target": {"Id": "198.18.0.14\nbackend x", "Port": 5000}},
        {"Target": {"Id": "not-an-ip", "Port": 5000}},
    ]
    m = model(rules=d["rules"], targets=d["targets"])
    assert hx.render_config(m, STATE) == (GOLDEN / "shop.cfg").read_text()
    assert [r.priority for r in m.load_balancers[0].listeners[0].rules] == [10, 20, 30]
    skipped = [w for w in m.warnings if "rule skipped" in w or "is not IP:port" in w]
    assert skipped == [
        f"rule {LN80}/r50: bad host-header values ['evil.test\\nfrontend x']; rule skipped",
        f"rule {LN80}/r51: bad host-header values ['evil.test\\n']; rule skipped",
        f"rule {LN80}/r52: bad host-header values ['evil.test#x']; rule skipped",
        f"rule {LN80}/r53: bad path-pattern values ['/a\\n    bind :1 #x']; rule skipped",
        f"rule {LN80}/r54: bad path-pattern values ['/a b']; rule skipped",
        f"rule {LN80}/r55: bad http-request-method values ['GET IF TRUE']; rule skipped",
        f"rule {LN80}/r56: bad http-request-method values ['GET\\r']; rule skipped",
        "target group web: target '198.18.0.14\\nbackend x' port 5000 is not IP:port",
        "target group web: target 'not-an-ip' port 5000 is not IP:port",
    ]
    assert all(w.isprintable() for w in m.warnings)


def test_alb_values_with_quotes_and_symbols_stay_inside_their_word() -> None:
    d = describe()
    path = '/it\'s/"q"/$x/~u@h:+&a*?'
    d["rules"][LN80].append(_rule(60, [{"Field": "path-pattern", "Values": [path]}]))
    text = hx.render_config(model(rules=d["rules"]), STATE)
    assert "    acl r60_path path -m reg '^(?:/it\\x27s/\"q\"/\\$x/\\~u@h:\\+\\&a.*.)$'\n" in text
    assert "    use_backend tg-web if r60_path\n" in text


def test_names_arns_and_action_values_never_break_a_line() -> None:
    d = describe()
    d["load_balancers"][0]["LoadBalancerName"] = "shop\nfrontend evil"
    for listener in d["listeners"][LB]:
        listener["ListenerArn"] += "\n    bind :1"
    d["ports"] = {f"{LN80}\n    bind :1": 18000}
    d["rules"] = {}
    d["listeners"][LB][1]["DefaultActions"] = [
        {
            "Type": "fixed-response",
            "FixedResponseConfig": {
                "StatusCode": "404",
                "ContentType": "text/plain\r\nSet-Cookie: a=b",
                "MessageBody": "a\r\nb\x00\tc",
            },
        }
    ]
    d["target_groups"][0]["HealthCheckPath"] = "/health\r\nHost: x"
    m = model(**d)
    text = hx.render_config(m, STATE)
    assert f"# {LN80}?    bind :1\nfrontend lb-shop_frontend_evil-80\n" in text
    assert "router[shop_frontend_evil]: at=info" in text
    assert (
        '    http-request return status 404 content-type "text/plain" '
        'string "a\\x0d\\nb\\x00\\x09c"\n' in text
    )
    assert 'http-check send meth GET uri "/" ver HTTP/1.1' in text
    assert not any(line.startswith(("frontend evil", "    bind :1")) for line in text.splitlines())
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)

    d["listeners"][LB][1]["DefaultActions"] = [
        {"Type": "redirect", "RedirectConfig": {"Host": "x\r\nSet-Cookie: a=b"}}
    ]
    (lb,) = model(**d).load_balancers
    assert lb.listeners[0].default == hx.Action(  # the one on port 80
        kind="fixed-response", status_code=503, body="bad redirect\n"
    )


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_config_rendered_from_hostile_values(tmp_path: Path) -> None:
    d = describe()
    for priority, kind, config, value in HOSTILE_RULES:
        d["rules"][LN80].append(_rule(priority, [{"Field": kind, config: {"Values": [value]}}]))
    d["rules"][LN80].append(_rule(60, [{"Field": "path-pattern", "Values": ['/it\'s/"q"/$x']}]))
    d["load_balancers"][0]["LoadBalancerName"] = "shop\nfrontend evil"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(hx.render_config(model(**d), tmp_path))
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "ALERT" not in result.stderr


# ---------------------------------------------------------------- diffs


def test_target_only_change_keeps_structure() -> None:
    old = model()
    d = describe()
    d["targets"][TG_WEB] = [
        {"Target": {"Id": "198.18.0.11", "Port": 5000}},
        {"Target": {"Id": "198.18.0.14", "Port": 5000}},
    ]
    d["attributes"][TG_WEB] = [{"Key": "deregistration_delay.timeout_seconds", "Value": "60"}]
    new = model(targets=d["targets"], attributes=d["attributes"])
    assert hx.structure_key(old, STATE) == hx.structure_key(new, STATE)
    changes = hx.target_changes(old, new)
    assert [(tg.name, t.server_name) for tg, t in changes.added] == [("web", "198.18.0.14:5000")]
    assert [(tg.name, name) for tg, name in changes.removed] == [("web", "198.18.0.12:5001")]
    assert not hx.target_changes(new, new)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["rules"][LN80][1]["Conditions"][0].update(Values=["api2.shop.test"]),
        lambda d: d["rules"][LN80][1].update(Priority="5"),
        lambda d: d["target_groups"][0].update(HealthCheckPath="/ready"),
        lambda d: d["target_groups"][0].update(HealthyThresholdCount=3),
        lambda d: d["listeners"][LB][1].update(DefaultActions=[fixed("503", "down")]),
    ],
)
def test_structural_changes_change_the_key(edit: Any) -> None:
    d = describe()
    edit(d)
    new = hx.build_model(
        d["load_balancers"],
        d["listeners"],
        d["rules"],
        d["target_groups"],
        d["attributes"],
        d["targets"],
        d["ports"],
        d["instance_ips"],
    )
    assert hx.structure_key(model(), STATE) != hx.structure_key(new, STATE)


def test_only_servers_keeps_known_ones() -> None:
    m = hx.only_servers(model(), {("tg-web", "198.18.0.11:5000")})
    assert [(tg.name, [t.server_name for t in tg.targets]) for tg in m.target_groups] == [
        ("api", []),
        ("web", ["198.18.0.11:5000"]),
    ]


# ---------------------------------------------------------------- runtime API commands


def web() -> hx.TargetGroup:
    return next(tg for tg in model().target_groups if tg.name == "web")


def test_command_builders() -> None:
    tg = web()
    t = hx.Target(id="198.18.0.15", address="198.18.0.15", port=5000)
    assert hx.cmd_add_server(tg, t) == (
        "add server tg-web/198.18.0.15:5000 198.18.0.15:5000 check inter 5s fastinter 25ms "
        "downinter 20ms rise 2 fall 3 observe layer4 error-limit 3 on-error mark-down "
        "pool-max-conn -1 pool-purge-delay 500ms"
    )
    assert hx.cmd_activate(tg, t) == (
        "enable health tg-web/198.18.0.15:5000; enable server tg-web/198.18.0.15:5000; "
        "set server tg-web/198.18.0.15:5000 health down"
    )
    no_check = replace(tg, health=replace(tg.health, enabled=False))
    assert hx.cmd_add_server(no_check, t) == (
        "add server tg-web/198.18.0.15:5000 198.18.0.15:5000 pool-max-conn -1 pool-purge-delay 500ms"
    )
    assert hx.cmd_activate(no_check, t) == "enable server tg-web/198.18.0.15:5000"
    assert hx.cmd_admit("tg-web", "a:1") == "set server tg-web/a:1 health up"
    assert hx.cmd_drain("tg-web", "a:1") == "set server tg-web/a:1 state drain"
    assert hx.cmd_ready("tg-web", "a:1") == "set server tg-web/a:1 state ready"
    assert hx.cmd_remove("tg-web", "a:1") == "disable server tg-web/a:1; del server tg-web/a:1"
    assert hx.cmd_remove("tg-web", "a:1", force=True) == (
        "disable server tg-web/a:1; shutdown sessions server tg-web/a:1; del server tg-web/a:1"
    )


@pytest.mark.parametrize(
    ("status", "passed"),
    [
        ("DOWN 1/2", True),  # one check passed since it was marked down: admitted (fresh)
        ("DOWN 2/3", True),
        ("DOWN", False),  # no passing check yet
        ("DOWN 0/2", False),
        ("UP", False),
        ("UP 1/2", False),  # up, failing checks: going down
        ("MAINT", False),
        ("no check", False),
        ("", False),
    ],
)
def test_a_first_passing_check_is_read_from_the_status(status: str, passed: bool) -> None:
    assert hx.passed_once(status) is passed


def test_server_args_health_port_and_slow_interval() -> None:
    api = next(tg for tg in model().target_groups if tg.name == "api")
    (t,) = api.targets
    assert hx.server_args(api, t) == [
        "198.18.0.20:8080",
        "check",
        "inter",
        "30s",
        "fastinter",
        "25ms",
        "downinter",
        "20ms",
        "rise",
        "5",
        "fall",
        "2",
        "observe",
        "layer4",
        "error-limit",
        "2",
        "on-error",
        "mark-down",
        "port",
        "9000",
        "pool-max-conn",
        "-1",
        "pool-purge-delay",
        "500ms",
    ]


def test_failover_settings() -> None:
    """A dead target costs a request a short connect timeout, then the request goes to another
    server; failed connections take the server out at once; only safe methods are sent again
    once a server got them (the golden file has the same lines, this says why they matter)."""
    text = hx.render_config(model(), STATE)
    defaults = text.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0]
    settings = [ln.strip() for ln in defaults.splitlines() if ln and not ln.lstrip()[0] == "#"]
    assert "timeout connect 500ms" in settings
    assert {"retries 3", "option redispatch 1", "retry-on conn-failure empty-response"} <= set(
        settings
    )
    assert not any("response-timeout" in ln or "all-retryable" in ln for ln in settings)
    for backend in ("tg-api", "tg-web"):
        block = text.split(f"\nbackend {backend}\n", 1)[1].split("\n\n", 1)[0]
        assert "    http-request disable-l7-retry unless METH_GET || METH_OPTIONS\n" in block
        assert " observe layer4 error-limit " in block and " on-error mark-down" in block
    # Without health checks HAProxy cannot observe a server (`observe` needs `check`).
    web = next(tg for tg in model().target_groups if tg.name == "web")
    no_check = replace(web, health=replace(web.health, enabled=False))
    assert hx.check_args(no_check) == []


def test_keep_alive_to_targets_alike_in_config_and_runtime() -> None:
    """Keep-alive to the dynos with idle connections pooled the same way for a server of the
    config (default-server) and one added through the runtime API (which pools none unless
    told); a non-idempotent request is still never sent twice (test_failover_settings)."""
    text = hx.render_config(model(), STATE)
    defaults = text.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0]
    settings = {ln.strip() for ln in defaults.splitlines() if ln and ln.lstrip()[0] != "#"}
    assert {"option http-keep-alive", "http-reuse safe"} <= settings
    assert not {"option http-server-close", "option httpclose"} & settings
    web = next(tg for tg in model().target_groups if tg.name == "web")
    block = text.split("\nbackend tg-web\n", 1)[1].split("\n\n", 1)[0]
    pool = " ".join(hx.pool_args())
    assert pool == "pool-max-conn -1 pool-purge-delay 500ms"
    assert f" {pool}\n" in block.split("default-server ", 1)[1]
    assert hx.cmd_add_server(web, web.targets[0]).endswith(f" {pool}")
    no_check = replace(web, health=replace(web.health, enabled=False))
    assert hx.server_args(no_check, web.targets[0])[1:] == hx.pool_args()


# ---------------------------------------------------------------- parsing answers

STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot
lb-shop-80,FRONTEND,,,0,1,9979,8
tg-web,198.18.0.11:5000,0,0,2,3,,40
tg-web,198.18.0.12:5001,1,1,0,1,,4
tg-web,BACKEND,0,0,2,3,998,44
"""

STATE_DUMP = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
3 tg-web 1 198.18.0.11:5000 198.18.0.11 2 0 1 1 4 15 3 3 6 0 0 0 - 5000 - 0 0 - - 0
3 tg-web 2 198.18.0.12:5001 198.18.0.12 0 0 1 1 1 17 2 0 6 0 0 0 - 5001 - 0 0 - - 0
"""


def test_parse_stat_and_sessions() -> None:
    stat = hx.parse_stat(STAT)
    assert hx.server_sessions(stat, "tg-web", "198.18.0.11:5000") == 2
    assert hx.server_sessions(stat, "tg-web", "198.18.0.12:5001") == 1  # queued counts
    assert hx.server_sessions(stat, "tg-web", "nope") == -1
    assert hx.parse_stat("") == {}


def test_servers_in_state_and_cli_errors() -> None:
    assert hx.servers_in_state(STATE_DUMP) == {
        ("tg-web", "198.18.0.11:5000"),
        ("tg-web", "198.18.0.12:5001"),
    }
    assert hx.cli_error("New server registered.\n") is None
    assert hx.cli_error("\n") is None
    assert hx.cli_error("No such server.\n") == "No such server."
    assert hx.cli_error("Server still has connections attached to it, cannot remove it.")


def test_host_match_is_a_string_compare_without_wildcards() -> None:
    assert hx.host_match(["App1.Localhost", "www.app1.localhost"]) == (
        "-m str app1.localhost www.app1.localhost"
    )
    assert hx.host_match(["*.shop.test", "shop.test"]) == (
        "-m reg '^(?:.*\\.shop\\.test|shop\\.test)$'"
    )


def test_with_targets_reads_one_target_group_again() -> None:
    before = model()
    raw = next(tg for tg in describe()["target_groups"] if tg["TargetGroupArn"] == TG_WEB)
    after = hx.with_targets(
        before,
        raw,
        [
            {"Target": {"Id": "198.18.0.11", "Port": 5000}, "TargetHealth": {"State": "healthy"}},
            {"Target": {"Id": "198.18.0.14", "Port": 5002}, "TargetHealth": {"State": "initial"}},
            {"Target": {"Id": "198.18.0.12", "Port": 5001}, "TargetHealth": {"State": "draining"}},
        ],
    )
    # The same as reading everything with those targets, and the other groups untouched.
    everything = model(
        targets=describe()["targets"]
        | {
            TG_WEB: [
                {"Target": {"Id": "198.18.0.11", "Port": 5000}},
                {"Target": {"Id": "198.18.0.14", "Port": 5002}},
            ]
        }
    )
    assert after == everything
    assert [t.server_name for t in after.target_group(TG_WEB).targets] == [  # type: ignore[union-attr]
        "198.18.0.11:5000",
        "198.18.0.14:5002",
    ]
