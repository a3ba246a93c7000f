"""The local cloud's load-balancer data plane, pure part: ELBv2 state -> HAProxy.

moto's ELBv2 keeps load balancers, listeners, rules and target groups but moves no bytes. This
module turns its describe_* answers into a frozen model, renders that model as an HAProxy config
(one frontend per HTTP or HTTPS listener, one backend per target group) and works out what changed
between two models: a structural change needs a config reload, a change of targets only goes
through HAProxy's runtime API (`add server`, drain, `del server`), which drops no request.

No I/O here except reading the template; lb.py is the edge that talks to moto and HAProxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from provisioner.model.names import safe_name
from provisioner.paths import resource_dir

PORT_BASE = 18000
PORT_SPAN = 999
# Extra check pacing on top of the target group's own interval: a target that is down or in
# transition is probed this often, so a newly registered target serves within a few tenths of
# a second of answering instead of interval x healthy-threshold (AWS would take 10 s or more).
# A down target is probed every DOWN_INTER_MS until it answers, then every FAST_INTER_MS until
# `rise` checks passed. A newly registered one is admitted on its first passing check
# (lb.LoadBalancers admits it, cmd_admit): deploys register a dyno once it answers, so the
# router's wait is about DOWN_INTER_MS; a target coming back from down needs `rise` passes
# (an ALB's lowest healthy threshold is 2: DOWN_INTER_MS + FAST_INTER_MS, 45 ms). 20 ms
# rather than 50: a deploy's new target served ~30 ms sooner (register to healthy, n=10:
# 53-64 ms against 82-88 ms); a target that stays down costs 50 probes a second until it is
# deregistered.
FAST_INTER_MS = 25
DOWN_INTER_MS = 20
# Idle keep-alive connections to a target (haproxy.cfg.j2): every POOL_PURGE_MS HAProxy closes
# about half of those it did not need in the last period. Shorter than its default (5 s): an
# idle connection lives a few seconds at most (measured up to 4.7 s under an uneven load; one
# idle connection alone 1.6 s, 15 s with the default), below a dyno's keep-alive timeout
# where possible (HAProxy 2.6 has no idle timeout of its own for server connections).
POOL_PURGE_MS = 500
DEFAULT_MATCHER = "200"
SUPPORTED_TARGET_TYPES = ("ip", "instance")
_MATCHER_RE = re.compile(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*")
_CHECK_PATH_RE = re.compile(r"/[!-~]{0,1023}")  # else the check asks for /
# The content types an ALB fixed response may have.
CONTENT_TYPES = (
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
)
# What an ALB accepts in rule conditions (at most 128 characters a value); a rule with any
# other value is skipped with a warning, so no value ever reaches haproxy.cfg unchecked.
_HOST_RE = re.compile(r"[A-Za-z0-9.*?_:-]{1,128}")
_PATH_RE = re.compile(r"[A-Za-z0-9_.$/~\"'@:+&*?-]{1,128}")
_METHOD_RE = re.compile(r"[A-Z_-]{1,40}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class Target:
    """A registered target: `id` is the IP (ip targets) or instance id; `address` its IP."""

    id: str
    address: str
    port: int

    @property
    def server_name(self) -> str:
        return safe_name(f"{self.id}:{self.port}")


@dataclass(frozen=True)
class HealthCheck:
    enabled: bool = True
    path: str = "/"
    port: int | None = None  # None: the traffic port
    interval: int = 30
    timeout: int = 5
    healthy: int = 5
    unhealthy: int = 2
    matcher: str = DEFAULT_MATCHER


@dataclass(frozen=True)
class TargetGroup:
    arn: str
    name: str
    health: HealthCheck
    deregistration_delay: int = 300
    targets: tuple[Target, ...] = ()

    @property
    def backend(self) -> str:
        return safe_name(f"tg-{self.name}")


@dataclass(frozen=True)
class Action:
    """A listener action: forward, fixed-response or redirect."""

    kind: str
    target_group_arn: str = ""
    status_code: int = 200
    content_type: str = "text/plain"
    body: str = ""
    location: str = ""  # redirect: an HAProxy log-format string
    # redirect: the ALB RedirectConfig as (key, value) pairs, to aim a redirect to a port of
    # this load balancer at the loopback port that serves that listener here.
    redirect: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Rule:
    arn: str
    priority: int
    action: Action
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listener:
    arn: str
    port: int
    protocol: str
    local_port: int | None  # None: not served locally (HTTP, and HTTPS with certificates)
    default: Action
    rules: tuple[Rule, ...] = ()
    # HTTPS: PEM files (certificate + key) for HAProxy, the listener's default one first.
    certificates: tuple[str, ...] = ()

    @property
    def local_url(self) -> str | None:
        if not self.local_port:
            return None
        scheme = "https" if self.protocol == "HTTPS" else "http"
        return f"{scheme}://127.0.0.1:{self.local_port}"


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    name: str
    dns_name: str
    listeners: tuple[Listener, ...] = ()


@dataclass(frozen=True)
class Model:
    load_balancers: tuple[LoadBalancer, ...] = ()
    target_groups: tuple[TargetGroup, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def served_listeners(self) -> list[tuple[LoadBalancer, Listener]]:
        return [(lb, ln) for lb in self.load_balancers for ln in lb.listeners if ln.local_port]

    def target_group(self, arn: str) -> TargetGroup | None:
        return next((tg for tg in self.target_groups if tg.arn == arn), None)


# ---------------------------------------------------------------- ports


def allocate_ports(
    known: Mapping[str, int],
    listener_arns: Iterable[str],
    base: int = PORT_BASE,
    avoid: Collection[int] = (),
) -> dict[str, int]:
    """Give every listener ARN a stable local port; known ones keep theirs, new ones get the
    lowest free port from `base` that is not in `avoid` (ports something else holds). Ports
    of listeners that are gone stay reserved so a listener that comes back (after a daemon
    restart, say) never takes another one's port."""
    ports = dict(known)
    used = set(ports.values()) | set(avoid)
    next_port = base
    for arn in sorted(set(listener_arns) - set(ports)):
        while next_port in used:
            next_port += 1
        if next_port > base + PORT_SPAN:
            raise ValueError(f"no free local load-balancer port left from {base}")
        ports[arn] = next_port
        used.add(next_port)
    return ports


