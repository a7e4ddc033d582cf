"""Slurm's own commands — ``sbatch``, ``scontrol``/``squeue``/``sacct``, ``scancel`` —
through the project's subprocess wrapper (:mod:`envlock.adapters.proc`), with Slurm's
refusals translated into one-line errors. Never ssh to a node: what runs there is the
batch script (:mod:`envlock.model.slurmjob`).

Job states come from ``scontrol show job`` (the controller keeps a job for ``MinJobAge``
after it ends, and it works without accounting) and, for a job it no longer knows, from
``sacct`` (the accounting database).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence

from envlock.errors import EnvlockError
from envlock.model.slurmjob import JobState, job_state, parse_scontrol

COMMAND_TIMEOUT = 60.0
_REFUSALS = (  # what sbatch says -> what to do
    ("partition", "pick a partition that exists and that you may use: `sinfo -s` lists them "
     "(--partition or [tool.envlock] slurm.partition)"),
    ("account", "pick an account you belong to: `sacctmgr show assoc user=$USER` lists them "
     "(--account or [tool.envlock] slurm.account)"),
    ("time limit", "lower --time-limit to the partition's MaxTime (`sinfo -o '%P %l'`)"),
    ("gres", "the partition has no such GPUs: pick a GPU partition (--partition)"),
    ("qos", "pick a QOS you may use (`sacctmgr show assoc user=$USER format=qos`)"),
)


class SlurmError(EnvlockError):
    """Slurm is not there, refused a request, or a job could not run."""


def _command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"no `{name}` on PATH: this machine is not a Slurm login node",
                         "run envlock where Slurm's commands are (a login node), or install "
                         "slurm-client and set SLURM_CONF to the cluster's slurm.conf")
    return path


def _run(name: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str, str]:
    from envlock.adapters import proc

    try:
        result = proc.run([_command(name), *args], timeout=timeout)
    except OSError as exc:
        raise SlurmError(f"`{name}` could not be run: {exc.strerror or exc}") from exc
    return (result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"))


def submit(script: str, array: Sequence[int] | None = None) -> str:
    """``sbatch --parsable SCRIPT`` (``--array`` overriding the script's, to resubmit some
    tasks); the job id."""
    args = ["--parsable", *([f"--array={','.join(map(str, sorted(array)))}"] if array else []),
            script]
    code, out, err = _run("sbatch", *args)
    if code != 0:
        raise refused(err)
    job = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out.strip() or err.strip()}")
    return job


def refused(stderr: str) -> SlurmError:
    """sbatch's refusal as one line, with what to do."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = re.sub(r"^sbatch: error: (Batch job submission failed: )?", "",
                     lines[-1] if lines else "no message")
    hint = next((hint for word, hint in _REFUSALS if word in message.lower()),
                "see sbatch's message; --dry-run prints the job script")
    return SlurmError(f"Slurm refused the job: {message}", hint)


def states(job: str) -> dict[int, JobState]:
    """Each task of ``job`` (index 0 for a job that is no array) as Slurm reports it now;
    empty when Slurm knows no such job."""
    code, out, err = _run("scontrol", "show", "job", "-o", job)
    if code == 0 and out.strip():
        return _from_scontrol(out)
    if "invalid job id" not in (out + err).lower():
        raise SlurmError(f"scontrol could not read job {job}: {(err or out).strip()}",
                         "is slurmctld up? (`scontrol ping`)")
    return _from_sacct(job)


def _from_scontrol(text: str) -> dict[int, JobState]:
    found: dict[int, JobState] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        row = parse_scontrol(line)
        state = job_state(row.get("JobState", ""), row.get("Reason", ""),
                          row.get("ExitCode", ""), row.get("NodeList", row.get("BatchHost", "")),
                          row.get("Partition", ""))
        for index in _indices(row.get("ArrayTaskId", "0")):
            found[index] = state
    return found


def _indices(text: str) -> list[int]:
    """``3``, ``0-4%2``, ``1,3,5-6`` -> the task indices."""
    out: list[int] = []
    for part in text.split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            out += range(int(low), int(high or low) + 1) if (high or low).isdigit() else []
    return out


def _from_sacct(job: str) -> dict[int, JobState]:
    if shutil.which("sacct") is None:
        return {}
    code, out, _err = _run("sacct", "-n", "-P", "-X", "-j", job,
                           "-o", "JobID,State,Reason,ExitCode,NodeList,Partition")
    if code != 0:
        return {}
    found: dict[int, JobState] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        index = parts[0].partition("_")[2]
        state = job_state(parts[1], parts[2], parts[3], parts[4], parts[5])
        for i in _indices(index.strip("[]") or "0"):
            found[i] = state
    return found


def cancel(job: str) -> None:
    """``scancel JOB`` (every task of an array); quiet when it has ended already."""
    _run("scancel", job, timeout=30)


def queued(job: str) -> bool:
    """Whether any task of ``job`` is still pending or running."""
    code, out, _err = _run("squeue", "-h", "-j", job, "-o", "%T", timeout=30)
    return code == 0 and any(line.strip() for line in out.splitlines())
