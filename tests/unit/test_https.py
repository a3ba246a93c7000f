"""HTTPS pieces that need no cloud: the local CA, and HTTPS listeners rendered for HAProxy."""

from __future__ import annotations

import datetime
import shutil
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from provisioner import authority
from provisioner.localcloud import haproxy as hx

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
LB = f"{ARN}:loadbalancer/app/web/aaa"
LN80 = f"{ARN}:listener/app/web/aaa/l80"
LN443 = f"{ARN}:listener/app/web/aaa/l443"
TG = f"{ARN}:targetgroup/app/111"
REDIRECT = {
    "Type": "redirect",
    "RedirectConfig": {
        "Protocol": "HTTPS",
        "Port": "443",
        "Host": "#{host}",
        "Path": "/#{path}",
        "Query": "#{query}",
        "StatusCode": "HTTP_301",
    },
}


# ---------------------------------------------------------------- the local CA


def test_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    first = authority.ensure_ca(tmp_path)
    again = authority.ensure_ca(tmp_path)
    assert first == again
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(first.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _handshake(tmp_path: Path, issued: authority.Issued, hostname: str) -> str | None:
    """A TLS handshake in memory, verifying against the CA in tmp_path; None when it passes."""
    context = ssl.create_default_context(cafile=str(authority.ca_cert_path(tmp_path)))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pem = tmp_path / "server.pem"
    pem.write_bytes(issued.cert_pem + issued.key_pem)
    server.load_cert_chain(str(pem))
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(client_in, client_out, server_hostname=hostname)
    srv = server.wrap_bio(server_in, server_out, server_side=True)
    try:
        for _ in range(10):
            for side in (client, srv):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            server_in.write(client_out.read())
            client_in.write(server_out.read())
    except ssl.SSLError as exc:
        return str(exc)
    return None


def test_server_cert_is_kept_and_verifies_in_tls(tmp_path: Path) -> None:
    names = authority.server_names("localhost")
    issued = authority.server_cert(names, tmp_path)
    assert authority.server_cert(names, tmp_path) == issued  # kept, not issued again
    key_file = tmp_path / "certs" / f"{issued.fingerprint}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _handshake(tmp_path, issued, "localhost") is None
    # OpenSSL refuses `*.localhost` (a wildcard over one label): why the local load balancer
    # gives every app host a certificate of its own.
    assert "Hostname mismatch" in (_handshake(tmp_path, issued, "shop.localhost") or "")
    assert authority.single_label_wildcards(authority.dns_names(issued.cert_pem)) == ["localhost"]
    own = authority.issue(authority.ensure_ca(tmp_path), ["shop.localhost"])
    assert _handshake(tmp_path, own, "shop.localhost") is None
    wider = authority.issue(authority.ensure_ca(tmp_path), ["*.apps.test"])
    assert _handshake(tmp_path, wider, "shop.apps.test") is None


def test_names_and_renewal() -> None:
    assert authority.server_names("localhost") == ["*.localhost", "localhost"]
    assert authority.server_names("apps.test") == [
        "*.localhost",
        "localhost",
        "*.apps.test",
        "apps.test",
    ]
    root = authority.make_ca()
    cert = authority.issue(root, ["*.localhost", "localhost"])
    assert authority.covers(cert.cert_pem, ["localhost", "*.localhost"])
    assert not authority.covers(cert.cert_pem, ["*.localhost"])
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=authority.CERT_DAYS - 10)
    assert not authority.covers(cert.cert_pem, ["*.localhost", "localhost"], now=later)
    assert authority.signed_by(cert.cert_pem, root.cert_pem)
    assert not authority.signed_by(cert.cert_pem, authority.make_ca().cert_pem)
    with pytest.raises(ValueError):
        authority.issue(root, [])


def test_a_new_ca_means_a_new_server_cert(tmp_path: Path) -> None:
    old = authority.server_cert(["*.localhost"], tmp_path)
    (tmp_path / "ca.crt").unlink()
    new = authority.server_cert(["*.localhost"], tmp_path)
    assert new.fingerprint != old.fingerprint


# ---------------------------------------------------------------- HTTPS listeners


def _model(pems: dict[str, list[str]]) -> hx.Model:
    listeners = {
        LB: [
            {"ListenerArn": LN80, "Port": 80, "Protocol": "HTTP", "DefaultActions": [REDIRECT]},
            {
                "ListenerArn": LN443,
                "Port": 443,
                "Protocol": "HTTPS",
                "DefaultActions": [
                    {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}
                ],
            },
        ]
    }
    rules = {
        LN443: [
            {
                "RuleArn": f"{LN443}/r100",
                "Priority": "100",
                "Conditions": [{"Field": "host-header", "Values": ["shop.localhost"]}],
                "Actions": [{"Type": "forward", "TargetGroupArn": TG}],
            }
        ]
    }
    tgs = [{"TargetGroupArn": TG, "TargetGroupName": "app", "Port": 80, "TargetType": "ip"}]
    return hx.build_model(
        [{"LoadBalancerArn": LB, "LoadBalancerName": "web", "DNSName": "web-1.elb"}],
        listeners,
        rules,
        tgs,
        {},
        {TG: [{"Target": {"Id": "198.18.0.5", "Port": 5000}}]},
        {LN80: 18000, LN443: 18001},
        None,
        pems,
    )


