"""Large objects in the platform bucket: source tarballs, slugs, build caches, build logs and
the buildpacks builds fetched.

They are keyed by the app's immutable id (store.app_id), not its name: a rename leaves them
where they are, and an app that later takes a freed name can neither share nor delete them.

Builds and deploys on hosts use no AWS credentials: they fetch and upload through presigned
URLs (a runner's own credentials are the controller's, out of reach of dynos and builds).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.state import SSE, delete_versions

URL_TTL = 3600


def source_key(app_id: str, sha256: str) -> str:
    return f"sources/{app_id}/{sha256}.tgz"


def slug_key(app_id: str, sha256: str) -> str:
    return f"slugs/{app_id}/{sha256}.tgz"


def cache_key(app_id: str) -> str:
    return f"caches/{app_id}/cache.tar"


def build_log_key(app_id: str, build_id: str) -> str:
    return f"builds/{app_id}/{build_id}.log"


def buildpack_key(app_id: str, sha256: str) -> str:
    """A buildpack the app's builds use, as a tarball named by its sha256 (per app: an app's
    build code could not poison another app's buildpacks)."""
    return f"buildpacks/{app_id}/{sha256}.tgz"


def buildpack_pointer_key(app_id: str, digest: str) -> str:
    """The record of a fetched buildpack URL (at a commit, for git): the sha256 it gave."""
    return f"buildpacks/{app_id}/fetched/{digest}.json"


def app_prefixes(app_id: str) -> list[str]:
    """Everything of the app's in the bucket (apps:destroy removes exactly this)."""
    kinds = ("slugs", "sources", "caches", "builds", "buildpacks")
    return [f"{kind}/{app_id}/" for kind in kinds]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Blobs:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def size(self, key: str) -> int:
        return int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def upload_if_absent(self, key: str, path: Path) -> bool:
        """Upload unless an object with this (content-addressed) key exists; True if uploaded."""
        if self.exists(key):
            return False
        with path.open("rb") as handle:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=handle, **SSE)
        return True

    def put_file(self, key: str, handle: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=handle, **SSE)

    def copy(self, source: str, key: str) -> None:
        """A copy of the object at source under key (within the bucket, no download)."""
        self.s3.copy_object(
            Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source}, **SSE
        )

    def put_text(self, key: str, text: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode(), **SSE)

    def get_text(self, key: str) -> str | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return bytes(body).decode("utf-8", errors="replace")

    def get_url(self, key: str, ttl: int = URL_TTL) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
            )
        )

    def put_url(self, key: str, ttl: int = URL_TTL) -> str:
        return str(
            self.s3.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
            )
        )

    def delete_prefix(self, prefix: str) -> int:
        return delete_versions(self.s3, self.bucket, prefix)
