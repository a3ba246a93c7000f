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


def public_zones(aws: Aws) -> dict[str, str]:
    """Name -> id of this account's public Route 53 zones, every page of them. Private zones
    are left out: ACM validates through public DNS, so a record put in one never counts."""
    pages = aws.client("route53").get_paginator("list_hosted_zones").paginate()
    zones: dict[str, str] = {}
    for page in pages:
        for zone in page.get("HostedZones", []):
            if zone.get("Config", {}).get("PrivateZone"):
                continue
            zones[str(zone["Name"]).rstrip(".").lower()] = str(zone["Id"]).rsplit("/", 1)[-1]
    return zones


def zone_for(zones: dict[str, str], domain: str) -> str | None:
    """The zone of the domain or of its nearest parent (pure)."""
    labels = domain.rstrip(".").lower().split(".")
    for i in range(len(labels) - 1):
        zone = zones.get(".".join(labels[i:]))
        if zone:
            return zone
    return None


def hosted_zone(aws: Aws, domain: str) -> str | None:
    """The public Route 53 hosted zone for the domain or its nearest parent, if this account
    has one."""
    try:
        return zone_for(public_zones(aws), domain)
    except ClientError:
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