# ---------------------------------------------------------------- building the model


def build_model(
    load_balancers: Sequence[Mapping[str, Any]],
    listeners: Mapping[str, Sequence[Mapping[str, Any]]],
    rules: Mapping[str, Sequence[Mapping[str, Any]]],
    target_groups: Sequence[Mapping[str, Any]],
    attributes: Mapping[str, Sequence[Mapping[str, Any]]],
    targets: Mapping[str, Sequence[Mapping[str, Any]]],
    ports: Mapping[str, int],
    instance_ips: Mapping[str, str] | None = None,
    certificates: Mapping[str, Sequence[str]] | None = None,
) -> Model:
    """The model from describe_* answers.

    listeners: LB ARN -> describe_listeners()["Listeners"]; rules: listener ARN ->
    describe_rules()["Rules"]; attributes: TG ARN -> describe_target_group_attributes()
    ["Attributes"]; targets: TG ARN -> describe_target_health()["TargetHealthDescriptions"];
    ports: listener ARN -> local port; instance_ips: instance id -> private IP;
    certificates: HTTPS listener ARN -> PEM files (default first); an HTTPS listener without
    any is not served.
    """
    warnings: list[str] = []
    lbs = []
    for lb in sorted(load_balancers, key=lambda x: x["LoadBalancerName"]):
        if lb.get("Type", "application") != "application":
            continue
        lns = [
            _listener(
                ln,
                rules.get(ln["ListenerArn"], ()),
                ports,
                warnings,
                tuple((certificates or {}).get(ln["ListenerArn"], ())),
            )
            for ln in sorted(listeners.get(lb["LoadBalancerArn"], ()), key=lambda x: x["Port"])
        ]
        lbs.append(
            LoadBalancer(
                arn=lb["LoadBalancerArn"],
                name=lb["LoadBalancerName"],
                dns_name=lb.get("DNSName", ""),
                listeners=tuple(lns),
            )
        )
    tgs = []
    for tg in sorted(target_groups, key=lambda x: x["TargetGroupName"]):
        if tg.get("TargetType", "instance") not in SUPPORTED_TARGET_TYPES:
            warnings.append(
                f"target group {tg['TargetGroupName']}: type {tg['TargetType']} ignored"
            )
            continue
        arn = tg["TargetGroupArn"]
        tgs.append(
            TargetGroup(
                arn=arn,
                name=tg["TargetGroupName"],
                health=_health(tg),
                deregistration_delay=_deregistration_delay(attributes.get(arn, ())),
                targets=_targets(targets.get(arn, ()), tg, instance_ips or {}, warnings),
            )
        )
    return Model(load_balancers=tuple(lbs), target_groups=tuple(tgs), warnings=tuple(warnings))


