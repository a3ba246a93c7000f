"""The local cloud expires old S3 versions (motofix.prune_versions), as the platform's
lifecycle rules do on S3: moto keeps every version in memory and applies no rules."""

from __future__ import annotations

import time

from provisioner.localcloud import motofix


def _versions(s3, bucket: str, key: str) -> list[str]:
    found = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in found.get("Versions", []) if v["Key"] == key]


def _bucket(aws, name: str, versioned: bool = True):
    s3 = aws.s3
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3


def test_old_versions_go_and_the_current_one_stays(aws):
    s3 = _bucket(aws, "versions-a")
    for body in (b"one", b"two", b"three"):
        s3.put_object(Bucket="versions-a", Key="leases/app.json", Body=body)
    s3.put_object(Bucket="versions-a", Key="slugs/x.tgz", Body=b"only")
    assert motofix.prune_versions(time.time()) == 0  # replaced a moment ago: kept
    assert len(_versions(s3, "versions-a", "leases/app.json")) == 3

    later = time.time() + motofix.VERSIONS_KEPT + 1
    assert motofix.prune_versions(later) == 2
    assert len(_versions(s3, "versions-a", "leases/app.json")) == 1
    assert s3.get_object(Bucket="versions-a", Key="leases/app.json")["Body"].read() == b"three"
    assert s3.get_object(Bucket="versions-a", Key="slugs/x.tgz")["Body"].read() == b"only"
    assert motofix.prune_versions(later) == 0  # nothing more to do


def test_a_deleted_object_keeps_its_delete_marker_only(aws):
    s3 = _bucket(aws, "versions-b")
    s3.put_object(Bucket="versions-b", Key="apps/gone.json", Body=b"{}")
    s3.delete_object(Bucket="versions-b", Key="apps/gone.json")
    assert motofix.prune_versions(time.time() + motofix.VERSIONS_KEPT + 1) == 1
    found = s3.list_object_versions(Bucket="versions-b", Prefix="apps/")
    assert found.get("Versions", []) == [] and len(found["DeleteMarkers"]) == 1


def test_a_bucket_never_versioned_is_left_alone(aws):
    s3 = _bucket(aws, "plain-c", versioned=False)
    s3.put_object(Bucket="plain-c", Key="k", Body=b"1")
    s3.put_object(Bucket="plain-c", Key="k", Body=b"2")
    assert motofix.prune_versions(time.time() + 10 * motofix.VERSIONS_KEPT) == 0
    assert s3.get_object(Bucket="plain-c", Key="k")["Body"].read() == b"2"
