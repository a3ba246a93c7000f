"""ACM's DNS validation: the records it asks for, and putting them in Route 53 (boto3 edge).

Shared by the platform's wildcard certificate and the apps' automatic certificates.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.session import Aws


def validation_records(described: dict[str, Any]) -> list[dict[str, str]]:
    """The DNS records ACM wants for validation, once each (a wildcard and its apex share)."""
    seen: dict[str, dict[str, str]] = {}
    for option in described.get("DomainValidationOptions", []):
        record = option.get("ResourceRecord")
        if record:  # kept even once issued: ACM renews through the same records
            seen[record["Name"]] = {k: str(record[k]) for k in ("Name", "Type", "Value")}
    return list(seen.values())


def hosted_zone(aws: Aws, domain: str) -> str | None:
    """The Route 53 hosted zone for the domain or its nearest parent, if this account has one."""
    try:
        zones = aws.client("route53").list_hosted_zones().get("HostedZones", [])
    except ClientError:
        return None
    by_name = {z["Name"].rstrip("."): z["Id"].rsplit("/", 1)[-1] for z in zones}
    labels = domain.rstrip(".").split(".")
    for i in range(len(labels) - 1):
        zone = by_name.get(".".join(labels[i:]))
        if zone:
            return str(zone)
    return None


def put_records(aws: Aws, zone: str, records: list[dict[str, str]]) -> None:
    """UPSERT the validation records (idempotent)."""
    aws.client("route53").change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Comment": "dynoform: ACM DNS validation",
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": r["Name"],
                        "Type": r["Type"],
                        "TTL": 300,
                        "ResourceRecords": [{"Value": r["Value"]}],
                    },
                }
                for r in records
            ],
        },
    )
