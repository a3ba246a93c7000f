"""The state store: JSON documents in one S3 bucket per platform, with optimistic concurrency.

Creates use `IfNoneMatch="*"` and updates `IfMatch=<etag>`, so two writers can never both win:
a release number is allocated by creating its document, and a lease is a document too.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from provisioner.errors import DynoformError

SSE = {"ServerSideEncryption": "AES256"}


class StaleWrite(Exception):
    """A conditional write lost: the document exists already, or changed since it was read."""


@dataclass(frozen=True)
class Doc:
    data: Any
    etag: str


CONFLICT_ATTEMPTS = 6  # S3's 409 ConditionalRequestConflict asks for a retry


def _is_precondition(exc: ClientError) -> bool:
    """The write lost: the document exists, or changed since it was read (412)."""
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "PreconditionFailed" or status == 412


def _is_conflict(exc: ClientError) -> bool:
    """Another conditional write to the key was under way (409): S3 says to try again; the
    retry then wins, or loses with a 412."""
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "ConditionalRequestConflict" or (status == 409 and code != "PreconditionFailed")


def _is_missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


# Every write keeps the old object as a noncurrent version (the bucket is versioned, so a bad
# write can be undone). Those pile up: leases, caches and the controller's records are
# rewritten every few seconds. Lifecycle rules expire them (and abandoned uploads).
OLD_VERSIONS_DAYS = 30
BUSY_VERSIONS_DAYS = 1
BUSY_PREFIXES = ("caches/", "leases/", "controller/")
RULE_PREFIX = "dynoform-"


def lifecycle_rules() -> list[dict[str, Any]]:
    """The state bucket's lifecycle rules (pure)."""
    rules: list[dict[str, Any]] = [
        {
            "ID": f"{RULE_PREFIX}old-versions",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": OLD_VERSIONS_DAYS},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        }
    ]
    for prefix in BUSY_PREFIXES:
        rules.append(
            {
                "ID": f"{RULE_PREFIX}{prefix.rstrip('/')}-versions",
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": BUSY_VERSIONS_DAYS},
            }
        )
    # The router's access logs (aws/accesslogs.py): the leader deletes them once shipped;
    # these go if no leader does (a platform whose controllers are away).
    rules.append(
        {
            "ID": f"{RULE_PREFIX}router-logs",
            "Filter": {"Prefix": "router-logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        }
    )
    return rules


class Documents:
    """Low-level JSON documents in a bucket; every object is encrypted at rest."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def exists(self) -> bool:
        """Whether the bucket is there (it is made on first use, see ensure_bucket)."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            return False

    def ensure_bucket(self, region: str) -> bool:
        """Create the bucket (versioned, private, encrypted) unless it exists; True if created."""
        if self.exists():
            return False
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.s3.create_bucket(**kwargs)
        except ClientError as exc:  # made a moment ago by a command started with this one
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
            return False
        self.s3.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        self.s3.put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.s3.put_bucket_encryption(
            Bucket=self.bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        return True

    def ensure_lifecycle(self) -> bool:
        """Put dynoform's lifecycle rules on the bucket, keeping any others; True if changed."""
        try:
            current = self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise
            current = []
        others = [r for r in current if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
        ours = [r for r in current if str(r.get("ID", "")).startswith(RULE_PREFIX)]
        wanted = lifecycle_rules()
        if _same_rules(ours, wanted):
            return False
        self.s3.put_bucket_lifecycle_configuration(
            Bucket=self.bucket, LifecycleConfiguration={"Rules": [*others, *wanted]}
        )
        return True

    def get(self, key: str) -> Doc | None:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return Doc(json.loads(resp["Body"].read()), resp["ETag"])

    def _put(self, key: str, data: Any, **conditions: str) -> str:
        body = json.dumps(data, sort_keys=True, indent=1).encode()
        delay = 0.05
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                resp = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    **SSE,
                    **conditions,
                )
                return str(resp["ETag"])
            except ClientError as exc:
                if _is_precondition(exc):
                    raise StaleWrite(key) from exc
                if not (conditions and _is_conflict(exc)):
                    raise
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise StaleWrite(key) from exc  # still contended: the caller reads again
            time.sleep(delay + random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
            delay *= 2
        raise AssertionError("unreachable")

    def create(self, key: str, data: Any) -> str:
        """Write only if no document exists at key; raises StaleWrite otherwise."""
        return self._put(key, data, IfNoneMatch="*")

    def update(self, key: str, data: Any, etag: str) -> str:
        """Write only if the document is still the one read with etag; raises StaleWrite otherwise."""
        return self._put(key, data, IfMatch=etag)

    def put(self, key: str, data: Any) -> str:
        return self._put(key, data)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> list[str]:
        result: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            result.extend(obj["Key"] for obj in page.get("Contents", []))
        return result

    def children(self, prefix: str) -> list[str]:
        """Names one level below prefix (like `ls`), e.g. app names under `apps/`."""
        result: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                result.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return result

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object (all versions) under prefix; returns how many keys went."""
        return delete_versions(self.s3, self.bucket, prefix)


def _same_rules(have: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Whether the rules S3 returns are these (S3 may add fields or drop false ones)."""

    def essence(rule: dict[str, Any]) -> tuple[Any, ...]:
        return (
            rule.get("ID"),
            rule.get("Status"),
            (rule.get("Filter") or {}).get("Prefix", ""),
            (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"),
            (rule.get("Expiration") or {}).get("Days"),
        )

    return sorted(map(essence, have), key=str) == sorted(map(essence, want), key=str)


def delete_versions(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under prefix (the bucket is versioned)."""
    count = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(objects), 1000):
            chunk = objects[start : start + 1000]
            resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk})
            if errors := resp.get("Errors"):  # per key: the call itself succeeded
                first = errors[0]
                raise DynoformError(
                    f"could not delete {len(errors)} object(s) under {prefix!r} in {bucket}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )
            count += len(chunk)
    return count


def bucket_name(platform: str, account_id: str) -> str:
    name = f"dynoform-{platform}-{account_id}".lower()
    if len(name) > 63:
        raise DynoformError(
            f"state bucket name {name!r} is too long", "use a shorter platform name"
        )
    return name
