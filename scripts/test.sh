#!/usr/bin/env bash
# The test command: set up what the tests need, then run the whole suite.
#   - .venv with envlock and its test extras;
#   - the root-only part (scripts/infra.sh up, reuses what is already there): Debian's
#     packages, a Docker engine and a local Python base image;
#   - the registries (open and htpasswd, on free ports) and the base image's push, which
#     gives it a digest, are pytest session fixtures (tests/registry.py).
# Usage: bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Not `eval "$(…)"` directly: that would hide a failing infra.sh behind eval's status 0.
infra_env=$(bash scripts/infra.sh up) || { echo "test.sh: test infrastructure did not come up (above)" >&2; exit 1; }
eval "$infra_env"
exec .venv/bin/python -m pytest "$@"
