#!/usr/bin/env bash
# Let the running test cluster pull from a loopback registry over plain HTTP: one containerd
# hosts.toml (containerd reads certs.d at each pull, so this works while the cluster runs).
#   usage: registry.sh HOST:PORT     K8S_DIR (default /var/tmp/envlock-k8s)
set -euo pipefail
R=${K8S_DIR:-/var/tmp/envlock-k8s}/run; reg=$1
mkdir -p "$R/certs.d/$reg"
printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$reg" "$reg" \
  > "$R/certs.d/$reg/hosts.toml"