def _listener(
    ln: Mapping[str, Any],
    rules: Sequence[Mapping[str, Any]],
    ports: Mapping[str, int],
    warnings: list[str],
    certificates: tuple[str, ...] = (),
) -> Listener:
    arn = ln["ListenerArn"]
    protocol = ln.get("Protocol", "HTTP")
    served = protocol == "HTTP" or (protocol == "HTTPS" and bool(certificates))
    built = []
    for rule in rules:
        if rule.get("IsDefault") or rule.get("Priority") == "default":
            continue
        parsed = _rule(rule, warnings)
        if parsed is not None:
            built.append(parsed)
    return Listener(
        arn=arn,
        port=int(ln["Port"]),
        protocol=protocol,
        local_port=ports.get(arn) if served else None,
        default=_action(ln.get("DefaultActions", ()), warnings, arn),
        rules=tuple(sorted(built, key=lambda r: r.priority)),
        certificates=certificates if served and protocol == "HTTPS" else (),
    )


def _rule(rule: Mapping[str, Any], warnings: list[str]) -> Rule | None:
    hosts: list[str] = []
    paths: list[str] = []
    methods: list[str] = []
    for cond in rule.get("Conditions", ()):
        kind = cond.get("Field")
        if kind == "host-header":
            hosts += cond.get("HostHeaderConfig", {}).get("Values") or cond.get("Values", [])
        elif kind == "path-pattern":
            paths += cond.get("PathPatternConfig", {}).get("Values") or cond.get("Values", [])
        elif kind == "http-request-method":
            methods += cond.get("HttpRequestMethodConfig", {}).get("Values", [])
        else:
            where = printable(rule["RuleArn"])
            warnings.append(f"rule {where}: condition {kind!r} is not supported locally")
            return None
    methods = [str(m).upper() for m in methods]
    for kind, values, pattern in [
        ("host-header", hosts, _HOST_RE),
        ("path-pattern", paths, _PATH_RE),
        ("http-request-method", methods, _METHOD_RE),
    ]:
        bad = [v for v in values if not (isinstance(v, str) and pattern.fullmatch(v))]
        if bad:
            where = printable(rule["RuleArn"])
            warnings.append(f"rule {where}: bad {kind} values {bad!r}; rule skipped")
            return None
    return Rule(
        arn=rule["RuleArn"],
        priority=int(rule["Priority"]),
        action=_action(rule.get("Actions", ()), warnings, rule["RuleArn"]),
        hosts=tuple(hosts),
        paths=tuple(paths),
        methods=tuple(methods),
    )


def valid_host_value(value: str) -> bool:
    """Whether a host-header condition value is one an ALB accepts (and so rendered here)."""
    return bool(_HOST_RE.fullmatch(value))


def printable(text: str) -> str:
    """Text for a config comment or a log line: control characters become `?`."""
    return _CONTROL_RE.sub("?", text)


def _action(actions: Sequence[Mapping[str, Any]], warnings: list[str], where: str) -> Action:
    """The terminal action of a rule (authenticate-* actions are skipped locally)."""
    final = [a for a in actions if a.get("Type") in ("forward", "fixed-response", "redirect")]
    if not final:
        warnings.append(f"{where}: no forward/fixed-response/redirect action; answering 503")
        return Action(kind="fixed-response", status_code=503, body="no action\n")
    act = sorted(final, key=lambda a: a.get("Order", 0))[0]
    kind = act["Type"]
    if kind == "forward":
        return Action(kind="forward", target_group_arn=_forward_target(act, warnings, where))
    if kind == "fixed-response":
        cfg = act.get("FixedResponseConfig", {})
        content_type = str(cfg.get("ContentType") or "text/plain")
        if content_type not in CONTENT_TYPES:
            warnings.append(f"{where}: content type {content_type!r} answered as text/plain")
            content_type = "text/plain"
        return Action(
            kind="fixed-response",
            status_code=int(cfg.get("StatusCode", "200")),
            content_type=content_type,
            body=cfg.get("MessageBody", ""),
        )
    cfg = act.get("RedirectConfig", {})
    location = redirect_location(cfg)
    if _CONTROL_RE.search(location):  # it becomes a header: no line breaks in it
        warnings.append(f"{where}: redirect to {location!r} has control characters; 503")
        return Action(kind="fixed-response", status_code=503, body="bad redirect\n")
    return Action(
        kind="redirect",
        status_code=int(str(cfg.get("StatusCode", "HTTP_302")).removeprefix("HTTP_")),
        location=location,
        redirect=tuple(sorted((str(k), str(v)) for k, v in cfg.items())),
    )


