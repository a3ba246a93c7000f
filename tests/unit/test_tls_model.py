"""Custom-domain certificates, the pure part: names, bundles from files, and the plan."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from provisioner.errors import ValidationError
from provisioner.model.tls import (
    AUTO,
    CUSTOM,
    AppCert,
    CertPlan,
    covers,
    domain_status,
    find,
    parse_bundle,
    plan_certificates,
)

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(key, issuer_key, subject: str, issuer: str, names, days=90, start_days=-1, ca=False):
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=start_days))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _key_pem(key, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.fixture(scope="module")
def chain():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_pem = _cert(ca_key, ca_key, "Test CA", "Test CA", [], days=3650, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    names = ["shop.example.com", "*.shop.example.com"]
    leaf_pem = _cert(leaf_key, ca_key, "shop.example.com", "Test CA", names)
    return ca_key, ca_pem, leaf_key, leaf_pem


def test_wildcards_cover_one_label_only() -> None:
    assert covers("www.example.com", "WWW.example.com.")
    assert covers("*.example.com", "www.example.com")
    assert not covers("*.example.com", "example.com")
    assert not covers("*.example.com", "a.b.example.com")
    assert not covers("www.example.com", "api.example.com")


def test_a_bundle_splits_leaf_and_chain_and_names(chain) -> None:
    _, ca_pem, leaf_key, leaf_pem = chain
    bundle = parse_bundle(leaf_pem + ca_pem, _key_pem(leaf_key), NOW)
    assert bundle.cert_pem == leaf_pem and bundle.chain_pem == ca_pem
    assert bundle.names == ("shop.example.com", "*.shop.example.com")
    assert bundle.issuer == "Test CA"
    assert bundle.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_certificate_without_san_uses_its_common_name(chain) -> None:
    ca_key = chain[0]
    key = ec.generate_private_key(ec.SECP256R1())
    pem = _cert(key, ca_key, "old.example.com", "Test CA", [])
    assert parse_bundle(pem, _key_pem(key), NOW).names == ("old.example.com",)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not a pem", "certificate file: must hold a PEM certificate"),
        ("garbage key", "key file: must hold a PEM private key"),
        ("encrypted key", "key file: must not be encrypted"),
        ("other key", "key file: does not belong to the certificate"),
        ("expired", "certificate: expired on 2026-11-16"),
        ("weak rsa", "key: RSA keys need at least 2048 bits"),
        ("p521", "key: must be RSA (2048 bits or more) or ECDSA P-256/P-384"),
    ],
)
def test_bad_bundles_get_one_clear_line(chain, case: str, message: str) -> None:
    ca_key, _, leaf_key, leaf_pem = chain
    cert, key = leaf_pem, _key_pem(leaf_key)
    if case == "not a pem":
        cert = b"hello"
    elif case == "garbage key":
        key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    elif case == "encrypted key":
        key = _key_pem(leaf_key, b"secret")
    elif case == "other key":
        key = _key_pem(ec.generate_private_key(ec.SECP256R1()))
    elif case == "expired":
        cert = _cert(leaf_key, ca_key, "x.example.com", "Test CA", ["x.example.com"], -10, -100)
    elif case == "weak rsa":
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        cert, key = (
            _cert(weak, ca_key, "w.example.com", "Test CA", ["w.example.com"]),
            _key_pem(weak),
        )
    elif case == "p521":
        big = ec.generate_private_key(ec.SECP521R1())
        cert, key = _cert(big, ca_key, "p.example.com", "Test CA", ["p.example.com"]), _key_pem(big)
    with pytest.raises(ValidationError) as caught:
        parse_bundle(cert, key, NOW)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def _auto(domain: str, status: str = "ISSUED", arn: str = "", created: str = "1") -> AppCert:
    arn = arn or f"arn:aws:acm:r:1:certificate/auto-{domain}-{created}"
    return AppCert(arn, AUTO, (domain,), status, domain=domain, created=created)


def _custom(names: tuple[str, ...], status: str = "ISSUED", arn: str = "") -> AppCert:
    return AppCert(arn or f"arn:aws:acm:r:1:certificate/custom-{names[0]}", CUSTOM, names, status)


def test_a_new_domain_gets_a_request_and_an_issued_one_is_attached_once() -> None:
    plan = plan_certificates(["www.example.com"], [], [])
    assert plan == CertPlan(request=("www.example.com",))
    issued = _auto("www.example.com")
    plan = plan_certificates(["www.example.com"], [issued], [])
    assert plan == CertPlan(attach=(issued.arn,))
    assert plan_certificates(["www.example.com"], [issued], [issued.arn]).empty


def test_a_pending_certificate_waits_and_says_so() -> None:
    pending = _auto("www.example.com", "PENDING_VALIDATION")
    plan = plan_certificates(["www.example.com"], [pending], [])
    assert plan.empty
    assert plan.notes == ("www.example.com: certificate pending (pending validation)",)


def test_a_custom_certificate_replaces_automatic_ones_it_covers() -> None:
    auto_www, auto_api = _auto("www.example.com"), _auto("api.other.org")
    custom = _custom(("*.example.com",))
    attached = [auto_www.arn, auto_api.arn]
    plan = plan_certificates(
        ["www.example.com", "api.other.org"], [auto_www, auto_api, custom], attached
    )
    assert plan == CertPlan(delete=(auto_www.arn,), attach=(custom.arn,), detach=(auto_www.arn,))
    # and once the custom one is gone, the domain asks for an automatic one again
    plan = plan_certificates(["www.example.com", "api.other.org"], [auto_api], [auto_api.arn])
    assert plan == CertPlan(request=("www.example.com",))


def test_removed_domains_and_duplicates_lose_their_certificates() -> None:
    old, new = _auto("www.example.com", created="1"), _auto("www.example.com", created="2")
    gone = _auto("gone.example.com")
    plan = plan_certificates(["www.example.com"], [old, new, gone], [old.arn, gone.arn])
    assert plan.delete == tuple(sorted([old.arn, gone.arn]))
    assert plan.attach == (new.arn,)
    assert plan.detach == tuple(sorted([old.arn, gone.arn]))
    assert plan.request == ()


def test_failed_automatic_certificates_are_requested_again() -> None:
    failed = _auto("www.example.com", "VALIDATION_TIMED_OUT")
    plan = plan_certificates(["www.example.com"], [failed], [])
    assert plan.delete == (failed.arn,) and plan.request == ("www.example.com",)


def test_certificates_of_other_apps_on_the_listener_are_left_alone() -> None:
    assert plan_certificates([], [], ["arn:aws:acm:r:1:certificate/someone-else"]).empty


def test_domain_status_and_find() -> None:
    auto = _auto("www.example.com", arn="arn:aws:acm:r:1:certificate/1234abcd-0000")
    custom = _custom(("shop.example.com",), arn="arn:aws:acm:r:1:certificate/1234ffff-0000")
    certs = [auto, custom]
    assert domain_status("www.example.com", certs, [auto.arn]) == "auto: issued (serving)"
    assert domain_status("shop.example.com", certs, []) == "custom: issued"
    assert domain_status("new.example.com", certs, []) == "no certificate"
    assert find(certs, "1234ffff") == custom
    assert find(certs, auto.arn) == auto
    with pytest.raises(ValidationError, match="not one of the app's"):
        find(certs, "1234")  # shorter than 6 characters: not a prefix
    twins = [*certs, _custom(("b.example.com",), arn="arn:aws:acm:r:1:certificate/1234ab99-0")]
    with pytest.raises(ValidationError, match="ambiguous"):
        find(twins, "1234ab")


def test_app_certificates_may_not_name_the_platform_domain() -> None:
    from provisioner.errors import ValidationError
    from provisioner.model.tls import check_app_cert_names

    check_app_cert_names(["www.example.com", "*.shop.example.com"], "apps.example.com")
    for name in ("apps.example.com", "a.apps.example.com", "*.apps.example.com", "*.example.com"):
        with pytest.raises(ValidationError, match="platform's domain"):
            check_app_cert_names(["www.example.com", name], "apps.example.com")
