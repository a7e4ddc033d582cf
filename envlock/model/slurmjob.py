"""Pure: replays as a Slurm batch script, and what Slurm's job states mean for a replay.

:func:`batch_script` renders one ``sbatch`` script from the frozen
:class:`~envlock.model.replayspec.ReplaySpec` of each replay (one task, or a job array of
several for a sweep) for Podman (the image pulled by digest, then ``podman run`` with the
hardening, resources, environment, mounts, network and timeout a local replay has) or
Charliecloud (``ch-image pull`` / ``ch-run``, hardened alike). Every value from a user, a run
or the config reaches the shell through :func:`shlex.quote`; the ``#SBATCH`` lines (which no
shell reads) take only values checked against a strict pattern. GPUs are asked for through
GRES and the driver pre-flight runs inside the job, on the allocated node.

Each task writes into its own folder on the shared filesystem: ``output.log`` (everything
it prints), ``status`` (one line: ``exit N``, ``timeout``, ``pull-failed …`` or
``preflight-failed …``), ``node`` and the private MLflow file store the experiment logs to,
which envlock relays into the replay run afterwards, as for a local replay.
:func:`job_state` and :func:`outcome` map Slurm's job states (``squeue``, ``scontrol``,
``sacct``) and that status line to what happened. Tested without Slurm; the commands are
:mod:`envlock.adapters.slurm`, the replay :mod:`envlock.operations.slurm`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envlock.errors import UsageError
from envlock.model.replayspec import LOOPBACK, ReplaySpec

RUNTIMES = ("podman", "charliecloud")
STORE_MOUNT = "/envlock/mlruns"  # where the task's store is mounted (as a local replay's)
JOB_NAME = "envlock-replay"
#: Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, UNLIMITED
_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}\Z|UNLIMITED\Z|INFINITE\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+@/-]*\Z")  # partitions, accounts
_SBATCH_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=/@%+-]+)?\Z")
#: sbatch options envlock sets itself: given again, they would change the job under it
_OWN_OPTIONS = ("--array", "--output", "--error", "--job-name", "--parsable", "--wrap",
                "--chdir", "--export", "--input")


@dataclass(frozen=True)
class SlurmSettings:
    """The ``slurm`` table of ``[tool.envlock]`` with the flags over it, checked."""

    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None  # Slurm's format; None: from --timeout, else the partition's
    runtime: str = "podman"
    sbatch_options: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()  # pulled without TLS (loopback ones always)
    job_dir: str | None = None  # on the filesystem the nodes share; None: ~/.cache/envlock/slurm
    pending_limit: float | None = None  # seconds a job may wait in the queue; None: no limit
    gpu_option: str = "gres"  # gres: --gres=gpu:N; gpus: --gpus=N


@dataclass(frozen=True)
class Task:
    """One replay of a job: its spec and what only the job knows about it."""

    replay: ReplaySpec
    task_dir: str  # on the shared filesystem
    min_driver: str | None = None  # the lock's CUDA needs at least this driver (GPU tasks)


@dataclass(frozen=True)
class SlurmJob:
    """A job of one or more replay tasks (more: a job array, ``concurrency`` at a time)."""

    tasks: tuple[Task, ...]
    settings: SlurmSettings = field(default_factory=SlurmSettings)
    job_dir: str = "."
    concurrency: int | None = None  # the array's %N


# ------------------------------------------------------------------ settings

def parse_settings(table: Mapping[str, Any], where: str = "slurm") -> SlurmSettings:
    """The config's ``slurm`` table (or the flags as one), checked; unknown keys refused."""
    known = {f.replace("_", "-"): f for f in SlurmSettings.__dataclass_fields__}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = known.get(str(key), str(key))
        if name not in SlurmSettings.__dataclass_fields__:
            raise UsageError(f"{where}: unknown Slurm setting {key!r}",
                             f"known: {', '.join(SlurmSettings.__dataclass_fields__)}")
        if value is not None:
            values[name] = _setting(name, value, where)
    return check_settings(SlurmSettings(**values))