def _forward_target(act: Mapping[str, Any], warnings: list[str], where: str) -> str:
    if act.get("TargetGroupArn"):
        return str(act["TargetGroupArn"])
    groups = act.get("ForwardConfig", {}).get("TargetGroups", [])
    if len(groups) > 1:
        warnings.append(f"{where}: weighted forward; locally all traffic goes to the heaviest")
    best: Mapping[str, Any] = max(groups, key=lambda g: g.get("Weight", 1), default={})
    return str(best.get("TargetGroupArn", ""))


def redirect_location(cfg: Mapping[str, Any]) -> str:
    """An ALB RedirectConfig as an HAProxy log-format string for `redirect location`.

    #{protocol}, #{host}, #{port}, #{path} (without its leading slash) and #{query} are the
    ALB's placeholders; a default port for the protocol is left out of the URL."""
    protocol = str(cfg.get("Protocol", "#{protocol}"))
    host = str(cfg.get("Host", "#{host}"))
    port = str(cfg.get("Port", "#{port}"))
    path = str(cfg.get("Path", "/#{path}"))
    query = str(cfg.get("Query", "#{query}"))
    url = f"{protocol.lower()}://{host}"
    if not (protocol == "HTTPS" and port == "443") and not (protocol == "HTTP" and port == "80"):
        url += f":{port}"
    url += path
    if query:
        url += f"?{query}"
    subs = {
        "#{protocol}": "%[var(txn.proto)]",
        "#{host}": "%[var(txn.host)]",
        "#{port}": "%[var(txn.port)]",
        "#{path}": "%[path,regsub(^/,)]",
        "#{query}": "%[query]",
    }
    url = url.replace("%", "%%")
    for key, value in subs.items():
        url = url.replace(key, value)
    return url


def _health(tg: Mapping[str, Any]) -> HealthCheck:
    port = tg.get("HealthCheckPort", "traffic-port")
    matcher = str(tg.get("Matcher", {}).get("HttpCode", DEFAULT_MATCHER)).replace(" ", "")
    path = str(tg.get("HealthCheckPath") or "/")
    return HealthCheck(
        enabled=bool(tg.get("HealthCheckEnabled", True)),
        path=path if _CHECK_PATH_RE.fullmatch(path) else "/",
        port=None if port in ("traffic-port", None, "") else int(port),
        interval=int(tg.get("HealthCheckIntervalSeconds", 30)),
        timeout=int(tg.get("HealthCheckTimeoutSeconds", 5)),
        healthy=int(tg.get("HealthyThresholdCount", 5)),
        unhealthy=int(tg.get("UnhealthyThresholdCount", 2)),
        matcher=matcher if _MATCHER_RE.fullmatch(matcher) else DEFAULT_MATCHER,
    )


def _deregistration_delay(attributes: Sequence[Mapping[str, Any]]) -> int:
    for attr in attributes:
        if attr.get("Key") == "deregistration_delay.timeout_seconds":
            return int(attr.get("Value", 300))
    return 300


def _targets(
    descriptions: Sequence[Mapping[str, Any]],
    tg: Mapping[str, Any],
    instance_ips: Mapping[str, str],
    warnings: list[str],
) -> tuple[Target, ...]:
    out = set()
    for desc in descriptions:
        target = desc.get("Target", desc)
        if desc.get("TargetHealth", {}).get("State") == "draining":
            continue
        tid = str(target["Id"])
        port = int(target.get("Port") or tg.get("Port") or 80)
        if tg.get("TargetType") == "instance":
            address = instance_ips.get(tid)
            if not address:
                warnings.append(f"target group {tg['TargetGroupName']}: no IP for {tid}")
                continue
        else:
            address = tid
        if not _is_ip(address) or not 0 < port < 65536:
            name = tg["TargetGroupName"]
            warnings.append(f"target group {name}: target {tid!r} port {port} is not IP:port")
            continue
        out.add(Target(id=tid, address=address, port=port))
    return tuple(sorted(out, key=lambda t: (t.id, t.port)))


