"""The only code that talks to a Kubernetes cluster, through the official ``kubernetes``
client (imported lazily: ``pip install 'envlock[kubernetes]'``): loading the kubeconfig,
reading nodes for the pre-flight, submitting a Job, following its pod and its logs, and
translating the API's errors into :class:`envlock.model.kubejob.KubeError`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from envlock.errors import EnvlockError, ReplayTimeout, UsageError
from envlock.model.compat import Verdict
from envlock.model.kubejob import CONTAINER, KubeError, preflight_from_nodes


def _modules() -> tuple[Any, Any]:
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise UsageError("the Kubernetes client is not installed",
                         "pip install 'envlock[kubernetes]'") from exc
    return client, config


def load_client() -> Any:
    """An ApiClient from the kubeconfig (``KUBECONFIG`` or ~/.kube/config), else the
    in-cluster service account."""
    import os

    client, config = _modules()
    # read KUBECONFIG now: the client reads it once, when it is first imported
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        return config.new_client_from_config(config_file=path)
    except (config.ConfigException, OSError) as exc:
        first: Exception = exc
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        raise KubeError(f"no Kubernetes cluster configured ({_first_line(first)})",
                        "set KUBECONFIG or run inside a cluster") from first
    return client.ApiClient(configuration)


def to_model(api: Any, manifest: Mapping[str, Any], kind: str = "V1Job") -> Any:
    """``manifest`` as the client's own model (validated by it), for any client ≥ 29."""
    import inspect

    text = json.dumps(manifest)
    if "response_text" in inspect.signature(api.deserialize).parameters:  # pydantic models
        return api.deserialize(text, kind, "application/json")
    return api.deserialize(_Response(text), kind)


@dataclass(frozen=True)
class _Response:
    """What the older clients' ``ApiClient.deserialize`` reads: a response's ``data``."""

    data: str


_HINTS = {401: "your kubeconfig credentials were refused; log in to the cluster again",
          403: "envlock needs RBAC to create jobs and get/list pods, pods/log and nodes in "
               "that namespace",
          404: "check --namespace",
          409: "a Job with that name exists; retry",
          422: "the cluster rejected the manifest; inspect it with --dry-run"}


