"""What the product reads of the local cloud, through the target: endpoint, status, router log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from provisioner.errors import DynoformError
from provisioner.localfiles import LocalCloud
from provisioner.targets import LOCAL_TARGET, Target


def test_only_the_local_target_has_a_local_cloud(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNOFORM_LOCAL_DIR", str(tmp_path))
    assert Target("prod", region="eu-west-1").local is None
    local = LOCAL_TARGET.local
    assert local == LocalCloud(tmp_path)
    assert (local.cloud_file, local.status_file, local.router_log, local.ca_dir) == (
        tmp_path / "cloud.json",
        tmp_path / "status.json",
        tmp_path / "router.log",
        tmp_path / "ca",
    )


def test_the_endpoint_is_that_of_a_live_daemon(tmp_path):
    cloud = LocalCloud(tmp_path)
    with pytest.raises(DynoformError, match="the local cloud is not running"):
        cloud.endpoint()
    cloud.cloud_file.write_text(
        json.dumps({"endpoint": "http://198.18.0.1:4566", "pid": os.getpid()})
    )
    assert cloud.endpoint() == "http://198.18.0.1:4566"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )  # noqa: S603
    cloud.cloud_file.write_text(json.dumps({"endpoint": "http://x", "pid": int(gone.stdout)}))
    with pytest.raises(DynoformError, match="not running"):
        cloud.endpoint()
    cloud.cloud_file.write_text("{not json")
    assert cloud.running() is None


def test_a_listener_url_comes_from_the_status_file(tmp_path):
    cloud = LocalCloud(tmp_path)
    assert cloud.status() == {}
    assert cloud.listener_url("arn:l1", wait=0) is None
    listeners = [{"arn": "arn:l0"}, {"arn": "arn:l1", "local_url": "https://127.0.0.1:18443/"}]
    cloud.status_file.write_text(json.dumps({"load_balancers": [{"listeners": listeners}]}))
    assert cloud.listener_url("arn:l1", wait=0) == "https://127.0.0.1:18443/"
    assert cloud.listener_url("arn:l0", wait=0) is None
