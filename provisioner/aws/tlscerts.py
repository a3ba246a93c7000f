"""The platform's wildcard certificate, the HTTPS listener's default: ACM's own on AWS (DNS
validation), the local CA's on `local` (imported into ACM), or the user's own (`--cert`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws import acmdns
from provisioner.aws.session import retry_in_use
from provisioner.aws.tags import PLATFORM_TAG, RESOURCE_TAG, Finder, tagged, tags
from provisioner.errors import DynoformError, ValidationError
from provisioner.model.tls import Bundle, covers, fingerprint
from provisioner.targets import Target

CERT_WAIT_SECONDS = 1800  # DNS validation of a new ACM certificate takes minutes
CERT_POLL_SECONDS = 10.0


class PlatformCertificate:
    """Finds or makes the certificate; one it replaces is deleted once the listener serves the
    new one (`delete_replaced`)."""

    def __init__(self, b: Finder, bundle: Bundle | None = None) -> None:
        self.b = b
        self.bundle = bundle  # the user's own wildcard certificate, to import
        self.replaced: list[str] = []  # ACM's certificate, once the user's one serves

    @property
    def acm(self) -> Any:
        return self.b.aws.client("acm")

    def _own(self) -> dict[str, Any] | None:
        """The platform's certificate in ACM, found by its tags (newest first)."""
        found = []
        wanted = {PLATFORM_TAG: self.b.name, RESOURCE_TAG: "cert"}
        for arn in tagged(self.b.aws, "acm", **wanted):
            try:
                found.append(self.acm.describe_certificate(CertificateArn=arn)["Certificate"])
            except ClientError:
                continue  # deleted a moment ago: the tagging index lags
        if not found:
            return None
        return max(found, key=lambda c: str(c.get("ImportedAt") or c.get("CreatedAt") or ""))

    def arn(self) -> str:
        """The HTTPS certificate: on `local` the local CA's wildcard certificate imported into
        ACM (re-imported in place when the CA issued a new one); on AWS a wildcard certificate
        requested from ACM with DNS validation (records put in Route 53 when the zone is
        there, else printed), waited for until issued."""
        b = self.b
        existing = self._own()
        if existing is not None and not b.create:
            return str(existing["CertificateArn"])  # loading: whichever certificate serves
        if self.bundle is not None:
            return self._imported(existing, self.bundle)
        if existing is not None and existing.get("Type") == "IMPORTED" and not self._ours(existing):
            return str(existing["CertificateArn"])  # the user's own: kept until they replace it
        if b.target.is_local:
            return self._local(existing)
        if existing is not None:
            arn = str(existing["CertificateArn"])
            if existing.get("Status") != "ISSUED":
                self._validate(arn)
            return arn
        b.missing("certificate")
        domain = b.target.app_domain
        arn = str(
            self.acm.request_certificate(
                DomainName=f"*.{domain}",
                SubjectAlternativeNames=[f"*.{domain}", domain],
                ValidationMethod="DNS",
                IdempotencyToken=b.name.replace("-", "")[:32] or "dynoform",
                Tags=tags(b.name, "cert"),
            )["CertificateArn"]
        )
        b.created.append(f"certificate *.{domain} (ACM, DNS validation)")
        self._validate(arn)
        return arn

    def delete_replaced(self) -> None:
        for arn in self.replaced:
            retry_in_use("certificate", self.acm.delete_certificate, CertificateArn=arn)
            self.b.created.append(f"deleted the certificate it replaced ({arn.rsplit('/', 1)[-1]})")

    def _ca_dir(self) -> Path:
        local = self.b.target.local
        if local is None:
            raise DynoformError(f"target {self.b.target.name!r} has no local CA")
        return local.ca_dir

    def _ours(self, described: dict[str, Any]) -> bool:
        """Whether a platform certificate is dynoform's own (ACM's, or the local CA's)."""
        if described.get("Type") != "IMPORTED":
            return True
        if not self.b.target.is_local:
            return False
        held = self.acm.get_certificate(CertificateArn=described["CertificateArn"])
        from provisioner import authority  # here: it imports cryptography (~10 ms)

        root = authority.ensure_ca(self._ca_dir())
        return authority.signed_by(str(held["Certificate"]).encode(), root.cert_pem)

    def _imported(self, existing: dict[str, Any] | None, bundle: Bundle) -> str:
        """The user's certificate for `*.<domain>`: imported, or re-imported in place over an
        earlier imported one (same ARN); ACM's own is replaced by it."""
        b = self.b
        domain = b.target.app_domain
        if not any(covers(name, f"app.{domain}") for name in bundle.names):
            raise ValidationError(
                "platform certificate",
                f"must cover *.{domain} (it names {', '.join(bundle.names)})",
            )
        kwargs = bundle.import_args()
        if existing is not None and existing.get("Type") == "IMPORTED":
            arn = str(existing["CertificateArn"])
            held = self.acm.get_certificate(CertificateArn=arn)["Certificate"]
            if fingerprint(held) == fingerprint(bundle.cert_pem):
                return arn
            self.acm.import_certificate(CertificateArn=arn, **kwargs)
            self.acm.add_tags_to_certificate(CertificateArn=arn, Tags=tags(b.name, "cert"))
            b.created.append(f"certificate for {', '.join(bundle.names)} re-imported (yours)")
            return arn
        arn = str(
            self.acm.import_certificate(Tags=tags(b.name, "cert"), **kwargs)["CertificateArn"]
        )
        b.created.append(f"certificate for {', '.join(bundle.names)} imported (yours)")
        if existing is not None:
            self.replaced.append(str(existing["CertificateArn"]))
        return arn

    def _local(self, existing: dict[str, Any] | None) -> str:
        b = self.b
        ca_dir = self._ca_dir()
        from provisioner import authority

        issued = authority.server_cert(authority.server_names(b.target.app_domain), ca_dir)
        chain = authority.ensure_ca(ca_dir).cert_pem
        if existing is not None:
            arn = str(existing["CertificateArn"])
            held = self.acm.get_certificate(CertificateArn=arn)["Certificate"]
            if fingerprint(held) == issued.fingerprint:
                return arn
            self.acm.import_certificate(
                CertificateArn=arn,
                Certificate=issued.cert_pem,
                PrivateKey=issued.key_pem,
                CertificateChain=chain,
            )
            b.created.append("certificate re-imported (issued again by the local CA)")
            return arn
        b.missing("certificate")
        arn = str(
            self.acm.import_certificate(
                Certificate=issued.cert_pem,
                PrivateKey=issued.key_pem,
                CertificateChain=chain,
                Tags=tags(b.name, "cert"),
            )["CertificateArn"]
        )
        b.created.append("certificate *.localhost (local CA, imported into ACM)")
        return arn

    def _validate(self, arn: str) -> None:
        """Put the DNS validation records in Route 53 (or print them), then wait for ACM."""
        b = self.b
        records: list[dict[str, str]] = []
        for _ in range(15):  # ACM fills in the records a few seconds after the request
            described = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            records = acmdns.validation_records(described)
            if records or described.get("Status") == "ISSUED":
                break
            time.sleep(2)
        zone = acmdns.hosted_zone(b.aws, b.target.app_domain)
        if records and zone:
            acmdns.put_records(b.aws, zone, records)
            b.say(f"certificate validation records put in Route 53 zone {zone}")
        elif records and described.get("Status") != "ISSUED":
            b.say("add these DNS records to validate the certificate, then wait:")
            for r in records:
                b.say(f"  {r['Name']} {r['Type']} {r['Value']}")
        b.say(f"waiting for ACM to issue {arn} (DNS validation; Ctrl-C and init again resumes)")
        deadline = time.monotonic() + CERT_WAIT_SECONDS
        while True:
            status = self.acm.describe_certificate(CertificateArn=arn)["Certificate"].get("Status")
            if status == "ISSUED":
                return
            if status not in ("PENDING_VALIDATION", None) or time.monotonic() > deadline:
                raise DynoformError(
                    f"certificate {arn} is {status}, not issued",
                    "check the DNS validation records, then run platform:init again",
                )
            time.sleep(CERT_POLL_SECONDS)


def require_validatable(aws: Any, target: Target) -> None:
    """Refuse, before anything billed exists, a platform whose certificate could never be
    issued: on AWS, ACM validates *.<app domain> through public DNS, so the domain needs a
    public Route 53 zone in this account (or the user's own certificate, --cert). A platform
    that has its certificate already is left alone."""
    if target.is_local or target.endpoint_url:
        return
    domain = target.app_domain
    if acmdns.hosted_zone(aws, domain):
        return
    if tagged(aws, "acm", **{PLATFORM_TAG: target.platform, RESOURCE_TAG: "cert"}):
        return
    raise DynoformError(
        f"no public Route 53 zone for {domain} in this account: ACM could never validate "
        f"the certificate for *.{domain}",
        f"set a domain you control (`dynoform targets:add {target.name} --domain "
        "apps.example.org` with its zone in Route 53), or bring your own wildcard "
        "certificate: `platform:init --cert FILE --key FILE`",
    )