def with_targets(
    model: Model,
    target_group: Mapping[str, Any],
    descriptions: Sequence[Mapping[str, Any]],
    instance_ips: Mapping[str, str] | None = None,
) -> Model:
    """The model with one target group's targets read again (describe_target_health answers,
    `target_group` its describe_target_groups entry); nothing else changes."""
    arn = target_group["TargetGroupArn"]
    warnings = list(model.warnings)
    targets = _targets(descriptions, target_group, instance_ips or {}, warnings)
    return replace(
        model,
        target_groups=tuple(
            replace(tg, targets=targets) if tg.arn == arn else tg for tg in model.target_groups
        ),
        warnings=tuple(warnings),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- rendering


def host_regex(values: Iterable[str]) -> str:
    """ALB host-header values (case-insensitive, `*` = any run, `?` = one char) as a regex."""
    return _wildcards_regex(v.lower() for v in values)


def host_match(values: Sequence[str]) -> str:
    """An ACL's match on the lower-cased host: exact strings when no value has a wildcard
    (a string compare per value, where a regex cost the router about 0.1 µs per rule and
    request: 12 µs a request for the last of 100 apps), else the regex."""
    if any(ch in value for value in values for ch in "*?"):
        return f"-m reg '{host_regex(values)}'"
    return "-m str " + " ".join(value.lower() for value in values)


def path_regex(values: Iterable[str]) -> str:
    """ALB path-pattern values (case-sensitive, same wildcards) as a regex."""
    return _wildcards_regex(values)


def _wildcards_regex(values: Iterable[str]) -> str:
    parts = []
    for value in values:
        escaped = "".join(
            ".*" if ch == "*" else "." if ch == "?" else _regex_char(ch) for ch in value
        )
        parts.append(escaped)
    return "^(?:" + "|".join(parts) + ")$"


def _regex_char(ch: str) -> str:
    """One literal character in a single-quoted HAProxy word (where nothing is unescaped):
    a quote, a space or a control character would end the word or the line, so those are
    spelled as PCRE escapes; the rest as re.escape spells them."""
    if ch == "'" or not ch.isprintable() or ch.isspace():
        return "".join(f"\\x{byte:02x}" for byte in ch.encode())
    return re.escape(ch)


def server_args(tg: TargetGroup, target: Target) -> list[str]:
    """The words after `add server BE/NAME` (runtime API, which ignores `default-server`)."""
    return [f"{target.address}:{target.port}", *check_args(tg), *pool_args()]


def pool_args() -> list[str]:
    """Idle connections kept for reuse (keep-alive to the target). A server added through the
    runtime API keeps none unless told (HAProxy 2.6: `pool-max-conn` 0), one from the config
    keeps any number (-1): both alike, so a reload changes nothing."""
    return ["pool-max-conn", "-1", "pool-purge-delay", f"{POOL_PURGE_MS}ms"]


def check_args(tg: TargetGroup) -> list[str]:
    """The target group's health check as server keywords (`default-server` in the config).

    Besides the active checks, HAProxy watches the connections it makes for requests
    (`observe layer4`, which needs `check`): `fall` connections in a row refused or timed out
    mark the server down at once, without waiting `fall` check intervals; the active checks
    (every DOWN_INTER_MS while down) bring it back after `rise` passes. An ALB has no such
    thing: its health checks alone decide."""
    args: list[str] = []
    hc = tg.health
    if hc.enabled:
        args += [
            "check",
            "inter",
            f"{hc.interval}s",
            "fastinter",
            f"{min(FAST_INTER_MS, hc.interval * 1000)}ms",
            "downinter",
            f"{min(DOWN_INTER_MS, hc.interval * 1000)}ms",
            "rise",
            str(hc.healthy),
            "fall",
            str(hc.unhealthy),
            "observe",
            "layer4",
            "error-limit",
            str(hc.unhealthy),
            "on-error",
            "mark-down",
        ]
        if hc.port is not None:
            args += ["port", str(hc.port)]
    return args


def haproxy_string(text: str) -> str:
    """A double-quoted HAProxy config word: never more than one word, never a line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("$", "\\$").replace("#", "\\#")
    return '"' + _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped) + '"'


def _local_location(action: Action, local_ports: Mapping[int, int]) -> str:
    """A redirect to a port this load balancer serves here goes to the loopback port that
    serves it (HTTP :80 -> HTTPS :443 becomes https://host:<local port>/...)."""
    cfg = dict(action.redirect)
    port = cfg.get("Port", "")
    if port.isdigit() and int(port) in local_ports:
        return redirect_location({**cfg, "Port": str(local_ports[int(port)])})
    return action.location


def _action_view(
    action: Action, model: Model, name: str, local_ports: Mapping[int, int] | None = None
) -> dict[str, Any]:
    if action.kind == "forward":
        tg = model.target_group(action.target_group_arn)
        if tg is None:
            return {
                "backend": name,
                "kind": "fixed-response",
                "status": 503,
                "content_type": haproxy_string("text/plain"),
                "body": haproxy_string("target group not found\n"),
            }
        return {"backend": tg.backend, "kind": "forward"}
    if action.kind == "fixed-response":
        return {
            "backend": name,
            "kind": "fixed-response",
            "status": action.status_code,
            "content_type": haproxy_string(action.content_type),
            "body": haproxy_string(action.body) if action.body else "",
        }
    return {
        "backend": name,
        "kind": "redirect",
        "status": action.status_code,
        "location": haproxy_string(_local_location(action, local_ports or {})),
    }


def config_view(model: Model, state_dir: Path) -> dict[str, Any]:
    """What the template needs, with every name and quoted word decided here."""
    frontends = []
    action_backends = []
    for lb, ln in model.served_listeners:
        fe_name = safe_name(f"lb-{lb.name}-{ln.port}")
        local_ports = {x.port: x.local_port for x in lb.listeners if x.local_port}
        rules = []
        for rule in ln.rules:
            act = _action_view(rule.action, model, f"{fe_name}-r{rule.priority}", local_ports)
            rules.append(
                {
                    "id": f"r{rule.priority}",
                    "host": host_match(rule.hosts) if rule.hosts else None,
                    "path": path_regex(rule.paths) if rule.paths else None,
                    "methods": " ".join(rule.methods) if rule.methods else None,
                    "backend": act["backend"],
                }
            )
            if act["kind"] != "forward":
                action_backends.append(act)
        default = _action_view(ln.default, model, f"{fe_name}-default", local_ports)
        if default["kind"] != "forward":
            action_backends.append(default)
        frontends.append(
            {
                "name": fe_name,
                "lb": safe_name(lb.name),
                "listener_arn": printable(ln.arn),
                "port": ln.port,
                "proto": ln.protocol.lower(),
                "local_port": ln.local_port,
                "crt_list": str(crt_list_path(state_dir, fe_name)) if ln.certificates else "",
                "rules": rules,
                "default_backend": default["backend"],
            }
        )
    backends = []
    for tg in model.target_groups:
        backends.append(
            {
                "name": tg.backend,
                "arn": printable(tg.arn),
                "health": tg.health,
                "check_path": haproxy_string(tg.health.path),
                "default_server": " ".join([*check_args(tg), *pool_args()]),
                "servers": [
                    {"name": t.server_name, "address": f"{t.address}:{t.port}"} for t in tg.targets
                ],
            }
        )
    return {
        "state_dir": str(state_dir),
        "frontends": frontends,
        "backends": backends,
        "action_backends": action_backends,
    }


def crt_list_path(state_dir: Path, frontend: str) -> Path:
    return state_dir / "tls" / f"{frontend}.crtlist"


def crt_lists(model: Model, state_dir: Path) -> dict[Path, str]:
    """The crt-list file of every HTTPS frontend: its PEM files one a line, the default first.

    A `bind` line holds at most 64 words, so `crt` words per certificate stopped at about 30
    apps on one HTTPS listener (HAProxy refused the config); a crt-list has no such bound."""
    out = {}
    for lb, ln in model.served_listeners:
        if ln.certificates:
            path = crt_list_path(state_dir, safe_name(f"lb-{lb.name}-{ln.port}"))
            out[path] = "".join(f"{pem}\n" for pem in ln.certificates)
    return out


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - an HAProxy config, not HTML; words are quoted above
    )


def render_config(model: Model, state_dir: Path) -> str:
    template = _environment().get_template("localcloud/haproxy.cfg.j2")
    return template.render(**config_view(model, state_dir))


def only_servers(model: Model, known: Collection[tuple[str, str]]) -> Model:
    """The model keeping only targets whose (backend, server) is in `known`.

    A (re)loaded HAProxy starts the servers of its config as up, before any check, and
    spreads their first checks over a whole interval. So a (re)load gets only the servers the
    running HAProxy already has (their state comes from the state file); the others are then
    added through the runtime API, held down until their first checks pass."""
    return replace(
        model,
        target_groups=tuple(
            replace(
                tg, targets=tuple(t for t in tg.targets if (tg.backend, t.server_name) in known)
            )
            for tg in model.target_groups
        ),
    )


def without_targets(model: Model) -> Model:
    return replace(
        model,
        target_groups=tuple(
            replace(tg, targets=(), deregistration_delay=0) for tg in model.target_groups
        ),
    )


def structure_key(model: Model, state_dir: Path) -> str:
    """The config without its server lines, and the certificates its crt-lists name: when it
    changes, HAProxy must reload (it reads crt-lists only then)."""
    lists = sorted(crt_lists(model, state_dir).items())
    return render_config(without_targets(model), state_dir) + "".join(
        f"# {path}\n{text}" for path, text in lists
    )


# ---------------------------------------------------------------- diffs


@dataclass(frozen=True)
class TargetChanges:
    """Per backend: (target group, target) pairs to add and server names to drain."""

    added: tuple[tuple[TargetGroup, Target], ...] = ()
    removed: tuple[tuple[TargetGroup, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def target_changes(old: Model, new: Model) -> TargetChanges:
    """Targets registered and deregistered between two models of the same structure."""
    added = []
    removed = []
    old_tgs = {tg.arn: tg for tg in old.target_groups}
    for tg in new.target_groups:
        before = old_tgs.get(tg.arn)
        before_names = {t.server_name for t in before.targets} if before else set()
        now_names = {t.server_name for t in tg.targets}
        added += [(tg, t) for t in tg.targets if t.server_name not in before_names]
        removed += [(tg, name) for name in sorted(before_names - now_names)]
    return TargetChanges(added=tuple(added), removed=tuple(removed))


# ---------------------------------------------------------------- runtime API commands


def _srv(backend: str, server: str) -> str:
    return f"{backend}/{server}"


def cmd_add_server(tg: TargetGroup, target: Target) -> str:
    return f"add server {_srv(tg.backend, target.server_name)} " + " ".join(server_args(tg, target))


def cmd_activate(tg: TargetGroup, target: Target) -> str:
    """Enable a freshly added server, which HAProxy makes in maintenance.

    `enable server` marks it up at once; `set server ... health down` in the same line makes
    it wait for passing checks, as an ALB target waits in `initial`. One line: the CLI runs it
    without letting a request be balanced in between. The local cloud admits it on its first
    passing check (cmd_admit), not after `rise` of them: a deploy's new dyno answers already
    when it is registered. A target coming back from down still needs `rise`."""
    srv = _srv(tg.backend, target.server_name)
    if not tg.health.enabled:
        return f"enable server {srv}"
    return f"enable health {srv}; enable server {srv}; set server {srv} health down"


def cmd_admit(backend: str, server: str) -> str:
    """Up now: a newly registered target that passed its first check (`passed_once`)."""
    return f"set server {_srv(backend, server)} health up"


def passed_once(status: str) -> bool:
    """A `show stat` status of a server down and going up with a passing check behind it
    (`DOWN 1/2`: health 1 of rise 2). A server marked down counts from 0 (`set server ...
    health down`, or `fall` failed checks), so 1 is one check passed since then."""
    word, _, counts = status.partition(" ")
    done, _, rise = counts.partition("/")
    return word == "DOWN" and done.isdigit() and rise.isdigit() and int(done) >= 1


def cmd_drain(backend: str, server: str) -> str:
    return f"set server {_srv(backend, server)} state drain"


def cmd_ready(backend: str, server: str) -> str:
    return f"set server {_srv(backend, server)} state ready"


def cmd_remove(backend: str, server: str, force: bool = False) -> str:
    """Take a drained server out; `force` also cuts sessions still open past the delay."""
    srv = _srv(backend, server)
    parts = [f"disable server {srv}"]
    if force:
        parts.append(f"shutdown sessions server {srv}")
    parts.append(f"del server {srv}")
    return "; ".join(parts)


def cmd_show_stat() -> str:
    return "show stat"


def cmd_show_servers_state() -> str:
    return "show servers state"


# ---------------------------------------------------------------- parsing runtime API answers


def parse_stat(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """`show stat` CSV -> {(proxy, server): row}."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        out[(row.get("pxname", ""), row.get("svname", ""))] = row
    return out


def server_sessions(stat: Mapping[tuple[str, str], Mapping[str, str]], be: str, srv: str) -> int:
    """Current plus queued sessions of one server; -1 when HAProxy does not know it."""
    row = stat.get((be, srv))
    if row is None:
        return -1
    return int(row.get("scur") or 0) + int(row.get("qcur") or 0)


def servers_in_state(text: str) -> set[tuple[str, str]]:
    """(backend, server) pairs in a `show servers state` dump."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and not line.startswith("#") and parts[0].isdigit():
            out.add((parts[1], parts[3]))
    return out


def cli_error(answer: str) -> str | None:
    """The runtime API answers errors as text; None when the answer looks like success."""
    bad = ("No such", "Unknown command", "cannot", "Require", "not found", "invalid", "error")
    for line in answer.splitlines():
        if any(word.lower() in line.lower() for word in bad):
            return line.strip()
    return None


# ---------------------------------------------------------------- response-time metrics

# The router line's time, load balancer, backend and server response time (see log-format in
# haproxy.cfg.j2); `service` is HAProxy's %Tr: the request sent to the target until its
# response headers arrived, what the ALB reports as TargetResponseTime. -1 when none came.
_TIMING_RE = re.compile(
    r"^(?P<at>\S+) router\[(?P<lb>[^\]]*)\]: .* backend=(?P<backend>\S+) "
    r"connect=-?\d+ms service=(?P<service>-?\d+)ms "
)
METRIC_VALUES_MAX = 150  # distinct values in one PutMetricData datum (CloudWatch's limit)


@dataclass(frozen=True)
class Timing:
    at: float  # epoch seconds
    lb: str  # load balancer name
    backend: str
    service_ms: int


def parse_timing(line: str) -> Timing | None:
    """One router line -> its timing; None for other lines and requests no target answered."""
    match = _TIMING_RE.match(line)
    if not match or int(match["service"]) < 0:
        return None
    try:
        at = datetime.fromisoformat(match["at"]).timestamp()
    except ValueError:
        return None
    return Timing(at, match["lb"], match["backend"], int(match["service"]))


def metric_data(
    timings: Iterable[Timing], model: Model, dimensions: Callable[[str, str], list[Any]]
) -> list[dict[str, Any]]:
    """PutMetricData datums: every answered request's response time in seconds, per target
    group and load balancer (`dimensions(lb_arn, tg_arn)`) and per second, as values with
    counts. Lines of load balancers or backends the model does not know are left out."""
    lbs = {safe_name(lb.name): lb.arn for lb in model.load_balancers}  # as the router logs it
    tgs = {tg.backend: tg.arn for tg in model.target_groups}
    grouped: dict[tuple[str, str, int], dict[float, int]] = {}
    for t in timings:
        if t.lb in lbs and t.backend in tgs:
            counts = grouped.setdefault((lbs[t.lb], tgs[t.backend], int(t.at)), {})
            seconds = t.service_ms / 1000.0
            counts[seconds] = counts.get(seconds, 0) + 1
    datums = []
    for (lb_arn, tg_arn, second), counts in sorted(grouped.items()):
        values = sorted(counts)
        for i in range(0, len(values), METRIC_VALUES_MAX):
            chunk = values[i : i + METRIC_VALUES_MAX]
            datums.append(
                {
                    "MetricName": "TargetResponseTime",
                    "Dimensions": dimensions(lb_arn, tg_arn),
                    "Timestamp": datetime.fromtimestamp(second, UTC),
                    "Values": chunk,
                    "Counts": [float(counts[v]) for v in chunk],
                    "Unit": "Seconds",
                }
            )
    return datums


# The router line's status and the server chosen (`<NOSRV>`: none, the router answered itself).
_ANSWER_RE = re.compile(
    r"^(?P<at>\S+) router\[(?P<lb>[^\]]*)\]: .* dyno=(?P<dyno>\S+) backend=(?P<backend>\S+) "
    r"connect=-?\d+ms service=(?P<service>-?\d+)ms status=(?P<status>-?\d+) "
)


@dataclass(frozen=True)
class Answer:
    at: float  # epoch seconds
    lb: str
    backend: str
    status: int
    by_target: bool  # the target sent the response (else the router did: a timeout, a refusal)


def parse_answer(line: str) -> Answer | None:
    """One router line -> who answered it; None for other lines and requests for which no
    target was chosen (the ALB counts those for the load balancer, not the target group)."""
    match = _ANSWER_RE.match(line)
    if not match or match["dyno"] == "<NOSRV>":
        return None
    try:
        at = datetime.fromisoformat(match["at"]).timestamp()
    except ValueError:
        return None
    by_target = int(match["service"]) >= 0
    return Answer(at, match["lb"], match["backend"], int(match["status"]), by_target)


def count_data(
    answers: Iterable[Answer], model: Model, dimensions: Callable[[str, str], list[Any]]
) -> list[dict[str, Any]]:
    """PutMetricData datums as the ALB's per target group and per second: `RequestCount`, and
    `HTTPCode_Target_2XX_Count`..`5XX` for the responses the targets sent."""
    lbs = {safe_name(lb.name): lb.arn for lb in model.load_balancers}
    tgs = {tg.backend: tg.arn for tg in model.target_groups}
    grouped: dict[tuple[str, str, int], dict[str, int]] = {}
    for a in answers:
        if a.lb in lbs and a.backend in tgs:
            counts = grouped.setdefault((lbs[a.lb], tgs[a.backend], int(a.at)), {})
            counts["RequestCount"] = counts.get("RequestCount", 0) + 1
            if a.by_target and 200 <= a.status < 600:
                name = f"HTTPCode_Target_{a.status // 100}XX_Count"
                counts[name] = counts.get(name, 0) + 1
    return [
        {
            "MetricName": name,
            "Dimensions": dimensions(lb_arn, tg_arn),
            "Timestamp": datetime.fromtimestamp(second, UTC),
            "Value": float(n),
            "Unit": "Count",
        }
        for (lb_arn, tg_arn, second), counts in sorted(grouped.items())
        for name, n in sorted(counts.items())
    ]
