"""Pure: a captured run's pinned image as a Kubernetes batch/v1 Job — the options parsed
and checked, ``job_manifest()`` (hardened pod, workspace init container, the run's copied
inputs read-only where it saw them, memory-backed /dev/shm, requests = limits, GPUs and
tolerations) and the GPU/driver pre-flight from NVIDIA GPU feature discovery node labels.

A cluster gets bytes only from images it pulls, so a Job's inputs come from an *inputs
image*: the run's image plus one layer holding each copied input at
``/.envlock/inputs/<sha256>`` (:mod:`envlock.operations.inputimage` derives and pushes
it). An init container running it copies them into an ``inputs`` emptyDir, and the
experiment's container mounts each one read-only (``subPath``) at the path the run saw:
project-relative ones inside the workspace, absolute ones at the same absolute path —
what a local replay's read-only bind mounts give. Tested without a cluster; the cluster client is
:mod:`envlock.adapters.kube`, the replay that uses both :mod:`envlock.operations.kube`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from envlock.errors import EnvlockError, UsageError
from envlock.image.render import WORKDIR
from envlock.model import runrecord
from envlock.model.compat import Verdict, preflight
from envlock.model.inputs import Input, container_path
from envlock.model.redact import is_secret_name
from envlock.model.replayspec import LOOPBACK, Mount, ReplaySpec

CONTAINER = "experiment"
DRY_RUN_REPLAY_ID = "<created at submit>"
GPU_RESOURCE = "nvidia.com/gpu"
LABEL_PREFIX = runrecord.KUBE_PREFIX
TTL_SECONDS = 24 * 3600  # finished Jobs (and their logs) stay a day, then are removed
WORKSPACE_COPY = "/envlock/workspace"  # where the init container fills the workspace volume
# every entry of the image's workspace, times and modes kept (owners cannot be, as uid 1000)
WORKSPACE_FILL = (f"cd {WORKDIR} && find . -mindepth 1 -maxdepth 1 "
                  f"-exec cp -R --preserve=mode,timestamps,links -t {WORKSPACE_COPY} {{}} +")
#: In the inputs image: one entry per copied input, named by its sha256 (a directory
#: input's is its manifest's, a tree of its files).
INPUTS_ROOT = "/.envlock/inputs"
INPUTS_COPY = "/envlock/inputs"  # where the inputs init container fills the inputs volume
INPUTS_VOLUME = "inputs"
INPUTS_FILL = (f"cd {INPUTS_ROOT} && find . -mindepth 1 -maxdepth 1 "
               f"-exec cp -R -t {INPUTS_COPY} {{}} +")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
RESERVED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_NAME = re.compile(_NAME + r"\Z")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_PART = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_PART}(?:\.{_DNS_PART})*\Z")
_ENV_NAME = re.compile(r"[-._A-Za-z][-._A-Za-z0-9]*\Z")


class KubeError(EnvlockError):
    """The cluster is not configured, unreachable, or refused a request."""


# ------------------------------------------------------------------ names and labels

def is_label_value(text: str) -> bool:
    return text == "" or bool(_LABEL_NAME.match(text))


def is_label_key(key: str) -> bool:
    """``[prefix/]name``: prefix a DNS subdomain (≤ 253), name ≤ 63 alphanumerics, -_."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def job_name(run_id: str, suffix: str | None = None) -> str:
    """``envlock-replay-<12 of the run id>-<8 of the replay id, or random>`` (DNS-1123)."""
    def clean(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

    tail = clean(suffix or "")[:8].strip("-") or secrets.token_hex(3)
    return f"envlock-replay-{clean(run_id)[:12].strip('-')}-{tail}"


# ------------------------------------------------------------------ option parsing

def parse_gpu_count(value: str | None, default: int) -> int:
    """``--gpus`` on Kubernetes: a number of whole GPUs (``none`` is 0)."""
    if value is None:
        return default
    if value == "none":
        return 0
    if value.isdigit():
        return int(value)
    raise UsageError(f"--gpus {value!r} does not work with --on kubernetes",
                     "ask for a number of GPUs, e.g. --gpus 1 (the scheduler picks the devices)")


def parse_node_selector(values: Iterable[str]) -> dict[str, str]:
    selector: dict[str, str] = {}
    for value in values:
        key, found, label = value.partition("=")
        if not found or not is_label_key(key) or not is_label_value(label):
            raise UsageError(f"--node-selector {value!r} is not a valid KEY=VALUE node label",
                             "e.g. --node-selector nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3")
        selector[key] = label
    return selector


def parse_toleration(value: str) -> dict[str, str]:
    """``--toleration``: ``KEY=VALUE:EFFECT`` tolerates that taint, ``KEY:EFFECT`` any value
    of KEY with that effect, ``KEY:Exists`` any value and effect (kubectl taint spelling)."""
    head, colon, effect = value.rpartition(":")
    key, equals, label = head.partition("=")
    problem = None
    if not colon or not is_label_key(key):
        problem = "needs a valid KEY and a :EFFECT"
    elif effect == "Exists" and not equals:
        return {"key": key, "operator": "Exists"}
    elif effect not in EFFECTS:
        problem = f"effect {effect!r} is not one of {', '.join(EFFECTS)} (or Exists)"
    elif equals and not (label and is_label_value(label)):
        problem = f"{label!r} is not a valid label value"
    if problem:
        raise UsageError(f"--toleration {value!r}: {problem}",
                         "use KEY=VALUE:EFFECT, KEY:EFFECT or KEY:Exists")
    if equals:
        return {"key": key, "operator": "Equal", "value": label, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def parse_env(values: Iterable[str]) -> dict[str, str]:
    """``--env K=V`` for the pod; secret-looking names are refused (the manifest is plain
    text: printed by --dry-run and readable by anyone who can read the Job)."""
    env: dict[str, str] = {}
    for value in values:
        key, found, text = value.partition("=")
        if not found or not _ENV_NAME.match(key):
            raise UsageError(f"--env {value!r} must look like NAME=VALUE")
        if is_secret_name(key):
            raise UsageError(f"--env {key}=… looks like a secret; it would be stored in the Job "
                             "in plain text", "put it in a Kubernetes Secret and pass "
                             "--env-from-secret SECRET_NAME")
        if key in RESERVED_ENV:
            raise UsageError(f"--env {key} is set by envlock on Kubernetes",
                             "MLFLOW_TRACKING_URI is this host's tracking URI, MLFLOW_RUN_ID "
                             "the replay run, MLFLOW_EXPERIMENT_ID the original's experiment")
        env[key] = text
    return env


def check_name(kind: str, value: str, label: bool = False) -> str:
    ok = bool(_DNS_LABEL.match(value)) if label else is_dns_subdomain(value)
    if not ok:
        raise UsageError(f"{kind} {value!r} is not a valid Kubernetes name",
                         "lowercase letters, digits and '-', starting and ending alphanumeric")
    return value


def tracking_uri_problem(uri: str) -> str | None:
    """Why a pod could not log to ``uri`` (None: it can, as far as envlock can tell)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if uri == "databricks" or scheme == "databricks":
        return None
    if scheme in ("", "file", "sqlite") or len(scheme) == 1:  # len 1: a Windows drive
        return f"the tracking store {uri} is on this machine; a pod cannot reach it"
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return f"the tracking store {uri} is on loopback; inside a pod that is the pod itself"
    return None


# ------------------------------------------------------------------ the manifest

@dataclass(frozen=True)
class JobSpec:
    """A replay as a Job: the container from ``replay`` (the same :class:`ReplaySpec` a
    local replay renders for Docker), and what only a Job has; ``job_manifest()`` renders it."""

    name: str
    replay: ReplaySpec
    tracking_uri: str
    replay_run_id: str | None = None  # None: a dry run, nothing created yet
    experiment_id: str | None = None  # the original's: child runs the experiment makes go there
    namespace: str = "default"
    original_command: str | None = None
    env_from_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()
    image_pull_secret: str | None = None
    ttl_seconds: int = TTL_SECONDS
    #: The run's image plus one layer of its copied inputs, by digest (the sources of
    #: ``replay.inputs`` are paths in it); --dry-run: what would be derived, in words.
    inputs_image: str | None = None

    @property
    def run_id(self) -> str:
        return self.replay.run_id

    @property
    def image(self) -> str:
        return self.replay.image

    @property
    def gpus(self) -> int:
        """Whole GPUs for the device plugin (a pod cannot ask for all, or for devices)."""
        request = self.replay.gpus
        if request is None:
            return 0
        if request.ids is not None or request.count is None or request.count < 0:
            raise UsageError("--gpus all or device=… does not work with --on kubernetes",
                             "ask for a number of GPUs, e.g. --gpus 1 (the scheduler picks "
                             "the devices)")
        return request.count


def _labels(spec: JobSpec) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "envlock-replay", "app.kubernetes.io/managed-by": "envlock",
              f"{LABEL_PREFIX}/run-id": spec.run_id}
    if spec.replay_run_id:
        labels[f"{LABEL_PREFIX}/replay-run-id"] = spec.replay_run_id
    return {k: v for k, v in labels.items() if is_label_value(v)}  # full ids: annotations


def _annotations(spec: JobSpec) -> dict[str, str]:
    notes = {f"{LABEL_PREFIX}/image": spec.image, f"{LABEL_PREFIX}/run-id": spec.run_id,
             f"{LABEL_PREFIX}/replay-run-id": spec.replay_run_id or DRY_RUN_REPLAY_ID}
    if spec.original_command:
        notes[f"{LABEL_PREFIX}/command"] = spec.original_command
    if spec.replay.inputs and spec.inputs_image:
        notes[f"{LABEL_PREFIX}/inputs-image"] = spec.inputs_image
    return notes


def _container(spec: JobSpec) -> dict[str, Any]:
    replay = spec.replay
    env = {"MLFLOW_TRACKING_URI": spec.tracking_uri,
           "MLFLOW_RUN_ID": spec.replay_run_id or DRY_RUN_REPLAY_ID,
           **({"MLFLOW_EXPERIMENT_ID": spec.experiment_id} if spec.experiment_id else {}),
           **replay.env}
    container: dict[str, Any] = {
        "name": CONTAINER, "image": spec.image, "imagePullPolicy": "IfNotPresent",
        "workingDir": replay.workdir,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": _container_security(replay),
        "volumeMounts": [*({"name": _volume_name(path), "mountPath": path}
                           for path, _options in replay.hardening.tmpfs),
                         {"name": "workspace", "mountPath": replay.workdir},
                         {"name": "shm", "mountPath": "/dev/shm"},
                         *_input_mounts(replay.inputs)],
    }
    if replay.argv:
        container["command"] = replay.argv
    if spec.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in spec.env_from_secrets]
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    return container


def _volume_name(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: ``16Gi``, ``64Mi``, else plain bytes."""
    for suffix, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def cpu_quantity(cpus: float) -> str:
    return f"{cpus:g}" if cpus == int(cpus) else f"{round(cpus * 1000)}m"


def _resources(spec: JobSpec) -> dict[str, Any]:
    """CPU and memory as requests = limits (the pod gets exactly what was asked for);
    GPUs as limits (the device plugin's rule)."""
    wanted: dict[str, str] = {}
    if spec.replay.cpus:
        wanted["cpu"] = cpu_quantity(spec.replay.cpus)
    if spec.replay.memory:
        wanted["memory"] = quantity(spec.replay.memory)
    out: dict[str, Any] = {}
    if wanted:
        out["requests"] = dict(wanted)
    if wanted or spec.gpus:
        out["limits"] = {**wanted, **({GPU_RESOURCE: str(spec.gpus)} if spec.gpus else {})}
    return out


def _shm_volume(spec: JobSpec) -> dict[str, Any]:
    """A memory-backed /dev/shm: a container's default is 64 MB, too small for DataLoader
    workers; its pages count against the pod's memory."""
    empty: dict[str, Any] = {"medium": "Memory"}
    if spec.replay.shm_size:
        empty["sizeLimit"] = quantity(spec.replay.shm_size)
    return {"name": "shm", "emptyDir": empty}


def _container_security(replay: ReplaySpec) -> dict[str, Any]:
    hard = replay.hardening
    return {"runAsNonRoot": True, "runAsUser": replay.user, "runAsGroup": replay.user,
            "allowPrivilegeEscalation": not hard.no_new_privileges,
            "readOnlyRootFilesystem": hard.read_only_root,
            "capabilities": {"drop": list(hard.drop_capabilities)},
            "seccompProfile": {"type": hard.seccomp}}


def _workspace_init(replay: ReplaySpec) -> dict[str, Any]:
    """Fill the writable workspace volume with the image's /workspace (the code), as a
    Docker volume is filled from the image in a local replay; an emptyDir starts empty.
    Its entries are copied one by one: the volume's own root belongs to root, and
    ``cp -a DIR/. VOL/`` fails setting that root's times as uid 1000 (seen on 1.20)."""
    return {"name": "workspace", "image": replay.image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", WORKSPACE_FILL],
            "securityContext": _container_security(replay),
            "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE_COPY}]}


# ------------------------------------------------------------------ inputs

def input_mounts(copied: Iterable[Input], workdir: str) -> tuple[Mount, ...]:
    """Where a Job's experiment sees each copied input: read-only at the path the run
    saw (:func:`~envlock.model.inputs.container_path`), from its entry in the inputs
    image (``INPUTS_ROOT/<sha256>``), sorted by that path."""
    mounts = {Mount(f"{INPUTS_ROOT}/{i.sha256}", container_path(i.path, workdir), True)
              for i in copied}
    return tuple(sorted(mounts, key=lambda m: m.target))


def _subpath(mount: Mount) -> str:
    """The input's entry in the inputs volume; a source outside the inputs image (a path
    of this host, from a local replay's spec) cannot reach a pod."""
    head, slash, name = mount.source.rpartition("/")
    if head != INPUTS_ROOT or not slash or not re.fullmatch(r"[0-9a-f]{64}", name):
        raise UsageError(f"input {mount.target} comes from {mount.source} on this host, "
                         "which a pod cannot read", "replay it with --on local")
    return name


def _input_mounts(inputs: tuple[Mount, ...]) -> list[dict[str, Any]]:
    return [{"name": INPUTS_VOLUME, "mountPath": m.target, "subPath": _subpath(m),
             "readOnly": True} for m in sorted(inputs, key=lambda m: m.target)]


def _inputs_init(spec: JobSpec) -> dict[str, Any]:
    """Copy the inputs image's entries into the inputs volume (the experiment's container
    mounts them from there, read-only); runs as the experiment's user, hardened alike."""
    for mount in spec.replay.inputs:
        _subpath(mount)  # a host's path first: that is what cannot work at all
    if not spec.inputs_image:
        raise UsageError(f"run {spec.run_id} read pinned inputs "
                         f"({', '.join(m.target for m in spec.replay.inputs)}) but the Job "
                         "has no inputs image to carry them",
                         "replay it through envlock replay --on kubernetes")
    return {"name": INPUTS_VOLUME, "image": spec.inputs_image,
            "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", INPUTS_FILL],
            "securityContext": _container_security(spec.replay),
            "volumeMounts": [{"name": INPUTS_VOLUME, "mountPath": INPUTS_COPY}]}


GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def _tolerations(spec: JobSpec) -> list[dict[str, str]]:
    """The given tolerations; with GPUs also the one for the ``nvidia.com/gpu`` taint GPU
    node pools carry (what the ExtendedResourceToleration admission plugin would add)."""
    given = [dict(t) for t in spec.tolerations]
    if spec.gpus and not any(t.get("key") == GPU_RESOURCE for t in given):
        given.append(dict(GPU_TOLERATION))
    return given


def _pod(spec: JobSpec) -> dict[str, Any]:
    """The pod: hardened as the spec says; its hostname resolves (to loopback, as in a
    local replay) so a multi-process rendezvous works; ``activeDeadlineSeconds`` is the
    replay's --timeout."""
    replay = spec.replay
    if replay.mounts:
        raise UsageError("--mount works only with --on local",
                         "drop it (or the config's mounts), or replay with --on local")
    user = replay.user
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "hostname": replay.hostname,
        "hostAliases": [{"ip": LOOPBACK, "hostnames": [replay.hostname]}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user,
                            "fsGroup": user, "seccompProfile": {"type": replay.hardening.seccomp}},
        "initContainers": [_workspace_init(replay),
                           *([_inputs_init(spec)] if replay.inputs else [])],
        "containers": [_container(spec)],
        "volumes": [*({"name": _volume_name(path), "emptyDir": {}}
                      for path, _options in replay.hardening.tmpfs),
                    {"name": "workspace", "emptyDir": {}}, _shm_volume(spec),
                    *([{"name": INPUTS_VOLUME, "emptyDir": {}}] if replay.inputs else [])],
    }
    if replay.timeout:
        pod["activeDeadlineSeconds"] = math.ceil(replay.timeout)
    return pod


def job_manifest(spec: JobSpec) -> dict[str, Any]:
    """The batch/v1 Job for ``spec`` as plain data (what --dry-run prints)."""
    labels = _labels(spec)
    pod = _pod(spec)
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    tolerations = _tolerations(spec)
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels,
                     "annotations": _annotations(spec)},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": spec.ttl_seconds,
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }


