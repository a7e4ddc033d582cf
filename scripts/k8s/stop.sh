#!/usr/bin/env bash
# Stop what start.sh started (by recorded pid, checked against the process's command line so a
# reused pid is never hit) and undo its changes to the host: mounts, the bridge, cgroups, kernel
# settings, the kubelet's directories.   K8S_DIR (default /var/tmp/envlock-k8s)
K=${K8S_DIR:-/var/tmp/envlock-k8s}; R=$K/run
[ -d "$R" ] || exit 0
cd "$R" || exit 0
ours() { [ -f "$1.pid" ] && tr '\0' ' ' <"/proc/$(cat "$1.pid")/cmdline" 2>/dev/null | grep -q -- "$1"; }
stop() {  # stop NAME...: SIGTERM, wait up to 10 s, then SIGKILL
  local n i alive
  for n in "$@"; do ours "$n" && kill "$(cat "$n.pid")" 2>/dev/null; done
  for i in $(seq 1 50); do
    alive=; for n in "$@"; do ours "$n" && alive=1; done
    [ -z "$alive" ] && return 0; sleep 0.2
  done
  for n in "$@"; do ours "$n" && kill -9 "$(cat "$n.pid")" 2>/dev/null; done; true
}
stop kubelet kube-scheduler kube-controller-manager kube-apiserver
C="ctr -a $R/containerd/containerd.sock -n k8s.io"
if ours containerd; then
  for t in $($C tasks ls -q 2>/dev/null); do $C tasks kill -s SIGKILL "$t"; done; sleep 1
  for c in $($C containers ls -q 2>/dev/null); do $C tasks delete "$c" >/dev/null 2>&1; $C containers delete "$c" >/dev/null 2>&1; done
  stop containerd
fi
stop etcd
mount | awk -v r="$R" 'index($3, r) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l
ip link del envlocktest0 2>/dev/null || true
[ -f sysctl.saved ] && sysctl -q -w $(cat sysctl.saved)
rm -rf /var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
rm -f ./*.pid
true
