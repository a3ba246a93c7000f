#!/usr/bin/env bash
# Install what dynoform and its tests need on a fresh Debian machine (as root). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(systemd-container debootstrap haproxy iptables iproute2 openssh-client
  openssh-server git curl ca-certificates wrk chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> pip install -e .[local,dev]" >&2
python3 -m pip install -q --disable-pip-version-check -e ".[local,dev]" 2>&1 | grep -v -e "^WARNING: Running pip as" -e "Location 'file" || true
# An editable install leaves bytecode to the first import, and where PYTHONDONTWRITEBYTECODE is
# set no import writes it: every command would compile what it imports again (~0.15 s a deploy).
python3 -m compileall -q provisioner >/dev/null