def _setting(name: str, value: Any, where: str) -> Any:
    if name in ("sbatch_options", "insecure_registries"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise UsageError(f"{where}: {name} must be a list of strings")
        return tuple(items)
    if name == "pending_limit":
        from envlock.model.replayspec import parse_timeout

        return parse_timeout(str(value))
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{where}: {name} must be a string")
    return str(value)


def check_settings(settings: SlurmSettings) -> SlurmSettings:
    """Refuse what cannot be an sbatch option (the ``#SBATCH`` lines are not quoted)."""
    for flag, value in (("--partition", settings.partition), ("--account", settings.account)):
        if value is not None and not _NAME.match(value):
            raise UsageError(f"{flag} {value!r} is not a Slurm name",
                             "letters, digits and _.:+@/- only")
    if settings.time_limit is not None and not _TIME.match(settings.time_limit):
        raise UsageError(f"--time-limit {settings.time_limit!r} is not a Slurm time",
                         "minutes, MM:SS, HH:MM:SS or D-HH:MM:SS, e.g. 30 or 2:00:00")
    if settings.runtime not in RUNTIMES:
        raise UsageError(f"--runtime {settings.runtime!r} is not known",
                         f"use one of {', '.join(RUNTIMES)}")
    if settings.gpu_option not in ("gres", "gpus"):
        raise UsageError(f"slurm gpu_option {settings.gpu_option!r} is not gres or gpus")
    for option in settings.sbatch_options:
        if not _SBATCH_OPTION.match(option):
            raise UsageError(f"sbatch option {option!r} is not understood",
                             "write --name or --name=value, no spaces or quotes, e.g. "
                             "--qos=high")
        if option.partition("=")[0] in _OWN_OPTIONS:
            raise UsageError(f"sbatch option {option!r} is one envlock sets itself",
                             "drop it")
    return settings


def is_insecure(image: str, settings: SlurmSettings) -> bool:
    """Whether the image's registry is pulled from without TLS: loopback ones (a registry
    on the node itself) and those the config marks."""
    host = image.split("/", 1)[0] if "/" in image else ""
    if host in settings.insecure_registries:
        return True
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or "]" in host else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def min_driver(locked: Mapping[str, Any]) -> str | None:
    """The oldest NVIDIA driver the lock's CUDA build runs on (None: no CUDA recorded)."""
    from envlock.model.compat import major_minor, table

    torch = (locked.get("frameworks") or {}).get("torch") or {}
    cuda = torch.get("cuda")
    if not cuda:
        return None
    data = table()
    floor = data["minor_version_floor"].get(str(cuda).split(".")[0]) or \
        data["min_driver"].get(major_minor(str(cuda)))
    return str(floor) if floor else None


# ------------------------------------------------------------------ the script

def gpu_count(spec: ReplaySpec) -> int:
    request = spec.gpus
    if request is None:
        return 0
    if request.ids is not None or request.count is None or request.count < 0:
        raise UsageError("--gpus all or device=… does not work with --on slurm",
                         "ask for a number of GPUs, e.g. --gpus 1 (Slurm picks the devices)")
    return request.count


def sbatch_options(job: SlurmJob) -> list[str]:
    """The job's sbatch options: checked names only (they become ``#SBATCH`` lines)."""
    settings = job.settings
    options = [f"--job-name={JOB_NAME}", f"--output={_sbatch_path(job.job_dir)}/slurm-%j.out",
               "--no-requeue"]
    for flag, value in (("partition", settings.partition), ("account", settings.account),
                        ("time", settings.time_limit or _time_from(job))):
        if value:
            options.append(f"--{flag}={value}")
    cpus = max((t.replay.cpus or 0 for t in job.tasks), default=0)
    if cpus:
        options.append(f"--cpus-per-task={math.ceil(cpus)}")
    memory = max((t.replay.memory or 0 for t in job.tasks), default=0)
    if memory:
        options.append(f"--mem={math.ceil(memory / (1 << 20))}M")
    gpus = max(gpu_count(t.replay) for t in job.tasks)
    if gpus:
        options.append(f"--gres=gpu:{gpus}" if settings.gpu_option == "gres" else f"--gpus={gpus}")
    if len(job.tasks) > 1:
        limit = f"%{job.concurrency}" if job.concurrency else ""
        options.append(f"--array=0-{len(job.tasks) - 1}{limit}")
    return [*options, *settings.sbatch_options]


def _sbatch_path(path: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9_.,:@%+/-]*", path):
        raise UsageError(f"the Slurm job folder {path!r} must be an absolute path of letters, "
                         "digits and _.,:@%+/- (sbatch reads it unquoted)",
                         "set [tool.envlock] slurm.job_dir (or --slurm-dir) to such a path")
    return path


def _time_from(job: SlurmJob) -> str | None:
    """Without a time limit: the longest --timeout plus 10 minutes for the image's pull."""
    timeouts = [t.replay.timeout for t in job.tasks]
    if not timeouts or any(t is None for t in timeouts):
        return None
    return str(math.ceil(max(t or 0 for t in timeouts) / 60) + 10)


def batch_script(job: SlurmJob) -> str:
    """The sbatch script of ``job`` (what ``--dry-run`` prints)."""
    if not job.tasks:
        raise UsageError("a Slurm job needs at least one replay")
    header = [f"#SBATCH {option}" for option in sbatch_options(job)]
    cases = "\n".join(_case(index, task, job.settings) for index, task in enumerate(job.tasks))
    return (f"#!/bin/bash\n# envlock replay job (generated: every value is quoted)\n"
            f"{chr(10).join(header)}\n{_PRELUDE}"
            f'case "${{SLURM_ARRAY_TASK_ID:-0}}" in\n{cases}\n'
            f'  *) echo "envlock: no task ${{SLURM_ARRAY_TASK_ID:-0}}" >&2; exit 2 ;;\nesac\n'
            f"{_MAIN}")


def _case(index: int, task: Task, settings: SlurmSettings) -> str:
    spec = task.replay
    pull, run = (podman_argv if settings.runtime == "podman" else charliecloud_argv)(
        spec, task.task_dir, settings)
    values = {"TASK_DIR": shlex.quote(task.task_dir), "TIMEOUT": str(math.ceil(spec.timeout or 0)),
              "GPUS": str(gpu_count(spec)), "MIN_DRIVER": shlex.quote(task.min_driver or ""),
              "IMAGE": shlex.quote(spec.image), "RUNTIME": shlex.quote(settings.runtime),
              "WORKDIR": shlex.quote(spec.workdir),
              "CH_NAME": shlex.quote(charliecloud_name(spec.image))}
    lines = [f"    {name}={value}" for name, value in values.items()]
    lines += [f"    PULL=({shlex.join(pull)})", f"    RUN=({shlex.join(run)})"]
    if settings.runtime == "charliecloud":  # ch-run binds only onto folders the image has
        lines.append(f"    POINTS=({shlex.join([STORE_MOUNT, *(m.target for m in spec.mounts)])})")
    return f"  {index})\n" + "\n".join(lines) + "\n    ;;"


def _env(spec: ReplaySpec) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"file://{STORE_MOUNT}/store",
            "MLFLOW_ALLOW_FILE_STORE": "true", **spec.env}


