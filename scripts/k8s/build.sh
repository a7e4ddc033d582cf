#!/usr/bin/env bash
# Build a real Kubernetes control plane + kubelet (v1.20.2) from Debian bookworm's own source package,
# offline (its tarball carries vendor/). Verified on these machines: 4–6 minutes cold on 2 cores,
# about 1.5 GB of Go cache, 360 MB of binaries. Binaries land in $K8S_DIR/bin and are reused when the
# source hash matches, so a later run on the same machine skips the build.
#   K8S_DIR (default /var/tmp/envlock-k8s)
set -euo pipefail
K=${K8S_DIR:-/var/tmp/envlock-k8s}; mkdir -p "$K"/{bin,src,apt/lists/partial}
SRC_SHA=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc   # kubernetes_1.20.5+really1.20.2.orig.tar.gz
exec 8>"$K/.build.lock"; flock 8     # one build at a time per machine; a second one then finds the cache
runtime_ok() { for c in etcd containerd ctr runc /usr/lib/cni/bridge openssl curl ip; do command -v "$c" >/dev/null || return 1; done; }
[ "$(cat "$K/bin/.source-sha256" 2>/dev/null)" = "$SRC_SHA" ] && [ -x "$K/bin/kubelet" ] && runtime_ok &&
  { echo "k8s: binaries cached ($K/bin)"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
# apt's locks waited for: test.sh starts this beside scripts/slurm/start.sh, which installs too
# (dpkg's lock has a timeout option; the lists and archives locks fail at once, hence the retries)
L=(-o DPkg::Lock::Timeout=600)
retry() { local n; for n in 1 2 3 4 5 6 7 8 9 10 11 12; do "$@" && return 0; echo "k8s: apt busy, retrying" >&2; sleep 10; done; return 1; }
retry apt-get "${L[@]}" update -qq
retry apt-get "${L[@]}" install -y -qq --no-install-recommends golang-1.19-go rsync \
  containernetworking-plugins etcd-server containerd runc gcc libc6-dev openssl curl iproute2 >/dev/null
# deb-src only for this download, in a private apt state (the machine's sources stay untouched)
echo "deb-src http://deb.debian.org/debian bookworm main" > "$K/apt/sources.list"
A=("${L[@]}" -o Dir::Etc::SourceList="$K/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$K/apt/lists")
retry apt-get "${A[@]}" update -qq
(cd "$K/src" && apt-get "${A[@]}" source --download-only kubernetes >/dev/null)
tarball=$(ls "$K"/src/kubernetes_*.orig.tar.gz | head -1)
echo "$SRC_SHA  $tarball" | sha256sum -c - >/dev/null || { echo "k8s: source hash mismatch" >&2; exit 1; }
W=$K/work; rm -rf "$W"; mkdir -p "$W/gopath/src/k8s.io"
tar -C "$W" -xzf "$tarball"; ln -s "$W/kubernetes-1.20.2" "$W/gopath/src/k8s.io/kubernetes"
export PATH=/usr/lib/go-1.19/bin:$PATH GOCACHE=$K/gocache GOFLAGS= GOPROXY=off
(cd "$W/kubernetes-1.20.2" && make generated_files >"$K/gen.log" 2>&1)     # needs rsync
export GOPATH=$W/gopath CGO_ENABLED=0 GO111MODULE=off
P=k8s.io/kubernetes/vendor/k8s.io
V="-X $P/component-base/version.gitVersion=v1.20.2 -X $P/component-base/version.gitMajor=1 -X $P/component-base/version.gitMinor=20 -X $P/client-go/pkg/version.gitVersion=v1.20.2"
cd "$W/gopath/src/k8s.io/kubernetes"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  go build -tags selinux,notest -ldflags "-s -w $V" -o "$K/bin/$c" "./cmd/$c"
done
# the pod sandbox ("pause") image, from the same source tree
gcc -Os -static -o "$K/bin/pause" build/pause/linux/pause.c
echo "$SRC_SHA" > "$K/bin/.source-sha256"; rm -rf "$W"
echo "k8s: built into $K/bin"
