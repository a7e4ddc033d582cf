#!/usr/bin/env bash
# The test command: set up what the tests need, then run the whole suite.
#   - .venv with envlock and its test extras;
#   - the root-only part (scripts/infra.sh up, reuses what is already there): Debian's
#     packages, a Docker engine and a local Python base image;
#   - the Kubernetes binaries for the live-cluster tests (scripts/k8s/build.sh: built once
#     per machine from Debian's source package, 4-6 min cold, then cached by source hash);
#     the cluster itself is a pytest session fixture (tests/cluster.py) that starts and stops
#     it only when a selected test needs it;
#   - the registries (open and htpasswd, on free ports) and the base image's push, which
#     gives it a digest, are pytest session fixtures (tests/registry.py).
# Usage: bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Not `eval "$(…)"` directly: that would hide a failing infra.sh behind eval's status 0.
infra_env=$(bash scripts/infra.sh up) || { echo "test.sh: test infrastructure did not come up (above)" >&2; exit 1; }
eval "$infra_env"
bash scripts/k8s/build.sh >&2 || { echo "test.sh: the Kubernetes build failed (above)" >&2; exit 1; }
exec .venv/bin/python -m pytest "$@"