def podman_argv(spec: ReplaySpec, task_dir: str, settings: SlurmSettings
                ) -> tuple[list[str], list[str]]:
    """``podman pull`` and ``podman run`` of ``spec``: the same container as
    :func:`envlock.model.replayspec.docker_args` describes to Docker."""
    tls = ["--tls-verify=false"] if is_insecure(spec.image, settings) else []
    hard = spec.hardening
    run = ["podman", "run", "--rm", "--pull=never",  # the job adds --name (its job id)
           f"--user={spec.user}:{spec.user}", f"--workdir={spec.workdir}",
           *(["--security-opt=no-new-privileges"] if hard.no_new_privileges else []),
           *(f"--cap-drop={cap}" for cap in hard.drop_capabilities),
           *(["--read-only"] if hard.read_only_root else []),
           *(f"--tmpfs={path}:{options}" for path, options in hard.tmpfs),
           f"--volume={spec.workdir}",  # the workspace: an anonymous volume filled from the image
           f"--volume={task_dir}/mlruns:{STORE_MOUNT}",
           *(f"--volume={m.source}:{m.target}{':ro' if m.read_only else ''}"
             for m in spec.mounts),
           *(f"--volume={m.source}:{m.target}:ro"  # the run's pinned inputs
             for m in sorted(spec.inputs, key=lambda m: m.target)),
           f"--network={spec.network}"]
    if spec.sets_hostname:
        run += [f"--hostname={spec.hostname}", f"--add-host={spec.hostname}:{LOOPBACK}"]
    limits = {"--shm-size": spec.shm_size and f"{spec.shm_size}b",
              "--cpus": spec.cpus and f"{spec.cpus:g}",
              "--memory": spec.memory and f"{spec.memory}b",
              "--timeout": spec.timeout and str(math.ceil(spec.timeout))}
    run += [f"{flag}={value}" for flag, value in limits.items() if value]
    if gpu_count(spec):
        run.append("--device=nvidia.com/gpu=all")  # CDI: the GPUs Slurm allocated
    run += [f"--env={key}={value}" for key, value in _env(spec).items()]
    run += [spec.image, *(spec.argv or [])]
    return ["podman", "pull", "--quiet", *tls, spec.image], run