# ------------------------------------------------------------------ image pull secrets

def pull_secret_name(registry: str, username: str, password: str) -> str:
    """``envlock-pull-<12 hex>``: one name per registry and credentials, so the same
    credentials reuse their secret and new ones never overwrite a secret in use."""
    import hashlib

    digest = hashlib.sha256(f"{registry}\0{username}\0{password}".encode()).hexdigest()
    return f"envlock-pull-{digest[:12]}"


def pull_secret_manifest(namespace: str, registry: str, username: str, password: str
                         ) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret holding one registry's credentials
    (what ``kubectl create secret docker-registry`` makes). Never printed."""
    import base64
    import json

    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": password,
                                   "auth": token}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": pull_secret_name(registry, username, password),
                         "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "envlock"},
                         "annotations": {f"{LABEL_PREFIX}/registry": registry}},
            "data": {".dockerconfigjson": base64.b64encode(
                json.dumps(config).encode()).decode()}}


# ------------------------------------------------------------------ node-label pre-flight

def _label(labels: Mapping[str, str], *keys: str) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


def host_gpu_from_labels(labels: Mapping[str, str],
                         known_names: Iterable[str] = ()) -> dict[str, Any] | None:
    """A node's GPU feature discovery labels as the ``host_gpu`` dict ``probe_gpu()``
    returns; None when the node has no driver labels. GFD writes the product with
    dashes for spaces, so a name the lock knows is given back in the lock's spelling."""
    driver = _label(labels, "nvidia.com/cuda.driver-version.full")
    if driver is None and labels.get("nvidia.com/cuda.driver.major"):
        parts = [labels.get(f"nvidia.com/cuda.driver.{p}", "") for p in ("major", "minor", "rev")]
        driver = ".".join(p for p in parts if p)
    if not driver:
        return None
    cuda = _label(labels, "nvidia.com/cuda.runtime-version.full")
    if cuda is None and labels.get("nvidia.com/cuda.runtime.major"):
        cuda = f"{labels['nvidia.com/cuda.runtime.major']}." \
               f"{labels.get('nvidia.com/cuda.runtime.minor', '0')}"
    product = labels.get("nvidia.com/gpu.product", "unknown")
    name = next((n for n in known_names if n.replace(" ", "-") == product), product)
    major, minor = labels.get("nvidia.com/gpu.compute.major"), \
        labels.get("nvidia.com/gpu.compute.minor")
    memory = labels.get("nvidia.com/gpu.memory", "")
    count = labels.get("nvidia.com/gpu.count", "1")
    devices = [{"index": i, "name": name,
                "compute_capability": f"{major}.{minor or 0}" if major else None,
                "memory_mib": int(memory) if memory.isdigit() else None}
               for i in range(int(count) if count.isdigit() else 1)]
    return {"status": "present" if devices else "no devices", "driver_version": driver,
            "cuda_driver_version": cuda, "devices": devices}


