#!/usr/bin/python3
"""dynoform local cloud: run the instance's user-data once, as cloud-init does on EC2.

Stage `init` (before sshd): host keys from `ssh_keys`, `ssh_authorized_keys`, `write_files`.
Stage `final` (after sshd): `packages`, `runcmd`, or the `#!` script; then boot-finished.
The user-data was placed by the local cloud at /var/lib/dynoform/user-data (root only).
"""

import base64
import gzip
import json
import os
import pwd
import shlex
import subprocess
import sys
import time

USER_DATA = "/var/lib/dynoform/user-data"
STATE = "/var/lib/dynoform"
INSTANCE = "/var/lib/cloud/instance"
LOG = "/var/log/cloud-init-output.log"
USER = "admin"
KEY_TYPES = ("rsa", "ecdsa", "ed25519")


def say(message):
    line = f"dynoform-firstboot: {message}"
    print(line, flush=True)
    with open(LOG, "a") as out:
        out.write(line + "\n")


def user_data():
    try:
        with open(USER_DATA, "rb") as src:
            raw = src.read()
    except FileNotFoundError:
        return b""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def cloud_config(raw):
    if not raw.startswith(b"#cloud-config"):
        return {}
    import yaml

    data = yaml.safe_load(raw.decode()) or {}
    return data if isinstance(data, dict) else {}


def write(path, content, mode, owner="root:root", append=False):
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.chmod(path, mode)
    user, _, group = owner.partition(":")
    subprocess.run(["chown", f"{user}:{group or user}", path], check=False)


def host_keys(config):
    keys = config.get("ssh_keys") or {}
    written = False
    for kind in KEY_TYPES:
        private, public = keys.get(f"{kind}_private"), keys.get(f"{kind}_public")
        if private:
            write(f"/etc/ssh/ssh_host_{kind}_key", private.encode(), 0o600)
            written = True
        if public:
            write(f"/etc/ssh/ssh_host_{kind}_key.pub", public.strip().encode() + b"\n", 0o644)
    if written:
        # Like cloud-init: only the given key types are offered, no generated extras.
        for kind in KEY_TYPES:
            if not keys.get(f"{kind}_private"):
                for suffix in ("", ".pub"):
                    path = f"/etc/ssh/ssh_host_{kind}_key{suffix}"
                    if os.path.exists(path):
                        os.unlink(path)
        say("host keys from user-data")
    else:
        subprocess.run(["ssh-keygen", "-A"], check=True)
        say("generated host keys")


def authorized_keys(config):
    extra = [k.strip() for k in config.get("ssh_authorized_keys") or [] if k.strip()]
    if not extra:
        return
    entry = pwd.getpwnam(USER)
    path = os.path.join(entry.pw_dir, ".ssh", "authorized_keys")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a") as out:
        out.write("\n".join(extra) + "\n")
    for item in (os.path.dirname(path), path):
        os.chown(item, entry.pw_uid, entry.pw_gid)
    say(f"{len(extra)} authorized key(s) for {USER}")


def decode(item):
    content = item.get("content", "")
    data = content.encode() if isinstance(content, str) else bytes(content)
    encoding = str(item.get("encoding", "text")).lower()
    if encoding in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        data = base64.b64decode(data)
    if encoding.startswith("gz"):
        data = gzip.decompress(data)
    return data


def write_files(config, deferred):
    for item in config.get("write_files") or []:
        if bool(item.get("defer", False)) != deferred:
            continue
        mode = int(str(item.get("permissions", "0644")), 8)
        owner = str(item.get("owner", "root:root"))
        write(item["path"], decode(item), mode, owner, bool(item.get("append", False)))
        say(f"wrote {item['path']}")


def run_logged(argv):
    with open(LOG, "ab") as out:
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def packages(config):
    names = [str(p) for p in config.get("packages") or []]
    if not names:
        return 0
    env_argv = ["env", "DEBIAN_FRONTEND=noninteractive"]
    code = run_logged(env_argv + ["apt-get", "update"])
    return code or run_logged(env_argv + ["apt-get", "install", "-y", *names])


def runcmd_script(config):
    lines = ["#!/bin/sh"]
    for command in config.get("runcmd") or []:
        lines.append(command if isinstance(command, str) else shlex.join(map(str, command)))
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def run_script(text, name):
    path = os.path.join(INSTANCE, "scripts", name)
    write(path, text if isinstance(text, bytes) else text.encode(), 0o700)
    code = run_logged([path])
    say(f"{name} exited {code}")
    return code


def init_stage():
    raw = user_data()
    config = cloud_config(raw)
    host_keys(config)
    authorized_keys(config)
    write_files(config, deferred=False)


def final_stage():
    raw = user_data()
    config = cloud_config(raw)
    errors = []
    if packages(config):
        errors.append("packages")
    write_files(config, deferred=True)
    script = runcmd_script(config)
    if script and run_script(script, "runcmd"):
        errors.append("runcmd")
    if raw.startswith(b"#!") and run_script(raw, "part-001"):
        errors.append("user-data script")
    result = {"status": "error" if errors else "done", "errors": errors}
    write(os.path.join(STATE, "result.json"), json.dumps(result).encode(), 0o644)
    finished = f"{time.time()} dynoform-firstboot\n".encode()
    write(os.path.join(INSTANCE, "boot-finished"), finished, 0o644)
    say(f"final stage {result['status']}")


def main():
    os.makedirs(INSTANCE, exist_ok=True)
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    {"init": init_stage, "final": final_stage}[stage]()
    with open(os.path.join(STATE, f"{stage}.done"), "w") as out:
        out.write("done\n")


if __name__ == "__main__":
    main()