def charliecloud_argv(spec: ReplaySpec, task_dir: str, settings: SlurmSettings
                      ) -> tuple[list[str], list[str]]:
    """``ch-image pull`` and ``ch-run`` of ``spec``, hardened as a Podman replay is.

    ch-run is unprivileged (a user namespace; as ``--uid``/``--gid`` of the spec's user no
    capabilities, and it sets no-new-privileges itself), the image read-only (the storage's
    copy is shared by every job), a private ``/tmp``, only the image's and the spec's
    environment (``--unset-env='*'``, then ``--set-env`` of the image's, values taken
    literally), the workspace a writable copy of the image's (as Podman's anonymous volume),
    no network under ``--network none`` (``unshare --net`` in a user namespace of its own),
    and ``--timeout`` through ``timeout``. CPUs and memory are the job's (Slurm's cgroup).
    Charliecloud 0.31 (Debian 12) talks HTTPS to registries only; for a loopback or listed
    registry the certificate goes unchecked, with the CA-bundle variables that would
    otherwise override ``--tls-no-verify`` in its HTTP library dropped."""
    if spec.network not in ("none", "host"):
        raise UsageError(f"--network {spec.network} does not work with Charliecloud",
                         "Charliecloud containers share the node's network or have none: "
                         "use --network none or host, or the podman runtime")
    if not spec.argv:
        raise UsageError("Charliecloud runs no image CMD: the replay needs its command",
                         "pass --command")
    if spec.inputs or any(m.read_only for m in spec.mounts):
        raise UsageError("Charliecloud 0.31 binds folders read-write only: the run's pinned "
                         "inputs and read-only mounts would not be read-only",
                         "use the podman runtime (--runtime podman)")
    pull = ["ch-image", "--no-cache", "pull", spec.image, charliecloud_name(spec.image)]
    if is_insecure(spec.image, settings):
        pull = ["env", "-u", "REQUESTS_CA_BUNDLE", "-u", "CURL_CA_BUNDLE",
                *pull[:2], "--tls-no-verify", *pull[2:]]
    run = [*(["timeout", "--kill-after=10", str(math.ceil(spec.timeout))] if spec.timeout
             else []),
           *(["unshare", "--user", "--map-current-user", "--net"] if spec.network == "none"
             else []),
           "ch-run", f"--uid={spec.user}", f"--gid={spec.user}", "--private-tmp",
           "--unset-env=*", "--set-env", "--env-no-expand", f"--cd={spec.workdir}",
           f"--bind={task_dir}/work:{spec.workdir}",
           f"--bind={task_dir}/mlruns:{STORE_MOUNT}",
           *(f"--bind={m.source}:{m.target}" for m in spec.mounts),
           *(f"--set-env={key}={value}" for key, value in _env(spec).items()),
           charliecloud_name(spec.image), "--", *spec.argv]
    return pull, run


def charliecloud_name(image: str) -> str:
    """The image's name in Charliecloud's storage: one per digest, shared by jobs."""
    return "envlock-" + image.rpartition("@sha256:")[2][:16]


