#!/usr/bin/env bash
# Start a one-node Slurm (Debian's slurm-wlm 22.05: munged, slurmctld, slurmd on this machine)
# with Podman and Charliecloud for the jobs. Idempotent, as root on Debian; verified on the
# project's test machine: packages about 20 s the first time, then the node idle in about 3 s.
# No crun: podman would prefer it, and it fails on these hybrid-cgroup machines (runc works).
# Writes /etc/slurm/slurm.conf and cgroup.conf only when they are absent or its own (marked);
# all state, logs and pids under $SLURM_DIR. stop.sh undoes it. Progress on stderr.
# The daemons are started with the lock's fd 9 closed: inherited, it would hold the lock
# for their lifetime and every later start.sh would wait out its flock.
#   SLURM_DIR        (default /var/tmp/envlock-slurm)
#   SLURM_PARTITION  the one partition (default debug)
set -euo pipefail
S=${SLURM_DIR:-/var/tmp/envlock-slurm}
P=${SLURM_PARTITION:-debug}
MARK="# envlock test cluster (scripts/slurm/start.sh)"
log() { echo "slurm: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
mkdir -p "$S"
exec 9>"$S.lock"; flock -w 600 9 || { log "another start.sh held $S.lock for 10 min"; exit 1; }
need=
for c in slurmctld slurmd sbatch munged podman ch-run; do command -v "$c" >/dev/null || need=1; done
if [ -n "$need" ]; then
  log "installing slurmctld slurmd slurm-client munge podman charliecloud"
  # apt's own lock, waited for: another engineer's or CI's apt-get may be running
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    slurmctld slurmd slurm-client munge podman charliecloud >"${S}.apt.log" 2>&1 \
    || { tail -20 "${S}.apt.log" >&2; exit 1; }
fi
ours() { [ -f "$S/$1.pid" ] && tr '\0' ' ' <"/proc/$(cat "$S/$1.pid")/cmdline" 2>/dev/null | grep -q -- "$1"; }
if ours slurmctld && ours slurmd && ours munged && sinfo -h -o %T 2>/dev/null | grep -qx idle; then
  log "already up"; exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
SLURM_DIR=$S SLURM_LOCKED=1 bash "$here/stop.sh"
mkdir -p "$S"/{state,spool,logs} /run/munge /var/log/munge /var/lib/munge /etc/slurm
# munge: a key (1024 random bytes, owner munge, mode 400), munged as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key; chmod 700 /etc/munge
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid 9>&-
cp /run/munge/munged.pid "$S/munged.pid"
host=$(hostname -s)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cpus=$(nproc)
for f in slurm.conf cgroup.conf; do
  if [ -f "/etc/slurm/$f" ] && ! head -1 "/etc/slurm/$f" | grep -qF "$MARK"; then
    log "/etc/slurm/$f is not ours: leaving it, and not starting"; exit 1; fi
done
cat > /etc/slurm/slurm.conf <<CONF
$MARK
ClusterName=envlock
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/logs/slurmctld.log
SlurmdLogFile=$S/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
KillWait=5
InactiveLimit=0
MaxArraySize=1001
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$P Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# Slurm 22.05 has no CgroupPlugin=disabled: v1 with nothing constrained, or slurmd fails
printf '%s\nCgroupPlugin=cgroup/v1\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n' \
  "$MARK" > /etc/slurm/cgroup.conf
setsid slurmctld -i >>"$S/logs/slurmctld.out" 2>&1 </dev/null 9>&-
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
setsid slurmd >>"$S/logs/slurmd.out" 2>&1 </dev/null 9>&-
for _ in $(seq 1 300); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  case "$state" in down*|drain*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true;; esac
  sleep 0.1
done
[ "$(sinfo -h -n "$host" -o %T)" = idle ] || { log "node not idle: $(sinfo -h -o '%T %E')"; tail -5 "$S/logs/slurmd.log" >&2; exit 1; }
log "node $host idle in partition $P ($cpus CPUs, $mem MiB)"
