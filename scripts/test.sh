#!/usr/bin/env bash
# The test command: set up what the tests need, then run the whole suite.
#   - .venv with envlock and its test extras;
#   - the root-only part (scripts/infra.sh up, reuses what is already there): Debian's
#     packages, a Docker engine and a local Python base image;
#   - the Kubernetes binaries for the live-cluster tests (scripts/k8s/build.sh: built once
#     per machine from Debian's source package, 4-6 min cold, then cached by source hash),
#     built in the background while the other tests run; the cluster is a pytest session
#     fixture (tests/cluster.py) that runs build.sh too, which waits for this build (a lock)
#     and finds its binaries, and starts the cluster only when a selected test needs it;
#     those tests run last (tests/integration/conftest.py), to give the build its time;
#   - the registries (open and htpasswd, on free ports) and the base image's push, which
#     gives it a digest, are pytest session fixtures (tests/registry.py).
# pytest runs twice: the unit suite on both cores (pytest-xdist; it needs no service), then
# the integration tests in one process (they share session fixtures: registries, venvs, the
# cluster). Given a test path (tests/integration/test_check.py, or FILE::TEST), one pytest
# runs just that, with the other arguments.
# Usage: bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
# The venv (pip) and the root-only part (apt, dockerd, debootstrap) side by side: both spend
# most of their time waiting for downloads.
bash scripts/bootstrap.sh test & bootstrap=$!
# Not `eval "$(…)"` directly: that would hide a failing infra.sh behind eval's status 0.
infra_env=$(bash scripts/infra.sh up) || { wait "$bootstrap" || true; echo "test.sh: test infrastructure did not come up (above)" >&2; exit 1; }
wait "$bootstrap" || { echo "test.sh: scripts/bootstrap.sh failed (above)" >&2; exit 1; }
eval "$infra_env"
k8s_dir=${K8S_DIR:-/var/tmp/envlock-k8s}; mkdir -p "$k8s_dir"
# Detached, and left to finish when pytest is done first (stopping it inside apt-get would
# leave dpkg half-done); a later build.sh waits for it and then finds its binaries.
# Niced: it has half an hour before the live-cluster tests need it, and the tests are the
# critical path (a cold Go build takes both cores for 4-6 min).
setsid nice -n 15 bash scripts/k8s/build.sh </dev/null >"$k8s_dir/build.log" 2>&1 &
echo "test.sh: building Kubernetes in the background (log: $k8s_dir/build.log)" >&2
# The one-node Slurm (scripts/slurm/start.sh: Debian's packages the first time, then about a
# second), started now in the background; tests/slurm.py runs start.sh again, which waits on
# the same lock and finds the node up.
setsid bash scripts/slurm/start.sh </dev/null >"${SLURM_DIR:-/var/tmp/envlock-slurm}.log" 2>&1 &
for arg in "$@"; do
  case $arg in -*) ;; *) [ -e "${arg%%::*}" ] && exec .venv/bin/python -m pytest "$@" ;; esac
done
# Both runs, even when the first fails, so one CI log shows every failure. Status 5 (nothing
# collected, e.g. a -k that matches only integration tests) is a failure only for both.
status() { local rc=0; "$@" >&2 || rc=$?; echo "$rc"; }
unit=$(status .venv/bin/python -m pytest tests/unit -n 2 "$@")
integration=$(status .venv/bin/python -m pytest tests/integration "$@")
echo "test.sh: unit tests exit $unit, integration tests exit $integration" >&2
if [ "$unit" = 5 ] && [ "$integration" = 5 ]; then exit 5; fi
for rc in "$unit" "$integration"; do [ "$rc" = 0 ] || [ "$rc" = 5 ] || exit "$rc"; done