def _call(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return func(*args, **kwargs)
    except ApiException as exc:
        raise KubeError(f"Kubernetes API: {what} failed: {exc.status} {_api_reason(exc)}",
                        _HINTS.get(exc.status or 0, "see kubectl for details")) from exc
    except (HTTPError, OSError) as exc:
        raise KubeError(f"cannot reach the Kubernetes API server ({what}): {_first_line(exc)}",
                        "check that the cluster is up and your kubeconfig's server") from exc


def _api_reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def node_preflight(api: Any, locked: dict[str, Any], gpus: int,
                   node_selector: Mapping[str, str]) -> Verdict:
    """``preflight_from_nodes`` on the cluster's nodes; skipped when they can't be listed."""
    if not gpus:
        return Verdict(ok=True)
    client, _ = _modules()
    try:
        nodes = _call("listing nodes", client.CoreV1Api(api).list_node).items
    except KubeError as exc:
        return Verdict(ok=True, warnings=(f"GPU/driver pre-flight skipped: {exc.message}",))
    return preflight_from_nodes({n.metadata.name: dict(n.metadata.labels or {}) for n in nodes},
                                locked, gpus, node_selector)


def ensure_secret(api: Any, manifest: Mapping[str, Any]) -> str:
    """Create the Secret unless one of that name exists (its name is derived from its
    content, so an existing one holds the same credentials); its name."""
    from kubernetes.client.exceptions import ApiException

    client, _ = _modules()
    core = client.CoreV1Api(api)
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        core.create_namespaced_secret(namespace, to_model(api, manifest, "V1Secret"))
    except ApiException as exc:
        if exc.status != 409:  # 409: it exists already, reuse it
            _call("creating the image pull secret", _raise, exc)
    except Exception as exc:  # noqa: BLE001 - network errors: translated like any call
        _call("creating the image pull secret", _raise, exc)
    return str(name)


def _raise(exc: BaseException) -> None:
    raise exc


_STUCK = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                    "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_TAIL_LINES = 5


def _statuses(pod: Any) -> list[tuple[bool, Any]]:
    """``(is_init, status)`` for every container of the pod, init containers first."""
    status = pod.status
    return [(True, s) for s in status.init_container_statuses or []] + \
        [(False, s) for s in status.container_statuses or []]


def _pod_problem(pod: Any) -> tuple[str | None, str] | None:
    """Why the pod cannot run the experiment, as ``(container, reason)``; None while it
    still can. The experiment's own non-zero exit is not a problem: it is the result."""
    for is_init, state in _statuses(pod):
        waiting = state.state.waiting if state.state else None
        done = state.state.terminated if state.state else None
        if waiting and waiting.reason in _STUCK:
            return state.name, f"{waiting.reason}: {waiting.message or ''}".strip(": ")
        if is_init and done and done.exit_code:
            return state.name, (f"init container {state.name} failed: {done.reason or 'Error'}"
                                f" (exit {done.exit_code})")
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            return None, f"Unschedulable: {condition.message or 'no node fits the pod'}"
    if pod.status.phase == "Failed" and pod.status.reason:
        return None, f"{pod.status.reason}: {pod.status.message or ''}".strip(": ")
    return None


_PROBLEM_HINTS = (("Unschedulable", "no node has the GPUs, labels or free resources asked "
                   "for: check --gpus, --node-selector, --toleration, --cpus and --memory"),
                  ("ImagePull", "check that the digest is in the registry and the cluster may "
                   "pull it (--image-pull-secret, or registry credentials)"),
                  ("init container", "the image's /workspace could not be copied into the pod"),
                  ("OOMKilled", "the experiment ran out of memory: raise --memory"))


def _failure(core: Any, namespace: str, pod: str, container: str | None, reason: str,
             job: str) -> EnvlockError:
    """One line: the pod, Kubernetes' reason and the container's last log lines; a pod
    stopped at its ``activeDeadlineSeconds`` (the replay's --timeout) is a ReplayTimeout."""
    if reason.startswith("DeadlineExceeded"):
        return _timed_out(core, namespace, pod, job)
    tail = _last_lines(core, namespace, pod, container) if container else ""
    hint = next((h for key, h in _PROBLEM_HINTS if key in reason),
                f"kubectl describe pod -n {namespace} {pod}")
    message = f"Job {namespace}/{job}, pod {pod}: {_one_line(reason)}"
    return KubeError(message + (f"; last log lines: {tail}" if tail else ""), hint)


def _timed_out(core: Any, namespace: str, pod: str, job: str) -> ReplayTimeout:
    try:
        seconds = float(core.read_namespaced_pod(pod, namespace).spec.active_deadline_seconds)
    except Exception:  # noqa: BLE001 - the pod's deadline only words the message
        seconds = 0.0
    return ReplayTimeout(seconds, _last_lines(core, namespace, pod, CONTAINER),
                         where=f"pod {namespace}/{pod} of Job {job}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _last_lines(core: Any, namespace: str, pod: str, container: str) -> str:
    try:
        text = core.read_namespaced_pod_log(pod, namespace, container=container,
                                            tail_lines=_TAIL_LINES)
    except Exception:  # noqa: BLE001 - logs are a courtesy; the reason is already known
        return ""
    return " | ".join(line.strip() for line in str(text or "").splitlines() if line.strip())


def _wait_for_pod(core: Any, batch: Any, namespace: str, job: str, timeout: float,
                  poll: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pods = _call("listing the Job's pods", core.list_namespaced_pod, namespace,
                     label_selector=f"job-name={job}").items
        if not pods:
            _job_status(batch, namespace, job)  # a deleted Job fails here
        for pod in pods:
            problem = _pod_problem(pod)
            if problem:
                raise _failure(core, namespace, pod.metadata.name, *problem, job=job)
            if pod.status.phase in ("Running", "Succeeded", "Failed"):
                return str(pod.metadata.name)
        if time.monotonic() > deadline:
            raise KubeError(f"the pod of Job {namespace}/{job} did not start in {timeout:.0f} s",
                            f"kubectl describe job -n {namespace} {job}")
        time.sleep(poll)


def _stream_logs(core: Any, namespace: str, pod: str, output: Callable[[bytes], None],
                 retries: int = 5) -> None:
    """Follow the experiment's log; a stream that drops while the container runs is opened
    again and what was already shown is skipped (the kubelet serves the log from its start)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    shown = 0
    for attempt in range(retries + 1):
        try:
            response = _call("streaming logs", core.read_namespaced_pod_log, pod, namespace,
                             container=CONTAINER, follow=True, _preload_content=False)
        except KubeError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status in (400, 404):
                return  # the container never started, or the pod is gone: no logs to show
            raise
        seen = 0
        try:
            for chunk in response.stream(4096):
                skip = max(0, min(len(chunk), shown - seen))
                seen += len(chunk)
                if chunk[skip:]:
                    output(chunk[skip:])
                shown = max(shown, seen)
            return
        except (HTTPError, OSError):
            if attempt == retries:
                raise KubeError(f"the log stream of pod {namespace}/{pod} kept dropping",
                                f"kubectl logs -n {namespace} {pod}") from None
            time.sleep(1)
        finally:
            response.release_conn()


def _job_status(batch: Any, namespace: str, job: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return _call("reading the Job", batch.read_namespaced_job_status, job, namespace).status
    except KubeError as exc:
        if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
            raise KubeError(f"Job {namespace}/{job} was deleted before it finished",
                            "someone or something (a TTL, a quota controller) removed it; "
                            "replay again") from exc
        raise


def _wait_for_pod_done(core: Any, batch: Any, namespace: str, pod: str, job: str,
                       poll: float) -> bool:
    """Until the pod has finished (its phase, which lags less than the Job's status);
    whether it succeeded. A pod or Job deleted meanwhile is a KubeError."""
    from kubernetes.client.exceptions import ApiException

    while True:
        try:
            found = core.read_namespaced_pod(pod, namespace)
        except ApiException as exc:
            if exc.status != 404:
                _call("reading the pod", _raise, exc)
            found = None
        if found is None or found.metadata.deletion_timestamp:
            _job_status(batch, namespace, job)  # the Job gone: says so
            raise KubeError(f"pod {namespace}/{pod} of Job {job} was deleted before it "
                            "finished", "replay again")
        if found.status.phase in ("Succeeded", "Failed"):
            _job_status(batch, namespace, job)  # killed by a deleted Job: not a result
            return bool(found.status.phase == "Succeeded")
        time.sleep(poll)


def _exit_code(core: Any, namespace: str, pod: str, job: str, succeeded: bool) -> int:
    """The experiment's exit code; a pod that failed around it (an init container, an
    eviction, an OOM kill) is a KubeError with Kubernetes' reason."""
    found = _call("reading the pod", core.read_namespaced_pod, pod, namespace)
    problem = _pod_problem(found)
    if problem:
        raise _failure(core, namespace, pod, *problem, job=job)
    for is_init, state in _statuses(found):
        done = state.state.terminated if state.state else None
        if not is_init and state.name == CONTAINER and done is not None:
            if done.reason == "OOMKilled":
                raise _failure(core, namespace, pod, CONTAINER,
                               f"OOMKilled (exit {done.exit_code})", job=job)
            return int(done.exit_code)
    if not succeeded:
        raise _failure(core, namespace, pod, None, "the pod failed before the experiment "
                       "ran", job=job)
    return 0


def submit_job(manifest: Mapping[str, Any], api: Any = None) -> None:
    client, _ = _modules()
    api = api or load_client()
    namespace = manifest["metadata"]["namespace"]
    _call("creating the Job", client.BatchV1Api(api).create_namespaced_job, namespace,
          to_model(api, manifest))


def follow_job(namespace: str, name: str, *, output: Callable[[bytes], None], api: Any = None,
               start_timeout: float = 1800, poll: float = 0.5) -> int:
    """Wait for the Job's pod, stream its logs, wait for it to finish; the experiment's
    exit code. A failure around the experiment is a KubeError with Kubernetes' reason."""
    client, _ = _modules()
    api = api or load_client()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    pod = _wait_for_pod(core, batch, namespace, name, start_timeout, poll)
    _stream_logs(core, namespace, pod, output)
    succeeded = _wait_for_pod_done(core, batch, namespace, pod, name, poll)
    return _exit_code(core, namespace, pod, name, succeeded)


def job_state(namespace: str, name: str, api: Any = None) -> str:
    """``running``, ``succeeded``, ``failed`` or ``gone`` (deleted, or past its TTL)."""
    client, _ = _modules()
    try:
        status = _job_status(client.BatchV1Api(api or load_client()), namespace, name)
    except KubeError as exc:
        if "was deleted" in exc.message:
            return "gone"
        raise
    return "succeeded" if status.succeeded else "failed" if status.failed else "running"


def delete_job(namespace: str, name: str, api: Any = None) -> None:
    client, _ = _modules()
    with contextlib.suppress(KubeError):  # gone already, or the original error matters more
        _call("deleting the Job", client.BatchV1Api(api or load_client()).delete_namespaced_job,
              name, namespace, propagation_policy="Background")


def run_job(manifest: Mapping[str, Any], *, output: Callable[[bytes], None], api: Any = None,
            start_timeout: float = 1800, poll: float = 0.5) -> int:
    """Submit the Job and follow it (:func:`follow_job`). A Job that fails to start or is
    interrupted is deleted; a finished one stays until its ``ttlSecondsAfterFinished``."""
    api = api or load_client()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    submit_job(manifest, api)
    try:
        return follow_job(namespace, name, output=output, api=api,
                          start_timeout=start_timeout, poll=poll)
    except BaseException:
        delete_job(namespace, name, api)
        raise
