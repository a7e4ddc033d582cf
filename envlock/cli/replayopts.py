"""The options of ``replay`` and ``verify``, declared once, against the replay's spec.

Every container option sets the :class:`envlock.model.replayspec.ReplaySpec` field of its
name (through :class:`~envlock.model.replayspec.ContainerFlags`) and has a
``[tool.envlock]`` key of the same name (:data:`envlock.config.KEYS`): a flag wins over
the config, the config over the lock or the built-in default.
:func:`replay_options` adds them, and the comparison options, to a command, so both
commands take exactly the same set; a unit test checks every field has its flag in both
and its config key. Options are grouped in help panels: container, comparison, output,
Kubernetes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from envlock.model.replayspec import ContainerFlags
    from envlock.operations.replayplan import ReplayRequest

CONTAINER = r"Container (flag > \[tool.envlock] > lock/default)"
COMPARISON = "Comparison"
OUTPUT = "Output"
KUBERNETES = "Kubernetes"
SLURM = r"Slurm (flag > \[tool.envlock.slurm])"


def _option(flag: str, help: str, panel: str = CONTAINER, kind: Any = str | None) -> Any:
    return Annotated[kind, typer.Option(flag, help=help, rich_help_panel=panel,
                                        show_default=False)]


#: ReplaySpec field -> its option (the parameter has the field's name).
CONTAINER_OPTIONS: Mapping[str, Any] = {
    "network": _option("--network", "Container network: none (the default: no network; the "
                       "hostname still resolves, to 127.0.0.1), bridge, host or a network's "
                       "name. Kubernetes: pods have the cluster's network."),
    "env": _option("--env", "K=V for the container (repeatable; replaces the config's "
                   "env).", kind=list[str] | None),
    "mounts": _option("--mount", "SRC:DST bind mount, SRC:DST:ro read-only (repeatable; "
                      "local only).", kind=list[str] | None),
    "command": _option("--command", "Run this instead of the captured command."),
    "shm_size": _option("--shm-size", "Size of the container's /dev/shm (64m, 2g, bytes). "
                        "Default: as large as on the original host (PyTorch DataLoader "
                        "workers pass batches through it), else this host's."),
    "cpus": _option("--cpus", "Limit the container to this many CPUs (4, 1.5), like docker "
                    "run --cpus. When the CPU count differs from the original's, thread "
                    "counts (OMP_NUM_THREADS, …) are set to the original's unless recorded "
                    "or given with --env."),
    "memory": _option("--memory", "Limit the container's memory (16g, 512m, bytes), like "
                      "docker run --memory."),
    "gpus": _option("--gpus", "all | none | N | device=0,1 (default: all when the run had "
                    "GPUs and this host has them). Kubernetes: a number (default: as many as "
                    "the run had)."),
    "timeout": _option("--timeout", "Stop the replay after this long (900, 90s, 30m, 2h): "
                       "the replay run is marked FAILED (verdict 'timed out') and envlock "
                       "exits 124. Default: no limit."),
}

#: The comparison's options: parameter -> option.
COMPARISON_OPTIONS: Mapping[str, Any] = {
    "tolerance": _option("--tolerance", "Metric tolerance: 1e-6 (absolute), 0.5% (relative), "
                         "or abs=…,rel=…. Default: the config's tolerance, else exact "
                         "(per-metric tolerances come from the config).", COMPARISON),
    "metric": _option("--metric", "Compare only these metrics (repeatable; in every run of "
                      "the tree).", COMPARISON, list[str] | None),
    "compare_artifacts": _option("--compare-artifacts", "Also compare every artifact (and "
                                 "logged model file) of every run by sha256: identical / "
                                 "differs / missing; any but identical fails.", COMPARISON,
                                 bool),
    "strict": _option("--strict", "Gate on every metric, also those that measure time, "
                      "throughput or the machine (shown but not gated by default).",
                      COMPARISON, bool),
    "repeat": _option("--repeat", "Replay N times and tell noise from drift: "
                      "deterministic (replays equal), nondeterministic (replays differ among "
                      "themselves: each metric's spread, and it passes when the original lies "
                      "within it) or drift (replays agree with each other, not with the "
                      "original). Default 1. Local replays only.", COMPARISON, int | None),
    "allow_changed_inputs": _option("--allow-changed-inputs", "Replay although referenced "
                                    "inputs on this host differ from the run's or are "
                                    "missing (exit 2 before running otherwise); the "
                                    "verdict names them first.", COMPARISON, bool),
}


#: The true/false options (default False).
_FLAGS = ("compare_artifacts", "strict", "allow_changed_inputs")


@dataclass(frozen=True)
class ReplayFlags:
    """What :func:`replay_options` parsed: the container and the comparison options."""

    values: Mapping[str, Any]

    @property
    def repeat(self) -> int:
        """--repeat: how many replays (1 unless given)."""
        from envlock.operations.repeat import check_repeat

        given = self.values.get("repeat")
        return 1 if given is None else check_repeat(int(given))

    @property
    def container(self) -> ContainerFlags:
        from envlock.model.replayspec import ContainerFlags

        given: dict[str, Any] = {name: tuple(value) if isinstance(value, list) else value
                                 for name, value in self.values.items()
                                 if name in CONTAINER_OPTIONS}
        return ContainerFlags(**given)

    def request(self, run_id: str, *, track: bool = True, force: bool = False
                ) -> ReplayRequest:
        from envlock.operations.replayplan import ReplayRequest

        return ReplayRequest(run_id=run_id, container=self.container,
                             tolerance=self.values["tolerance"],
                             metrics=tuple(self.values["metric"] or ()),
                             compare_artifacts=bool(self.values["compare_artifacts"]),
                             strict=bool(self.values["strict"]), track=track, force=force,
                             allow_changed_inputs=bool(self.values["allow_changed_inputs"]))


def replay_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` every container and comparison option; it receives them as one
    ``flags: ReplayFlags`` argument."""
    keyword = inspect.Parameter.KEYWORD_ONLY  # typer passes every value by name
    added = [inspect.Parameter(name, keyword, annotation=annotation,
                               default=False if name in _FLAGS else None)
             for name, annotation in {**CONTAINER_OPTIONS, **COMPARISON_OPTIONS}.items()]
    parameters = []  # the options in place of ``flags``: their panels come first in --help
    for own in inspect.signature(command, eval_str=True).parameters.values():
        parameters += added if own.name == "flags" else [own.replace(kind=keyword)]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        names = {**CONTAINER_OPTIONS, **COMPARISON_OPTIONS}
        flags = ReplayFlags({name: kwargs.pop(name) for name in names})
        command(flags=flags, **kwargs)

    with_options.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options


