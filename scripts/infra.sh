#!/usr/bin/env bash
# Test infrastructure for envlock: a real Docker engine, two real OCI registries on
# loopback (one open, one with htpasswd auth) and a digest-pinned Python base image
# built offline from Debian packages (no image can be pulled from a public registry).
#
#   scripts/infra.sh up     install/start what is missing, then print `export` lines
#   scripts/infra.sh env    print the `export` lines for an already running setup
#   scripts/infra.sh down   stop the registries and the dockerd this script started
#
# Typical use:   eval "$(scripts/infra.sh up)"
# Progress goes to stderr; only the export lines go to stdout.
#
# Settings (environment):
#   ENVLOCK_INFRA_DIR                 state dir (default /var/tmp/envlock-infra)
#   ENVLOCK_TEST_REGISTRY_PORT        open registry port (default 5055)
#   ENVLOCK_TEST_AUTH_REGISTRY_PORT   htpasswd registry port (default 5056)
set -euo pipefail

STATE=${ENVLOCK_INFRA_DIR:-/var/tmp/envlock-infra}
REG_PORT=${ENVLOCK_TEST_REGISTRY_PORT:-5055}
AUTH_PORT=${ENVLOCK_TEST_AUTH_REGISTRY_PORT:-5056}
REG=127.0.0.1:$REG_PORT
AUTH_REG=127.0.0.1:$AUTH_PORT
AUTH_USER=envlock
AUTH_PASSWORD=envlock-test-pw
BASE_LOCAL=envlock-test/python:3.11-bookworm
BASE_REPO=$REG/envlock-test/python
BASE_TAG=$BASE_REPO:3.11-bookworm
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

# curl that never goes through a proxy and never hangs
lcurl() { curl --noproxy '*' --silent --show-error --max-time 5 "$@"; }

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

# HTTP status of GET /v2/ on a registry ("000" when nothing answers)
v2_status() { lcurl -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }

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
        ensure_packages dockerd:docker.io docker-registry:docker-registry debootstrap:debootstrap htpasswd:apache2-utils
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

# ---------------------------------------------------------------- registries
write_registry_config() {
    # $1 name, $2 port, $3 with auth (yes/no)
    local name=$1 port=$2 auth=$3 cfg=$STATE/registry-$1.yml
    mkdir -p "$STATE/registry-$name"
    {
        cat <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry-$name
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: envlock-test-$name
EOF
        if [ "$auth" = yes ]; then
            cat <<EOF
auth:
  htpasswd:
    realm: envlock-test
    path: $STATE/htpasswd
EOF
        fi
    } >"$cfg.tmp"
    mv "$cfg.tmp" "$cfg"
}

ensure_htpasswd() {
    if [ -s "$STATE/htpasswd" ] && grep -q "^$AUTH_USER:\\\$2" "$STATE/htpasswd"; then return 0; fi
    ensure_packages htpasswd:apache2-utils
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASSWORD" 2>/dev/null | sed '/^$/d' >"$STATE/htpasswd.tmp"
    mv "$STATE/htpasswd.tmp" "$STATE/htpasswd"
}

ensure_registry() {
    # $1 name, $2 port, $3 auth yes/no
    local name=$1 port=$2 auth=$3 want=200 code pid i
    [ "$auth" = yes ] && want=401
    code=$(v2_status "http://127.0.0.1:$port/v2/")
    if [ "$code" = "$want" ]; then
        log "registry $name: reusing 127.0.0.1:$port"
        return 0
    elif [ "$code" != 000 ]; then
        die "127.0.0.1:$port answers /v2/ with HTTP $code (expected $want): port taken by something else?"
    fi
    ensure_packages docker-registry:docker-registry
    write_registry_config "$name" "$port" "$auth"
    if pid=$(live_pid "$STATE/registry-$name.pid" "registry-$name.yml"); then
        log "registry $name: stale process $pid not answering; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    local attempt
    for attempt in 1 2 3; do
        start_registry_and_wait "$name" "$port" "$want" && return 0
        log "registry $name: attempt $attempt failed; log tail:"
        tail -n 20 "$STATE/registry-$name.log" >&2 || true
        port_holder "$port"
        sleep $((attempt * 2))
    done
    die "registry $name could not be started on 127.0.0.1:$port (log: $STATE/registry-$name.log)"
}

# what listens on TCP port $1, if anything (for error messages)
port_holder() {
    command -v ss >/dev/null 2>&1 || return 0
    local line
    line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 3) || true
    [ -n "$line" ] && log "port $1 is held by: $line"
    return 0
}

# returns 0 once /v2/ answers with $3, 1 when the registry exited or never answered
start_registry_and_wait() {
    local name=$1 port=$2 want=$3 code i
    log "registry $name: starting on 127.0.0.1:$port (log: $STATE/registry-$name.log)"
    spawn_daemon "$STATE/registry-$name.pid" "$STATE/registry-$name.log" \
        docker-registry serve "$STATE/registry-$name.yml"
    for ((i = 0; i < 80; i++)); do
        code=$(v2_status "http://127.0.0.1:$port/v2/")
        [ "$code" = "$want" ] && return 0
        if ! live_pid "$STATE/registry-$name.pid" "registry-$name.yml" >/dev/null; then
            log "registry $name: exited during start (last HTTP code $code)"
            return 1
        fi
        sleep 0.25
    done
    log "registry $name: no answer within 20s (last HTTP code $code); stopping it"
    kill "$(cat "$STATE/registry-$name.pid")" 2>/dev/null || true
    return 1
}

