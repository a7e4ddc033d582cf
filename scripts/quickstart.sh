#!/usr/bin/env bash
# The main job: install envlock, lock this environment, show it, and check it.
# Usage: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
work="${ENVLOCK_QUICKSTART_DIR:-$(mktemp -d)}"
lock="$work/envlock.lock.yaml"
envlock=.venv/bin/envlock
echo "== envlock lock (this repository, .venv) =="
$envlock lock -o "$lock" --command "bash scripts/quickstart.sh"
echo
echo "== envlock show =="
$envlock show "$lock"
echo
echo "== envlock check (the live environment against the lock) =="
$envlock check --lock "$lock"
echo
echo "quickstart: OK (lockfile kept at $lock)"
