"""Builds on the controlled platform: the ones slow enough to belong to the side test stream."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

import pytest
from e2e_support import EXAMPLES, Controlled, Url, request

from provisioner.aws.state import bucket_name

pytestmark = pytest.mark.cloud


def test_the_nodejs_example_builds_on_a_host_without_node_and_serves(
    controlled: Controlled,
) -> None:
    app = f"node-{secrets.token_hex(3)}"
    controlled.cli("apps:create", app, "--no-remote")
    try:
        result = controlled.cli("deploy", "-a", app, str(EXAMPLES / "nodejs"), timeout=900)
        assert "Node.js app detected" in result.stderr, result.stderr
        info = controlled.json("releases:info", "-a", app)
        bucket, key = _slug_location(controlled, app, str(info["slug_sha256"]))
        body = controlled.aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == info["slug_sha256"]
        parts = urlsplit(str(controlled.json("apps:info", "-a", app)["web_url"]))
        response = request(Url(str(parts.hostname), int(parts.port or 443), parts.scheme), "/")
        assert response.status == 200  # type: ignore[attr-defined]
    finally:
        controlled.cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def _slug_location(controlled: Controlled, app: str, sha: str) -> tuple[str, str]:
    app_id = controlled.json("apps:info", "-a", app)["id"]
    bucket = bucket_name(controlled.platform, controlled.aws.account_id())
    return bucket, f"slugs/{app_id}/{sha}.tgz"
