#!/usr/bin/env bash
# The main job, on a fresh Debian machine as root: set up, start the local cloud, add 2 hosts,
# create an app, deploy the python example, scale it, trust the local CA, print and fetch its
# https:// URL. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
APP="${APP:-demo-python}"

dynoform local up
dynoform platform:init
have=$(dynoform hosts --json | python3 -c 'import json,sys; print(len([h for h in json.load(sys.stdin) if h["state"]=="running" and h["role"]=="runner"]))')
if [ "$have" -lt 2 ]; then
  dynoform hosts:add --count $((2 - have))
fi
dynoform hosts

dynoform apps:info -a "$APP" >/dev/null 2>&1 || dynoform apps:create "$APP" --no-remote
dynoform deploy -a "$APP" examples/python
dynoform ps:scale -a "$APP" web=2 worker=1
dynoform ps -a "$APP"

URL=$(dynoform apps:info -a "$APP" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["web_url"])')
echo "$APP is served at: $URL"
# App URLs are HTTPS, with certificates from the local cloud's own CA: trust it (Debian's
# trust store), so curl and browsers verify them. `dynoform local untrust` removes it.
dynoform local trust
curl -fsS --max-time 10 "$URL"
