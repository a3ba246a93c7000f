"""ACM certificates of apps, and the HTTPS listener's SNI list (the boto3 edge).

An app's certificates are found by their tags: the platform, `dynoform:app`, the kind
(`auto` or `custom`) and, for automatic ones, the domain. They are served by adding them to the
platform's HTTPS listener (ALB picks one by SNI); the listener's default certificate stays the
platform's wildcard. Pure decisions live in provisioner.model.tls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.acmdns import validation_records
from provisioner.aws.platform import Platform
from provisioner.aws.session import Aws
from provisioner.aws.tags import PLATFORM_TAG, RESOURCE_TAG, tagged, tags
from provisioner.errors import DynoformError
from provisioner.model.tls import AUTO, CUSTOM, AppCert, Bundle, CertPlan
from provisioner.plan.shards import AWS as AWS_QUOTAS
from provisioner.plan.shards import QUOTA_NAMES

APP_TAG = "dynoform:app"
KIND_TAG = "dynoform:cert"
DOMAIN_TAG = "dynoform:domain"
RESOURCE = "app-cert"
RECORDS_WAIT_SECONDS = 30  # ACM fills in DNS validation records a few seconds after a request

Say = Callable[[str], None]


def _stamp(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def _app_cert(labels: dict[str, str], described: dict[str, Any]) -> AppCert:
    return AppCert(
        arn=str(described["CertificateArn"]),
        kind=labels.get(KIND_TAG, CUSTOM),
        names=tuple(str(n).lower() for n in described.get("SubjectAlternativeNames") or []),
        status=str(described.get("Status", "")),
        domain=labels.get(DOMAIN_TAG, ""),
        not_after=_stamp(described.get("NotAfter")),
        issuer=str(described.get("Issuer", "")),
        created=_stamp(described.get("ImportedAt") or described.get("CreatedAt")),
    )


class AppCertificates:
    """The certificates of one platform's apps in ACM, and which the HTTPS listener serves."""

    def __init__(self, aws: Aws, platform: Platform, listener_arn: str = "") -> None:
        self.aws = aws
        self.platform = platform
        # the HTTPS listener of the app's load balancer (shard); the first one by default
        self.listener_arn = listener_arn or platform.https_listener_arn
        self.acm = aws.client("acm")
        self.elbv2 = aws.elbv2
        self._known: dict[str, dict[str, str]] = {}  # ARN -> tags, of what this object made

    # reading ----------------------------------------------------------------------------------
    def _tagged(self) -> Iterable[tuple[str, dict[str, str]]]:
        """The platform's app certificates and their tags: one tagging-API listing filtered
        by tags, plus those this object made or retagged (the index lags them a moment)."""
        found = tagged(
            self.aws, "acm", **{PLATFORM_TAG: self.platform.name, RESOURCE_TAG: RESOURCE}
        )
        found.update(self._known)
        return found.items()

    def of_app(self, app: str) -> list[AppCert]:
        found = []
        for arn, labels in self._tagged():
            if labels.get(APP_TAG) != app:
                continue
            try:
                described = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            except ClientError:
                continue
            found.append(_app_cert(labels, described))
        return sorted(found, key=lambda c: (c.kind, c.domain, c.created, c.arn))

    def attached(self) -> set[str]:
        """Certificates on the HTTPS listener besides its default one."""
        arns: set[str] = set()
        marker = None
        while True:
            kwargs: dict[str, Any] = {"ListenerArn": self.listener_arn}
            if marker:
                kwargs["Marker"] = marker
            page = self.elbv2.describe_listener_certificates(**kwargs)
            for cert in page.get("Certificates", []):
                if not cert.get("IsDefault"):
                    arns.add(str(cert["CertificateArn"]))
            marker = page.get("NextMarker")
            if not marker:
                break
        arns.discard(self.platform.certificate_arn)
        return arns

    # changing ---------------------------------------------------------------------------------
    def _tags(self, app: str, kind: str, domain: str = "") -> list[dict[str, str]]:
        extra = {APP_TAG: app, KIND_TAG: kind, "Name": f"dynoform-{self.platform.name}-{app}"}
        if domain:
            extra[DOMAIN_TAG] = domain
        return tags(self.platform.name, RESOURCE, **extra)

    def _remember(self, arn: str, pairs: list[dict[str, str]]) -> str:
        self._known[arn] = {t["Key"]: t["Value"] for t in pairs}
        return arn

    def import_bundle(self, app: str, bundle: Bundle) -> str:
        pairs = self._tags(app, CUSTOM)
        return self._remember(self._import(Tags=pairs, **bundle.import_args()), pairs)

    def _import(self, **kwargs: Any) -> str:
        try:
            return str(self.acm.import_certificate(**kwargs)["CertificateArn"])
        except ClientError as exc:
            raise DynoformError(
                f"ACM refused the certificate: {exc.response.get('Error', {}).get('Message', exc)}",
                "check that the file holds the certificate, then its intermediates",
            ) from None

    def reimport(self, app: str, arn: str, bundle: Bundle) -> None:
        """Replace a certificate in place (a renewal): same ARN, so the listener keeps it.
        Its tags are put again: AWS keeps them on a re-import, moto drops them."""
        self._import(CertificateArn=arn, **bundle.import_args())
        self.acm.add_tags_to_certificate(CertificateArn=arn, Tags=self._tags(app, CUSTOM))
        self._remember(arn, self._tags(app, CUSTOM))

    def request(self, app: str, domain: str) -> str:
        """An automatic certificate for one custom domain (ACM, DNS validation).

        No idempotency token: ACM would hand back a certificate deleted within the hour (after
        certs:add, then certs:remove); duplicates an interrupted run leaves are deleted by the
        next plan instead."""
        pairs = self._tags(app, AUTO, domain)
        requested = self.acm.request_certificate(
            DomainName=domain, ValidationMethod="DNS", Tags=pairs
        )
        return self._remember(str(requested["CertificateArn"]), pairs)

    def attach(self, arns: Iterable[str]) -> None:
        wanted = [{"CertificateArn": a} for a in arns]
        if not wanted:
            return
        held, limit = self.attached(), AWS_QUOTAS.certificates
        if len(held | {a["CertificateArn"] for a in wanted}) > limit:
            raise DynoformError(
                f"the app's load balancer serves {len(held)} certificates: AWS's quota of "
                f"{limit} {QUOTA_NAMES['certificates']} is reached",
                "remove a domain or certificate of an app on it, or ask AWS to raise the quota",
            )
        self.elbv2.add_listener_certificates(ListenerArn=self.listener_arn, Certificates=wanted)

    def detach(self, arns: Iterable[str]) -> None:
        wanted = [{"CertificateArn": a} for a in arns]
        if wanted:
            self.elbv2.remove_listener_certificates(
                ListenerArn=self.listener_arn, Certificates=wanted
            )

    def delete(self, arn: str) -> None:
        """Delete from ACM; the load balancer lets go of a detached certificate after a while."""
        delay = 1.0
        for _ in range(20):
            try:
                self.acm.delete_certificate(CertificateArn=arn)
                self._known.pop(arn, None)
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException":
                    self._known.pop(arn, None)
                    return
                if code != "ResourceInUseException":
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 10)
        raise DynoformError(f"certificate {arn} is still in use", "try again in a minute")

    def retag(self, cert: AppCert, app: str) -> None:
        """Give a certificate to another app (apps:rename)."""
        pairs = self._tags(app, cert.kind, cert.domain)
        self.acm.add_tags_to_certificate(CertificateArn=cert.arn, Tags=pairs)
        self._remember(cert.arn, pairs)

    def apply(self, app: str, plan: CertPlan) -> tuple[list[str], dict[str, str]]:
        """Carry out a plan: detach, delete, request, attach. Returns what changed, and the
        ARN requested for each domain."""
        self.detach(plan.detach)  # the plan detaches what it deletes, too
        done = [f"stopped serving certificate {a.rsplit('/', 1)[-1]}" for a in plan.detach]
        for arn in plan.delete:
            self.delete(arn)
            done.append(f"deleted certificate {arn.rsplit('/', 1)[-1]}")
        requested = {domain: self.request(app, domain) for domain in plan.request}
        done += [
            f"requested a certificate for {d} ({arn.rsplit('/', 1)[-1]})"
            for d, arn in requested.items()
        ]
        self.attach(plan.attach)
        done += [f"serving certificate {a.rsplit('/', 1)[-1]}" for a in plan.attach]
        return done, requested

    def pending_records(
        self, arn: str, wait: float = RECORDS_WAIT_SECONDS
    ) -> list[dict[str, str]] | None:
        """DNS validation records of a certificate waiting for them (ACM fills them in a few
        seconds after the request: waited for); None when it waits for nothing."""
        deadline = time.monotonic() + wait
        while True:
            described = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            if described.get("Status") != "PENDING_VALIDATION":
                return None
            records = validation_records(described)
            if records or time.monotonic() > deadline:
                return records
            time.sleep(2)
