#!/usr/bin/env bash
# Stop what start.sh started (by recorded pid, checked against the process's command line so
# a reused pid is never hit): every job cancelled first, then slurmd, slurmctld, munged; the
# config files it wrote (marked) and its state removed. Packages stay installed.
#   SLURM_DIR (default /var/tmp/envlock-slurm)
S=${SLURM_DIR:-/var/tmp/envlock-slurm}
MARK="# envlock test cluster (scripts/slurm/start.sh)"
[ -d "$S" ] || exit 0
[ "${SLURM_LOCKED:-}" ] || { exec 9>"$S.lock"; flock -w 120 9; }
ours() { [ -f "$S/$1.pid" ] && tr '\0' ' ' <"/proc/$(cat "$S/$1.pid")/cmdline" 2>/dev/null | grep -q -- "$1"; }
stop() {  # stop NAME: SIGTERM, wait up to 10 s, then SIGKILL
  ours "$1" || return 0
  kill "$(cat "$S/$1.pid")" 2>/dev/null
  for _ in $(seq 1 50); do ours "$1" || return 0; sleep 0.2; done
  kill -9 "$(cat "$S/$1.pid")" 2>/dev/null; true
}
if ours slurmctld; then scancel --full --quiet --user root 2>/dev/null; fi
stop slurmd; stop slurmctld; stop munged
for f in slurm.conf cgroup.conf; do
  [ -f "/etc/slurm/$f" ] && head -1 "/etc/slurm/$f" | grep -qF "$MARK" && rm -f "/etc/slurm/$f"
done
rm -rf "$S"/state "$S"/spool "$S"/*.pid
true
