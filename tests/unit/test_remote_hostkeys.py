"""Host keys: fingerprints as OpenSSH prints them, the user-data that carries them, the pin."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from provisioner.errors import DynoformError
from provisioner.fleet import parse_dyno_units
from provisioner.remote.hostkeys import (
    cloud_config,
    fingerprint,
    generate_host_keys,
    pin_record,
    split_public,
)


def test_generated_keys_are_ed25519_only():
    keys = generate_host_keys()
    assert [k.kind for k in keys] == ["ed25519"]
    assert keys[0].public.startswith("ssh-ed25519 ")
    assert keys[0].private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert generate_host_keys()[0].public != keys[0].public


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")
def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = generate_host_keys()[0]
    path = tmp_path / "k.pub"
    path.write_text(key.public + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True)
    assert printed.stdout.split()[1] == fingerprint(key.public)


def test_cloud_config_carries_exactly_the_keys():
    keys = generate_host_keys()
    text = cloud_config(keys)
    assert text.startswith("#cloud-config\n")
    data = json.loads(text.split("\n", 1)[1])  # JSON is YAML: what cloud-init reads
    assert data["ssh_keys"] == {
        "ed25519_private": keys[0].private_openssh,
        "ed25519_public": keys[0].public,
    }
    assert data["ssh_deletekeys"] is True and data["ssh_genkeytypes"] == []


def test_pin_record_holds_no_private_key():
    keys = generate_host_keys()
    record = pin_record("i-0abc", keys, role="runner")
    assert record["host_keys"] == [keys[0].public]
    assert record["fingerprints"] == [fingerprint(keys[0].public)]
    assert "PRIVATE" not in json.dumps(record)


def test_bad_public_key_is_a_clear_error():
    with pytest.raises(DynoformError, match="not an OpenSSH public key"):
        split_public("ssh-ed25519 !!!")
    with pytest.raises(DynoformError):
        split_public("garbage")


def test_parse_dyno_units_counts_running_units_in_the_slices():
    out = (
        "Slice=system.slice\nId=ssh.service\nActiveState=active\n\n"
        "Slice=dynoform.slice\nId=dyno-probe.service\nActiveState=active\n\n"
        "Slice=dynoform-web.slice\nId=app-web@1.service\nActiveState=activating\n\n"
        "Slice=dynoform.slice\nId=old.service\nActiveState=inactive\n"
    )
    assert parse_dyno_units(out) == ["app-web@1.service", "dyno-probe.service"]
    assert parse_dyno_units("") == []
