#!/usr/bin/env bash
# The test command: set up what the tests need, then run the whole suite.
#   - .venv with envlock and its test extras;
#   - a Docker engine, an open and an htpasswd registry on 127.0.0.1 and a Python base
#     image pinned by digest (scripts/infra.sh: reuses what is already running).
# Usage: bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Not `eval "$(…)"` directly: that would hide a failing infra.sh behind eval's status 0.
infra_env=$(bash scripts/infra.sh up) || { echo "test.sh: test infrastructure did not come up (above)" >&2; exit 1; }
eval "$infra_env"
exec .venv/bin/python -m pytest "$@"
