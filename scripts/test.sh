#!/usr/bin/env bash
# Set up the machine and run the whole suite: lint, format, types, unit, moto and local-cloud tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff check" >&2
ruff check .
echo "==> ruff format --check" >&2
ruff format --check .
echo "==> mypy" >&2
mypy provisioner
echo "==> pytest" >&2
python3 -m pytest -p no:cacheprovider "$@"
