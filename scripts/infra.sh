#!/usr/bin/env bash
# The root-only part of envlock's test infrastructure: the Debian packages, a running Docker
# engine, Podman and skopeo configured for this kind of machine, and a Python base image built
# offline from Debian packages (no image can be pulled from a public registry). The registries the tests push to are pytest session fixtures on
# free ports (tests/registry.py); this script no longer starts any.
#
#   scripts/infra.sh up     install/start what is missing (once per machine), print `export`s
#   scripts/infra.sh env    check the engine and the base image, print the `export` lines
#   scripts/infra.sh down   stop the dockerd this script started
#
# Typical use:   eval "$(scripts/infra.sh up)"   (it prints DOCKER_HOST only when it had to
# start a local engine because DOCKER_HOST did not answer; usually nothing)
# Progress goes to stderr; only the export lines go to stdout.
#
# Settings (environment):
#   ENVLOCK_INFRA_DIR                 state dir (default /var/tmp/envlock-infra)
set -euo pipefail

STATE=${ENVLOCK_INFRA_DIR:-/var/tmp/envlock-infra}
BASE_LOCAL=envlock-test/python:3.11-bookworm   # tests/registry.py: BASE_LOCAL
ROOTFS_TAR=$STATE/base-rootfs.tar
DOCKERD_WAIT=${ENVLOCK_INFRA_DOCKERD_WAIT:-60}

# dockerd, debootstrap, docker-registry live in sbin/bin; make sure they are found.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
export PATH

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root for: $*"; fi
}

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

# is process $1 running (exists and is not a zombie left for an init that has not reaped it)?
pid_running() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# pid from a pid file if that process is still alive and its command line contains $2
live_pid() {
    local f=$1 want=$2 pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    pid_running "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$want" || return 1
    echo "$pid"
}

# Start a daemon in its own session, detached from our stdio, and record ITS pid.
#   spawn_daemon PIDFILE LOGFILE [sudo] CMD...
# `setsid CMD &` alone is not enough: when the caller runs with job control (set -m, an
# interactive shell, some CI runners) the background job leads its process group, so
# setsid forks and $! is a parent that exits at once. Instead a tiny sh writes its own
# pid and then execs the daemon, so the pid file names the daemon whatever setsid did.
spawn_daemon() {
    local pidfile=$1 logfile=$2 i
    shift 2
    rm -f "$pidfile"
    # stdio redirected and the lock fd closed so `eval "$(infra.sh up)"` does not wait on it
    setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        </dev/null >"$logfile" 2>&1 9>&- &
    for ((i = 0; i < 100; i++)); do
        [ -s "$pidfile" ] && return 0
        sleep 0.05
    done
    die "could not start $* (no pid file after 5s; log: $logfile)"
}

