#!/usr/bin/env bash
# Set up the machine and run the whole suite: lint, format, types, unit, moto and local-cloud tests.
# With pytest arguments, runs just pytest with them. Without, in two streams at once (the machine
# mostly waits on hosts): the local-cloud tests of the shared platform in one; unit, moto and the
# tests of the controlled platform (its own VPC and hosts) in the other; then `local down`'s test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff check" >&2
ruff check .
echo "==> ruff format --check" >&2
ruff format --check .
echo "==> mypy" >&2
mypy provisioner
pytest=(python3 -m pytest -p no:cacheprovider)
can_cloud() { python3 -c 'from provisioner.localcloud.system import check_requirements as c; c()' 2>/dev/null; }
if [ $# -gt 0 ] || ! can_cloud; then
  echo "==> pytest" >&2
  exec "${pytest[@]}" "$@"
fi

running=$(python3 -c 'from provisioner.localcloud import control; print(control.daemon_pid() is not None)')
python3 -m provisioner local up >/dev/null  # both streams share it: neither stops it
side_log=$(mktemp /tmp/dynoform-tests-side.XXXXXX)
echo "==> pytest, side stream: unit, moto and the controlled platform (output below when done)" >&2
# Its own process group (set -m): a background job would ignore Ctrl-C; it gets it from the
# trap instead, so that pytest tears down what it made (the controlled platform) and exits.
set -m
DYNOFORM_TESTS_SIDE_STREAM=1 "${pytest[@]}" --basetemp="$side_log.tmp" -m "controlled or not cloud" tests \
  >"$side_log" 2>&1 &
side=$!
set +m
stop_side() { kill -INT -- "-$side" 2>/dev/null || true; wait "$side" 2>/dev/null || true; cat "$side_log"; }
trap 'stop_side; exit 130' INT TERM
echo "==> pytest, main stream: the shared platform's local-cloud tests" >&2
status=0
"${pytest[@]}" -m "cloud and not controlled" --ignore=tests/hosts/test_zz_localcloud_down.py tests || status=$?
side_status=0
wait "$side" || side_status=$?
trap - INT TERM
echo "==> pytest, side stream (exit $side_status)" >&2
cat "$side_log"
rm -rf "$side_log" "$side_log.tmp"
echo "==> pytest, last: the local cloud goes down and comes up again" >&2
last=0
"${pytest[@]}" tests/hosts/test_zz_localcloud_down.py || last=$?
if [ "$running" = False ]; then python3 -m provisioner local down >/dev/null || true; fi
echo "==> pytest exit: main $status, side $side_status, last $last" >&2
[ "$status" -eq 0 ] && [ "$side_status" -eq 0 ] && [ "$last" -eq 0 ]
