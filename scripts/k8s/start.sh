#!/usr/bin/env bash
# Start a one-node Kubernetes v1.20.2 (etcd, kube-apiserver, controller-manager, scheduler, kubelet on a
# private containerd) from the binaries build.sh made. Verified on these machines: node Ready in about
# 16 s, about 700 MiB of memory. All state under $K8S_DIR/run; stop.sh undoes everything.
# Prints `export KUBECONFIG=…` on stdout; progress on stderr.
#   K8S_DIR (default /var/tmp/envlock-k8s)
#   K8S_REGISTRIES  space-separated loopback registries pods pull from over plain HTTP (default none;
#                   more can be added while it runs: registry.sh HOST:PORT, containerd reads
#                   certs.d per pull)
set -euo pipefail
K=${K8S_DIR:-/var/tmp/envlock-k8s}; R=$K/run
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "k8s: $*" >&2; }
[ -x "$K/bin/kubelet" ] || { log "no binaries: run build.sh first"; exit 1; }
[ -d "$R" ] && { log "stopping what a previous start left"; K8S_DIR=$K bash "$here/stop.sh"; }
rm -rf "$R"; mkdir -p "$R"/{pki,logs,certs.d,net.d}
NODE_IP=$(hostname -I | awk '{print $1}')            # the kubelet refuses a loopback node IP
# PKI: a CA, the API server's serving cert, the service-account key pair, one admin token
cd "$R/pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=envlock-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile ext.cnf 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
TOKEN=$(openssl rand -hex 16); echo "$TOKEN,admin,admin-uid,system:masters" > tokens.csv
cat > "$R/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: envlock-test, cluster: {server: "https://127.0.0.1:16443", certificate-authority: "$R/pki/ca.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: envlock-test, context: {cluster: envlock-test, user: admin, namespace: default}}]
current-context: envlock-test
KC
# containerd of its own (Docker's is never touched); restrict_oom_score_adj: this sandbox lacks
# CAP_SYS_RESOURCE, without it every pod sandbox fails with "can't get final child's PID from pipe"
sed "s|@R@|$R|g" "$here/containerd.toml.in" > "$R/containerd.toml"
sed "s|@R@|$R|g" "$here/bridge.conflist.in" > "$R/net.d/10-bridge.conflist"
for reg in ${K8S_REGISTRIES:-}; do bash "$here/registry.sh" "$reg"; done
# the pods' bridge, made now (the CNI plugin reuses it) so that servers the pods must reach can listen
# on its gateway address 10.244.0.1 before the first pod starts
ip link add envlocktest0 type bridge 2>/dev/null || true
ip addr replace 10.244.0.1/24 dev envlocktest0 && ip link set envlocktest0 up
cd "$R"
etcd --name envlock-test --data-dir "$R/etcd" --unsafe-no-fsync \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster envlock-test=http://127.0.0.1:23800 > logs/etcd.log 2>&1 & echo $! > etcd.pid
containerd --config "$R/containerd.toml" > logs/containerd.log 2>&1 & echo $! > containerd.pid
until curl -sf http://127.0.0.1:23790/health >/dev/null; do sleep 0.1; done; log "etcd healthy"
"$K/bin/kube-apiserver" --etcd-servers=http://127.0.0.1:23790 \
  --bind-address=127.0.0.1 --secure-port=16443 --advertise-address=127.0.0.1 \
  --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
  --token-auth-file=pki/tokens.csv --authorization-mode=Node,RBAC \
  --service-account-key-file=pki/sa.pub --service-account-signing-key-file=pki/sa.key \
  --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.96.0.0/24 \
  --kubelet-preferred-address-types=InternalIP --feature-gates=TTLAfterFinished=true \
  --cert-dir="$R/apiserver-certs" > logs/kube-apiserver.log 2>&1 & echo $! > kube-apiserver.pid
C="ctr -a $R/containerd/containerd.sock -n k8s.io"
until $C version >/dev/null 2>&1; do sleep 0.1; done
python3 "$here/mkimage.py" "$K/bin/pause" registry.k8s.io/pause:3.4.1 "$R/pause.tar" >/dev/null
$C images import "$R/pause.tar" >/dev/null; log "containerd up, pause image imported"
until curl -sf --cacert pki/ca.crt -H "Authorization: Bearer $TOKEN" https://127.0.0.1:16443/healthz >/dev/null; do sleep 0.2; done
log "kube-apiserver healthy"
"$K/bin/kube-controller-manager" --kubeconfig="$R/kubeconfig" --leader-elect=false \
  --service-account-private-key-file=pki/sa.key --root-ca-file=pki/ca.crt \
  --feature-gates=TTLAfterFinished=true --bind-address=127.0.0.1 --secure-port=10357 --port=0 \
  --controllers='*,-nodeipam,-service,-route,-cloud-node-lifecycle' > logs/kube-controller-manager.log 2>&1 & echo $! > kube-controller-manager.pid
"$K/bin/kube-scheduler" --kubeconfig="$R/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 \
  --secure-port=10359 --port=0 > logs/kube-scheduler.log 2>&1 & echo $! > kube-scheduler.pid
# the kubelet rewrites these kernel settings (no flag stops it): save them, stop.sh restores them
sysctl -e vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes | sed "s/ = /=/" > sysctl.saved
"$K/bin/kubelet" --kubeconfig="$R/kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint="unix://$R/containerd/containerd.sock" \
  --image-service-endpoint="unix://$R/containerd/containerd.sock" \
  --cgroup-driver=cgroupfs --root-dir="$R/kubelet" --cert-dir="$R/kubelet/pki" \
  --hostname-override=envlock-test-node --node-ip="$NODE_IP" --address="$NODE_IP" --port=10260 --read-only-port=0 \
  --healthz-bind-address=127.0.0.1 --healthz-port=10258 --fail-swap-on=false \
  --pod-infra-container-image=registry.k8s.io/pause:3.4.1 --image-gc-high-threshold=100 --eviction-hard='' \
  --feature-gates=TTLAfterFinished=true > logs/kubelet.log 2>&1 & echo $! > kubelet.pid
export KUBECONFIG=$R/kubeconfig
kc() { python3 - "$@" <<'PY'
import sys, json, ssl, urllib.request, os
cfg = os.environ["KUBECONFIG"]; tok = open(cfg).read().split('token: "')[1].split('"')[0]
ctx = ssl.create_default_context(cafile=os.path.join(os.path.dirname(cfg), "pki", "ca.crt"))
req = urllib.request.Request("https://127.0.0.1:16443" + sys.argv[1], headers={"Authorization": "Bearer " + tok})
try: print(json.dumps(json.load(urllib.request.urlopen(req, context=ctx, timeout=5))))
except Exception: print("{}")
PY
}
for _ in $(seq 1 300); do
  kc /api/v1/nodes/envlock-test-node | grep -q '"type": "Ready", "status": "True"' && break; sleep 0.3; done
for _ in $(seq 1 300); do
  kc /api/v1/namespaces/default/serviceaccounts/default | grep -q '"secrets"' && break; sleep 0.3; done
log "node Ready, default service account ready (pods admissible)"
echo "export KUBECONFIG='$R/kubeconfig'"