# ---------------------------------------------------------------- packages
ensure_packages() {
    # $@: "command:package" pairs; installs the packages whose command is missing
    local pkgs=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || pkgs+=("${pair#*:}")
    done
    [ ${#pkgs[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and no apt-get to install them"
    log "installing ${pkgs[*]} (apt-get)"
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" \
        >"$STATE/apt.log" 2>&1 || { tail -n 30 "$STATE/apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
}

# ---------------------------------------------------------------- docker engine
ensure_docker() {
    if docker_ok; then
        log "docker engine: reusing running engine ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    if [ -n "${DOCKER_HOST:-}" ]; then
        log "docker engine: DOCKER_HOST=$DOCKER_HOST does not answer; starting a local dockerd instead"
        unset DOCKER_HOST
        echo "unix:///var/run/docker.sock" >"$STATE/docker-host"
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        ensure_packages dockerd:docker.io docker-registry:docker-registry debootstrap:debootstrap htpasswd:apache2-utils \
            "${PODMAN_PACKAGES[@]}"
        # on a systemd host the package's postinst may already have started the engine
        if docker_ok; then log "docker engine: started by the docker.io package; reusing it"; return 0; fi
    fi
    local attempt
    for attempt in 1 2; do
        start_dockerd_and_wait && return 0
    done
    die "dockerd could not be started (log: $STATE/dockerd.log)"
}

# returns 1 when a dockerd left over from before exited while we waited (caller retries)
start_dockerd_and_wait() {
    # A dockerd/containerd that was killed leaves pid files behind; dockerd refuses to start
    # while its pid file names a process that exists (even a zombie nobody reaped).
    local f pid launched=no i
    for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        if ! pid_running "$pid"; then
            log "docker engine: removing stale $f (pid $pid is gone)"
            as_root rm -f "$f"
        fi
    done
    if pid=$(live_pid "$STATE/dockerd.pid" dockerd); then
        log "docker engine: dockerd (pid $pid) is running but not answering; waiting for it"
    else
        log "docker engine: starting dockerd (log: $STATE/dockerd.log)"
        launched=yes
        if [ "$(id -u)" = 0 ]; then
            spawn_daemon "$STATE/dockerd.pid" "$STATE/dockerd.log" dockerd
        else
            command -v sudo >/dev/null 2>&1 || die "dockerd must be started as root (no sudo)"
            spawn_daemon "$STATE/dockerd.pid" "$STATE/dockerd.log" sudo dockerd
        fi
    fi
    for ((i = 0; i < DOCKERD_WAIT * 2; i++)); do
        if docker_ok; then
            log "docker engine: up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
            return 0
        fi
        if ! live_pid "$STATE/dockerd.pid" dockerd >/dev/null; then
            if [ $launched = no ]; then
                log "docker engine: the old dockerd exited; starting a new one"
                return 1
            fi
            sleep 0.5
            tail -n 30 "$STATE/dockerd.log" >&2 || true
            die "dockerd exited during start (log: $STATE/dockerd.log)"
        fi
        sleep 0.5
    done
    tail -n 30 "$STATE/dockerd.log" >&2 || true
    die "docker engine did not answer 'docker info' within ${DOCKERD_WAIT}s (log: $STATE/dockerd.log)"
}

# ---------------------------------------------------------------- podman and skopeo
# A second engine to run envlock's images under, and a registry client to inspect them
# (tests/integration/test_other_runtimes.py). Debian's podman 4.3 runs as root here with its
# defaults (overlay storage, runc, cgroupfs and a file event log, as there is no systemd) but
# one: it asks runc for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 4194304 in every container,
# which a root without CAP_SYS_RESOURCE cannot grant ("error setting rlimit type 7:
# operation not permitted"). The drop-in below asks for the hard limits podman itself runs
# with instead: this shell's nofile, and nproc capped at 32768 (podman lowers its own to that).
# The test registries are plain HTTP on loopback ports that change per session, so the tests
# pass --tls-verify=false rather than listing them in registries.conf.
# runc runs the build's daemon-free proof of an image (tests/integration/test_rootfs_proof.py).
# Not crun: Podman prefers it, and Debian 12's crun 1.8 fails every container on this host's
# hybrid cgroups.
PODMAN_PACKAGES=(podman:podman skopeo:skopeo runc:runc)
PODMAN_CONF=/etc/containers/containers.conf.d/50-envlock-test.conf

podman_conf() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    cat <<EOF
# written by envlock's scripts/infra.sh (root, no systemd, no CAP_SYS_RESOURCE)
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

ensure_podman() {
    ensure_packages "${PODMAN_PACKAGES[@]}"
    local want
    want=$(podman_conf)
    if [ "$(cat "$PODMAN_CONF" 2>/dev/null)" != "$want" ]; then
        log "podman: writing $PODMAN_CONF"
        as_root mkdir -p "$(dirname "$PODMAN_CONF")"
        printf '%s\n' "$want" | as_root tee "$PODMAN_CONF" >/dev/null
    fi
}

# ---------------------------------------------------------------- base image
make_rootfs_tar() {
    [ -s "$ROOTFS_TAR" ] && return 0
    ensure_packages debootstrap:debootstrap
    local root=$STATE/rootfs.tmp
    as_root rm -rf "$root"
    log "base image: debootstrap bookworm (about 70 s; log: $STATE/debootstrap.log)"
    as_root debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3 \
        bookworm "$root" >"$STATE/debootstrap.log" 2>&1 ||
        { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    # Behave like the official python image: plain `pip install` allowed, no package caches.
    as_root rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/debootstrap
    as_root tar --numeric-owner -C "$root" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    as_root rm -rf "$root"
}

ensure_base_image() {
    if docker image inspect "$BASE_LOCAL" >/dev/null 2>&1; then
        log "base image: $BASE_LOCAL present"
        return 0
    fi
    make_rootfs_tar
    log "base image: docker import $BASE_LOCAL from $ROOTFS_TAR"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message 'envlock test base image (debootstrap bookworm minbase + python3)' \
        - "$BASE_LOCAL" <"$ROOTFS_TAR" >/dev/null
}

# ---------------------------------------------------------------- output
print_env() {
    local docker_host=${DOCKER_HOST:-}
    [ -z "$docker_host" ] && [ -s "$STATE/docker-host" ] && docker_host=$(cat "$STATE/docker-host")
    [ -n "$docker_host" ] && echo "export DOCKER_HOST='$docker_host'"
    return 0
}

check_up() {
    [ -s "$STATE/docker-host" ] && [ -z "${DOCKER_HOST:-}" ] && export DOCKER_HOST="$(cat "$STATE/docker-host")"
    docker_ok || die "docker engine not answering; run: scripts/infra.sh up"
    docker image inspect "$BASE_LOCAL" >/dev/null 2>&1 || die "no base image $BASE_LOCAL; run: scripts/infra.sh up"
    command -v docker-registry >/dev/null 2>&1 || die "no docker-registry; run: scripts/infra.sh up"
    command -v htpasswd >/dev/null 2>&1 || die "no htpasswd; run: scripts/infra.sh up"
    command -v podman >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 && [ -s "$PODMAN_CONF" ] ||
        die "no podman/skopeo or no $PODMAN_CONF; run: scripts/infra.sh up"
}

stop_pidfile() {
    # $1 pid file, $2 cmdline pattern, $3 label
    local pid i
    if pid=$(live_pid "$1" "$2"); then
        log "stopping $3 (pid $pid)"
        as_root kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            pid_running "$pid" || break
            sleep 0.2
        done
        if pid_running "$pid"; then
            log "$3 (pid $pid) still running after 30s; sending SIGKILL"
            as_root kill -9 "$pid" 2>/dev/null || true
        fi
    else
        log "$3: not running (from this script)"
    fi
    rm -f "$1"
}

# ---------------------------------------------------------------- main
usage() { echo "usage: $0 up|env|down" >&2; exit 2; }

[ $# -eq 1 ] || usage
mkdir -p "$STATE"
# serialize concurrent invocations (e.g. parallel test workers); fd 9 is closed for daemons
exec 9>"$STATE/.lock"
flock 9

case $1 in
up)
    if [ -s "$STATE/docker-host" ] && [ -z "${DOCKER_HOST:-}" ]; then
        export DOCKER_HOST="$(cat "$STATE/docker-host")"
    fi
    ensure_docker
    # the registry fixtures (tests/registry.py) run these as the test user
    ensure_packages docker-registry:docker-registry htpasswd:apache2-utils
    # envlock report's page is loaded in real headless Chromium (tests/browser.py)
    ensure_packages chromium:chromium
    ensure_podman
    ensure_base_image
    print_env
    log "up"
    ;;
env)
    check_up
    print_env
    ;;
down)
    stop_pidfile "$STATE/dockerd.pid" dockerd dockerd
    rm -f "$STATE/docker-host"
    ;;
*) usage ;;
esac