def test_https_listener_is_served_only_with_certificates() -> None:
    (lb,) = _model({}).load_balancers
    assert [ln.local_url for ln in lb.listeners] == ["http://127.0.0.1:18000", None]
    (lb,) = _model({LN443: ["/s/tls/a.pem", "/s/tls/b.pem"]}).load_balancers
    http, https = lb.listeners
    assert https.local_url == "https://127.0.0.1:18001"
    assert https.certificates == ("/s/tls/a.pem", "/s/tls/b.pem")
    assert [r.priority for r in https.rules] == [100]


def test_rendered_https_frontend_and_local_redirect() -> None:
    text = hx.render_config(_model({LN443: ["/s/tls/a.pem", "/s/tls/b.pem"]}), Path("/s"))
    # Several certificates in a crt-list: the first is the default, SNI picks among them.
    assert "bind 127.0.0.1:18001 ssl crt-list /s/tls/lb-web-443.crtlist\n" in text
    lists = hx.crt_lists(_model({LN443: ["/s/tls/a.pem", "/s/tls/b.pem"]}), Path("/s"))
    assert lists == {Path("/s/tls/lb-web-443.crtlist"): "/s/tls/a.pem\n/s/tls/b.pem\n"}
    assert "bind 127.0.0.1:18000\n" in text
    assert "http-request set-header X-Forwarded-Proto https" in text
    assert "http-request set-header X-Forwarded-Port 443" in text
    # HTTP :80 -> HTTPS :443 points at the loopback port that serves :443 here.
    assert (
        'http-request redirect location "https://%[var(txn.host)]:18001/%[path,regsub(^/,)]'
        '?%[query]" code 301'
    ) in text
    # Without a served :443 the redirect keeps the ALB's port (the default one, left out).
    plain = hx.render_config(_model({}), Path("/s"))
    assert 'location "https://%[var(txn.host)]/%[path,regsub(^/,)]?%[query]" code 301' in plain


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_an_https_frontend(tmp_path: Path) -> None:
    issued = authority.server_cert(["*.localhost", "localhost"], tmp_path / "ca")
    other = authority.server_cert(["*.example.test"], tmp_path / "ca")
    pems = []
    for name, cert in (("a", issued), ("b", other)):
        pem = tmp_path / f"{name}.pem"
        pem.write_bytes(cert.cert_pem + cert.key_pem)
        pems.append(str(pem))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(hx.render_config(_model({LN443: pems}), tmp_path))
    for path, text in hx.crt_lists(_model({LN443: pems}), tmp_path).items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "ALERT" not in result.stderr


# ---------------------------------------------------------------- platform helpers (pure)


def test_listener_actions_compare_ignoring_what_aws_adds() -> None:
    from provisioner.aws.listeners import https_redirect_action, not_found_action, same_actions

    described = [dict(https_redirect_action()[0], Order=1)]
    assert same_actions(described, https_redirect_action())
    assert not same_actions(not_found_action(), https_redirect_action())
    moved = [dict(described[0], RedirectConfig={**described[0]["RedirectConfig"], "Port": "8443"})]
    assert not same_actions(moved, https_redirect_action())
    assert not same_actions([], https_redirect_action())


def test_validation_records_once_each() -> None:
    from provisioner.aws.acmdns import validation_records

    record = {"Name": "_x.apps.test.", "Type": "CNAME", "Value": "_y.acm-validations.aws."}
    cert = {
        "DomainValidationOptions": [
            {"DomainName": "*.apps.test", "ResourceRecord": record},
            {"DomainName": "apps.test", "ResourceRecord": record},
            {"DomainName": "pending.test"},  # ACM fills the record in a little later
        ]
    }
    assert validation_records(cert) == [record]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_a_refused_config_is_refused_even_when_haproxy_says_nothing(tmp_path: Path) -> None:
    from provisioner.localcloud.lb import HaproxyProcess

    # More than 64 words on a line: `haproxy -c -q` exits 1 and prints nothing.
    words = " ".join(f"crt /x/{i}.pem" for i in range(40))
    problem = HaproxyProcess(tmp_path).check(f"frontend f\n    bind 127.0.0.1:1 ssl {words}\n")
    assert problem is not None


def test_many_certificates_keep_the_bind_line_short() -> None:
    pems = [f"/s/tls/host-app{i}.pem" for i in range(200)]
    text = hx.render_config(_model({LN443: pems}), Path("/s"))
    (bind,) = [line for line in text.splitlines() if "18001" in line and "bind" in line]
    assert bind == "    bind 127.0.0.1:18001 ssl crt-list /s/tls/lb-web-443.crtlist"
    (listed,) = hx.crt_lists(_model({LN443: pems}), Path("/s")).values()
    assert listed.splitlines() == pems


def test_a_certificate_added_or_removed_changes_the_structure() -> None:
    # The crt-list's path stays in the config: its content must count, or no reload reads it.
    one = hx.structure_key(_model({LN443: ["/s/tls/a.pem"]}), Path("/s"))
    two = hx.structure_key(_model({LN443: ["/s/tls/a.pem", "/s/tls/b.pem"]}), Path("/s"))
    assert one != two