# ------------------------------------------------------------------ where a replay runs

class Target(str, Enum):
    local = "local"
    kubernetes = "kubernetes"
    slurm = "slurm"


TOLERATION_HELP = ("Tolerate a node taint (repeatable): KEY=VALUE:EFFECT, KEY:EFFECT (any "
                   "value) or KEY:Exists (any value and effect); EFFECT is NoSchedule, "
                   "PreferNoSchedule or NoExecute.")

OnOpt = Annotated[Target, typer.Option(
    "--on", help="Where to run it: this host's engine, Jobs on the current Kubernetes "
    "cluster, or batch jobs on the Slurm cluster this machine submits to.",
    rich_help_panel=KUBERNETES)]
NamespaceOpt = Annotated[str, typer.Option("--namespace", help="The Jobs' namespace.",
                                           rich_help_panel=KUBERNETES)]
NodeSelectorOpt = Annotated[list[str] | None, typer.Option(
    "--node-selector", help="KEY=VALUE node label the pod must land on (repeatable).",
    rich_help_panel=KUBERNETES)]
TolerationOpt = Annotated[list[str] | None, typer.Option(
    "--toleration", help=TOLERATION_HELP, rich_help_panel=KUBERNETES)]
ImagePullSecretOpt = Annotated[str | None, typer.Option(
    "--image-pull-secret", help="Secret with the registry credentials.",
    rich_help_panel=KUBERNETES)]
EnvFromSecretOpt = Annotated[list[str] | None, typer.Option(
    "--env-from-secret", help="A Secret whose keys become environment variables (tokens, "
    "passwords; repeatable).", rich_help_panel=KUBERNETES)]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the Job as YAML (Slurm: the "
                                         "batch script); create and submit nothing.",
                                         rich_help_panel=KUBERNETES)]
PartitionOpt = Annotated[str | None, typer.Option(
    "--partition", help="The Slurm partition to submit to.", rich_help_panel=SLURM)]
AccountOpt = Annotated[str | None, typer.Option(
    "--account", help="The Slurm account to charge.", rich_help_panel=SLURM)]
TimeLimitOpt = Annotated[str | None, typer.Option(
    "--time-limit", help="The job's Slurm time limit (30, 2:00:00, 1-00:00:00). Default: "
    "--timeout plus 10 minutes, else the partition's.", rich_help_panel=SLURM)]
RuntimeOpt = Annotated[str | None, typer.Option(
    "--runtime", help="The container runtime on the nodes: podman (the default) or "
    "charliecloud.", rich_help_panel=SLURM)]
SbatchOpt = Annotated[list[str] | None, typer.Option(
    "--sbatch-option", help="Another sbatch option, --name=value (repeatable; replaces the "
    "config's).", rich_help_panel=SLURM)]


@dataclass(frozen=True)
class SlurmFlags:
    """The Slurm options as given (None: not given; the config's then)."""

    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None
    runtime: str | None = None
    sbatch_options: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value not in (None, ())}

    def flags(self) -> dict[str, Any]:
        return {"--partition": self.partition, "--account": self.account,
                "--time-limit": self.time_limit, "--runtime": self.runtime,
                "--sbatch-option": self.sbatch_options}


#: SlurmFlags field -> its option (the parameter has the field's name).
SLURM_OPTIONS: Mapping[str, Any] = {"partition": PartitionOpt, "account": AccountOpt,
                                    "time_limit": TimeLimitOpt, "runtime": RuntimeOpt,
                                    "sbatch_options": SbatchOpt}


def slurm_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the Slurm options, received as one ``slurm: SlurmFlags`` argument
    (placed where ``slurm`` is in its signature)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [inspect.Parameter(name, keyword, annotation=annotation, default=None)
             for name, annotation in SLURM_OPTIONS.items()]
    parameters = []
    for own in inspect.signature(command, eval_str=True).parameters.values():
        parameters += added if own.name == "slurm" else [own.replace(kind=keyword)]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in SLURM_OPTIONS}
        given["sbatch_options"] = tuple(given["sbatch_options"] or ())
        command(slurm=SlurmFlags(**given), **kwargs)

    with_options.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options


def only_with(on: Target, flags: Mapping[str, Any], only: str | None = None) -> None:
    """Refuse the options given that work only with the other target (``only``)."""
    from envlock.errors import UsageError

    other = only or ("local" if on is Target.kubernetes else "kubernetes")
    for flag, given in flags.items():
        if given:
            raise UsageError(f"{flag} works only with --on {other}",
                             f"drop it, or replay with --on {other}")