check_auth_registry() {
    local code
    code=$(v2_status -u "$AUTH_USER:$AUTH_PASSWORD" "http://$AUTH_REG/v2/")
    [ "$code" = 200 ] || die "auth registry $AUTH_REG rejects $AUTH_USER/$AUTH_PASSWORD (HTTP $code)"
}

# ---------------------------------------------------------------- base image
# digest of the manifest the open registry holds for the base tag (empty if none)
registry_base_digest() {
    lcurl -I \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "http://$REG/v2/envlock-test/python/manifests/3.11-bookworm" 2>/dev/null |
        tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' || true
}

local_has_digest() {
    # is $BASE_REPO@$1 among the RepoDigests of local $BASE_TAG?
    docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$BASE_TAG" 2>/dev/null |
        grep -qxF "$BASE_REPO@$1"
}

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
    local digest
    digest=$(registry_base_digest)
    if [ -n "$digest" ]; then
        if local_has_digest "$digest"; then
            log "base image: present locally and in $REG ($digest)"
        else
            log "base image: pulling $BASE_REPO@$digest from the local registry"
            docker pull -q "$BASE_TAG" >/dev/null
            local_has_digest "$digest" || die "pulled $BASE_TAG but its digest is not $digest"
        fi
        docker image inspect "$BASE_LOCAL" >/dev/null 2>&1 || docker tag "$BASE_TAG" "$BASE_LOCAL"
    else
        if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
            if ! docker image inspect "$BASE_LOCAL" >/dev/null 2>&1; then
                make_rootfs_tar
                log "base image: docker import $BASE_LOCAL from $ROOTFS_TAR"
                docker import \
                    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                    --change 'ENV LANG=C.UTF-8' \
                    --change 'CMD ["python3"]' \
                    --message 'envlock test base image (debootstrap bookworm minbase + python3)' \
                    - "$BASE_LOCAL" <"$ROOTFS_TAR" >/dev/null
            fi
            docker tag "$BASE_LOCAL" "$BASE_TAG"
        fi
        log "base image: pushing $BASE_TAG"
        docker push "$BASE_TAG" >"$STATE/push.log" 2>&1 || { tail -n 20 "$STATE/push.log" >&2; die "docker push $BASE_TAG failed"; }
        digest=$(registry_base_digest)
        [ -n "$digest" ] || die "registry $REG has no manifest for $BASE_TAG after push"
        local_has_digest "$digest" || die "local RepoDigests of $BASE_TAG do not contain $digest"
    fi
    local ref=$BASE_REPO@$digest
    if [ "$(cat "$STATE/base-image.ref" 2>/dev/null)" != "$ref" ] || [ ! -s "$STATE/base-image.python" ]; then
        local py
        py=$(docker run --rm --network none "$ref" python3 -c 'import platform;print(platform.python_version())') ||
            die "cannot run a container from $ref"
        [ -n "$py" ] || die "empty python version from $ref"
        echo "$py" >"$STATE/base-image.python"
        echo "$ref" >"$STATE/base-image.ref"
        log "base image: $ref (python $py)"
    fi
}

# ---------------------------------------------------------------- output
print_env() {
    local docker_host=${DOCKER_HOST:-}
    [ -z "$docker_host" ] && [ -s "$STATE/docker-host" ] && docker_host=$(cat "$STATE/docker-host")
    [ -n "$docker_host" ] && echo "export DOCKER_HOST='$docker_host'"
    cat <<EOF
export ENVLOCK_TEST_REGISTRY='$REG'
export ENVLOCK_TEST_AUTH_REGISTRY='$AUTH_REG'
export ENVLOCK_TEST_AUTH_USER='$AUTH_USER'
export ENVLOCK_TEST_AUTH_PASSWORD='$AUTH_PASSWORD'
export ENVLOCK_TEST_BASE_IMAGE='$(cat "$STATE/base-image.ref")'
export ENVLOCK_TEST_BASE_PYTHON='$(cat "$STATE/base-image.python")'
EOF
}

check_up() {
    [ -s "$STATE/docker-host" ] && [ -z "${DOCKER_HOST:-}" ] && export DOCKER_HOST="$(cat "$STATE/docker-host")"
    docker_ok || die "docker engine not answering; run: scripts/infra.sh up"
    [ "$(v2_status "http://$REG/v2/")" = 200 ] || die "registry $REG not answering; run: scripts/infra.sh up"
    [ "$(v2_status "http://$AUTH_REG/v2/")" = 401 ] || die "auth registry $AUTH_REG not answering; run: scripts/infra.sh up"
    [ -s "$STATE/base-image.ref" ] && [ -s "$STATE/base-image.python" ] || die "no base image recorded; run: scripts/infra.sh up"
    local digest
    digest=$(registry_base_digest)
    [ "$BASE_REPO@$digest" = "$(cat "$STATE/base-image.ref")" ] ||
        die "registry $REG no longer holds $(cat "$STATE/base-image.ref"); run: scripts/infra.sh up"
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
    ensure_htpasswd
    ensure_registry open "$REG_PORT" no
    ensure_registry auth "$AUTH_PORT" yes
    check_auth_registry
    ensure_base_image
    print_env
    log "up"
    ;;
env)
    check_up
    print_env
    ;;
down)
    stop_pidfile "$STATE/registry-open.pid" registry-open.yml "registry open"
    stop_pidfile "$STATE/registry-auth.pid" registry-auth.yml "registry auth"
    stop_pidfile "$STATE/dockerd.pid" dockerd dockerd
    rm -f "$STATE/docker-host"
    ;;
*) usage ;;
esac