# Fixed shell (no value from anywhere): the task's folder, the pre-flight on the node, the
# pull, the container (stopped and removed when Slurm cancels the job), the status line.
_PRELUDE = r"""set -u
TASK="${SLURM_ARRAY_TASK_ID:-0}"
export USER="${USER:-$(id -un)}"  # Charliecloud's tools need it
"""
_MAIN = r"""mkdir -p "$TASK_DIR" && rm -rf "$TASK_DIR/mlruns" && mkdir -m 777 "$TASK_DIR/mlruns"
chmod 777 "$TASK_DIR/mlruns"; rm -f "$TASK_DIR/status"
exec >"$TASK_DIR/output.log" 2>&1
hostname -s >"$TASK_DIR/node"
status() { echo "$*" >"$TASK_DIR/status"; }
echo "envlock: job ${SLURM_JOB_ID} task $TASK on $(hostname -s)," \
  "partition ${SLURM_JOB_PARTITION:-?}"
if [ "$GPUS" -gt 0 ]; then
  if ! driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | head -1) \
      || [ -z "$driver" ]; then
    status "preflight-failed: node $(hostname -s) has no working NVIDIA driver ($driver)"; exit 3
  fi
  have=$(nvidia-smi -L | grep -c '^GPU')
  if [ "$have" -lt "$GPUS" ]; then
    status "preflight-failed: node $(hostname -s) shows $have GPU(s), $GPUS asked for"; exit 3
  fi
  if [ -n "$MIN_DRIVER" ] && ! printf '%s\n%s\n' "$MIN_DRIVER" "$driver" | sort -V -C; then
    status "preflight-failed: driver $driver on $(hostname -s) is older than $MIN_DRIVER"; exit 3
  fi
  nvidia-smi --query-gpu=index,name,driver_version,compute_cap --format=csv,noheader \
    >"$TASK_DIR/gpus.csv" 2>/dev/null || true
fi
pull() { "${PULL[@]}"; }
if [ "$RUNTIME" = charliecloud ]; then
  # One pull at a time per storage (ch-image locks it), and an image pulled whole is not
  # pulled again: its name is its digest, and another task may be running on it.
  storage="${CH_IMAGE_STORAGE:-/var/tmp/$USER.ch}"
  mkdir -p "$storage.envlock"
  pull() {
    flock 9 || return
    [ -e "$storage.envlock/$CH_NAME" ] && [ -d "$storage/img/$CH_NAME" ] && return 0
    "${PULL[@]}" && touch "$storage.envlock/$CH_NAME"
  } 9>"$storage.envlock/lock"
fi
if ! out=$(pull 2>&1); then
  status "pull-failed: $(echo "$out" | tail -1)"; echo "$out"; exit 3
fi
if [ "$RUNTIME" = charliecloud ]; then
  # the mount points (empty folders in the storage's copy, as Podman makes them), and the
  # workspace: a writable copy of the image's (the image itself stays read-only)
  img="$storage/img/$CH_NAME"
  rm -rf "$TASK_DIR/work"
  cp -a "$img$WORKDIR" "$TASK_DIR/work" 2>/dev/null || mkdir -p "$TASK_DIR/work"
  for point in "${POINTS[@]}"; do
    case "$point/" in
      "$WORKDIR"/*) mkdir -p "$TASK_DIR/work${point#"$WORKDIR"}" ;;
      *) mkdir -p "$img$point" ;;
    esac
  done
  chmod -R a+rwX "$TASK_DIR/work"
fi
container="envlock-${SLURM_JOB_ID}-$TASK"
stop() {
  # at once: Slurm sends SIGKILL KillWait seconds after this SIGTERM
  [ "$RUNTIME" = podman ] && podman rm --force --volumes --time 0 "$container" >/dev/null 2>&1
  [ -n "${child:-}" ] && kill "$child" 2>/dev/null
  status "cancelled"; exit 143
}
trap stop TERM INT
start=$SECONDS
if [ "$RUNTIME" = podman ]; then
  "${RUN[@]:0:2}" "--name=$container" "${RUN[@]:2}" & child=$!
else
  "${RUN[@]}" & child=$!
fi
wait "$child"; code=$?; child=
if [ "$TIMEOUT" -gt 0 ] && [ "$code" -ne 0 ] && [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
  status "timeout"
else
  status "exit $code"
fi
exit "$code"
"""