def preflight_from_nodes(nodes: Mapping[str, Mapping[str, str]], locked: dict[str, Any],
                         gpus: int, node_selector: Mapping[str, str] | None = None) -> Verdict:
    """``compat.preflight`` against every labeled node the pod could land on (matching the
    node selector, with enough GPUs). Fails only when none of them can run the image;
    without GFD labels the check is skipped with a warning."""
    if not gpus:
        return Verdict(ok=True)
    selector = node_selector or {}
    names = [d.get("name", "") for d in (locked.get("gpu") or {}).get("devices", [])]
    hosts = {name: host_gpu_from_labels(labels, names) for name, labels in nodes.items()
             if all(labels.get(k) == v for k, v in selector.items())}
    labeled = {name: host for name, host in hosts.items()
               if host and len(host["devices"]) >= gpus}
    if not labeled:
        why = "no node matches the node selector" if not hosts else \
            f"no matching node has GPU feature discovery labels showing {gpus} GPU(s)"
        return Verdict(ok=True, warnings=(f"GPU/driver pre-flight skipped: {why}",))
    verdicts = {name: preflight(locked, host, True) for name, host in labeled.items()}
    good = sorted(name for name, v in verdicts.items() if v.ok)
    bad = {name: v for name, v in verdicts.items() if not v.ok}
    warnings = sorted({w for v in verdicts.values() for w in v.warnings})
    if not good:
        problems = tuple(f"node {name}: {'; '.join(v.problems)}" for name, v in sorted(bad.items()))
        return Verdict(ok=False, problems=problems, warnings=tuple(warnings))
    if bad:
        warnings.append(f"nodes {', '.join(sorted(bad))} cannot run the image; pin the pod to "
                        f"one that can, e.g. --node-selector kubernetes.io/hostname={good[0]}")
    return Verdict(ok=True, warnings=tuple(warnings))