# ------------------------------------------------------------------ job states

#: Slurm states where the task never got to a verdict for a reason of the cluster's.
CLUSTER_FAILURES = {"PREEMPTED": "preempted", "NODE_FAIL": "node failure",
                    "BOOT_FAIL": "node failure (boot)", "TIMEOUT": "time limit",
                    "DEADLINE": "deadline", "REVOKED": "revoked"}
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
            "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "SPECIAL_EXIT"}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "UPDATE_DB"}
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY"}


@dataclass(frozen=True)
class JobState:
    """A job (or array task) as Slurm reports it."""

    state: str  # Slurm's word: PENDING, RUNNING, COMPLETED, TIMEOUT, …
    reason: str = ""  # Slurm's reason (why pending, why ended)
    exit_code: int | None = None
    node: str = ""
    partition: str = ""

    @property
    def phase(self) -> str:
        """pending | running | ended | cluster failure"""
        if self.state in CLUSTER_FAILURES:
            return "cluster failure"
        if self.state in _PENDING:
            return "pending"
        if self.state in _RUNNING:
            return "running"
        return "ended"

    @property
    def reason_text(self) -> str:
        word = CLUSTER_FAILURES.get(self.state, self.state.lower())
        reason = self.reason if self.reason not in ("", "None", "(null)") else ""
        return f"{word} ({reason})" if reason else word


def job_state(state: str, reason: str = "", exit_code: str = "", node: str = "",
              partition: str = "") -> JobState:
    """One row of ``squeue``/``scontrol``/``sacct`` as a :class:`JobState`: the state's
    first word (``CANCELLED by 0``), the exit code of ``N:SIGNAL``."""
    word = (state.split() or ["UNKNOWN"])[0].rstrip("+").upper()
    code, _, signal = exit_code.partition(":")
    number = int(code) if code.strip().isdigit() else None
    if number == 0 and signal.strip().isdigit() and int(signal):
        number = 128 + int(signal)
    node = "" if node in ("(null)", "None", "None assigned") else node
    return JobState(word, reason.strip(), number, node, partition)


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show job -o`` (one line of KEY=VALUE; values without spaces but for
    the last few) as a mapping."""
    fields_: dict[str, str] = {}
    for match in re.finditer(r"(\w[\w/:]*)=(.*?)(?=\s\w[\w/:]*=|$)", text.strip()):
        fields_.setdefault(match.group(1), match.group(2))
    return fields_


@dataclass(frozen=True)
class Outcome:
    """What one task came to: its experiment's exit code, or why it has none."""

    kind: str  # exit | timeout | cluster failure | pull failed | preflight failed | cancelled
    exit_code: int | None = None
    detail: str = ""

    @property
    def retryable(self) -> bool:
        """Cluster failures (and a task stopped by its time limit) are retried once."""
        return self.kind in ("cluster failure", "timeout")


def outcome(state: JobState, status: str | None) -> Outcome:
    """The task's outcome from its final Slurm state and its status line (None: it wrote
    none: it never started, or Slurm killed it first)."""
    line = (status or "").strip()
    if state.phase == "cluster failure":
        return Outcome("cluster failure", None, state.reason_text)
    if line.startswith("exit "):
        return Outcome("exit", int(line.split()[1]), state.reason_text)
    if line == "timeout":
        return Outcome("timeout", 124, "its --timeout")
    if line.startswith("pull-failed"):
        return Outcome("pull failed", None, line.partition(": ")[2])
    if line.startswith("preflight-failed"):
        return Outcome("preflight failed", None, line.partition(": ")[2])
    if line == "cancelled" or state.state == "CANCELLED":
        return Outcome("cancelled", None, state.reason_text)
    if state.state == "OUT_OF_MEMORY":
        return Outcome("out of memory", None, "the job ran out of its memory (--memory)")
    return Outcome("exit", state.exit_code, state.reason_text or "no status written")


def array_indices(indices: Sequence[int]) -> str:
    """``--array`` of these task indices (``0,3,5``)."""
    return ",".join(str(i) for i in sorted(indices))
