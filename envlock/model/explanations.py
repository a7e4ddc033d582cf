"""Pure: why a replay may not have reproduced — ranked explanations, each with its
evidence, from what was recorded about the original (its lock: the capture host, GPU,
driver, numerics environment, command; its image's labels) and what the replay had (this
host, the container's environment and command, the image that ran), and, with
``--repeat N``, whether the run is nondeterministic.

Each explainer is a function ``Facts -> Iterable[Explanation]`` in :data:`EXPLAINERS`;
the score ranks them (higher: more likely the cause). Changed inputs are the hook for the
inputs the lock records (issue #22): fill ``Facts.inputs`` with (name, original digest,
replay digest) and :func:`changed_inputs` ranks them first; or append an explainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envlock.model import runrecord
from envlock.model.resources import THREAD_VARS

if TYPE_CHECKING:
    from envlock.model.repeat import Repeat


@dataclass(frozen=True)
class Explanation:
    kind: str  # inputs | command | image | env | numerics-env | threads | gpu | driver | …
    score: int  # higher: more likely the cause
    title: str  # one line
    evidence: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "score": self.score, "title": self.title,
                "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Facts:
    """The original's recorded facts beside the replay's."""

    original_host: Mapping[str, Any] | None = None  # the lock's host (capture host)
    replay_host: Mapping[str, Any] | None = None  # this host (snapshot.host)
    original_gpu: Mapping[str, Any] | None = None  # the lock's gpu
    replay_gpu: Mapping[str, Any] | None = None
    recorded_env: Mapping[str, str] = field(default_factory=dict)  # lock runtime.env
    replay_env: Mapping[str, str] = field(default_factory=dict)  # given to the container
    original_command: str | None = None
    replay_command: str | None = None  # --command, when it replaced the captured one
    run_tags: Mapping[str, str] = field(default_factory=dict)  # the original's envlock.*
    image_labels: Mapping[str, str] | None = None  # of the image that ran
    repeat: Repeat | None = None
    #: the names of variables that change numerics (patterns; snapshot.runtime's)
    numerics: tuple[str, ...] = ()
    #: inputs (name, original digest, replay digest): the hook for changed inputs
    inputs: tuple[tuple[str, str | None, str | None], ...] = ()


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def changed_inputs(facts: Facts) -> Iterable[Explanation]:
    changed = [(n, a, b) for n, a, b in facts.inputs if a != b]
    if changed:
        yield Explanation("inputs", 100, f"{len(changed)} input(s) changed since the run",
                          tuple(f"{n}: {a or 'absent'} -> {b or 'absent'}"
                                for n, a, b in changed))


def other_command(facts: Facts) -> Iterable[Explanation]:
    if facts.replay_command and facts.replay_command != facts.original_command:
        yield Explanation("command", 98, "the replay ran another command (--command)",
                          (f"original: {facts.original_command or '-'}",
                           f"replay: {facts.replay_command}"))


def other_image(facts: Facts) -> Iterable[Explanation]:
    labels = facts.image_labels
    if labels is None:
        return
    evidence = [f"{key}: run {facts.run_tags.get(key)}, image {labels.get(key)}"
                for key in (runrecord.ENV_DIGEST, runrecord.LOCK_DIGEST)
                if labels.get(key) and facts.run_tags.get(key)
                and labels.get(key) != facts.run_tags.get(key)]
    if evidence:
        yield Explanation("image", 95, "the image that ran is not the one captured with "
                          "the run", tuple(evidence))


def given_env(facts: Facts) -> Iterable[Explanation]:
    """Variables the replay was given that the original did not have (or had otherwise),
    numerics knobs apart; envlock's own thread pins are :func:`threads`'."""
    numerics = _numerics(facts)
    changed = [(k, facts.recorded_env.get(k), v) for k, v in sorted(facts.replay_env.items())
               if facts.recorded_env.get(k) != v and k not in THREAD_VARS]
    knobs = [c for c in changed if c[0] in numerics]
    others = [c for c in changed if c[0] not in numerics]
    if knobs:
        yield Explanation("numerics-env", 90, "numerics environment variables differ from "
                          "the recorded ones", tuple(_env_line(*c) for c in knobs))
    if others:
        yield Explanation("env", 85, "the replay was given environment variables not "
                          "recorded with the original (--env or the config's env)",
                          tuple(_env_line(*c, unset="not recorded") for c in others))


def _numerics(facts: Facts) -> set[str]:
    from envlock.model.redact import glob_match

    return {k for k in (*facts.replay_env, *facts.recorded_env)
            if any(glob_match(k, p) for p in facts.numerics)}


def _env_line(name: str, original: str | None, replay: str | None,
              unset: str = "unset") -> str:
    return f"{name}: original {original if original is not None else unset}, replay " \
           f"{replay if replay is not None else 'unset'}"


def threads(facts: Facts) -> Iterable[Explanation]:
    cores = (_get(facts.original_host, "cpu.usable_cores"),
             _get(facts.replay_host, "cpu.usable_cores"))
    pinned = [(k, facts.recorded_env.get(k), v) for k, v in sorted(facts.replay_env.items())
              if k in THREAD_VARS and facts.recorded_env.get(k) != v]
    if (None not in cores and cores[0] != cores[1]) or pinned:
        evidence = [f"usable cores: original {cores[0]}, replay {cores[1]}"]
        evidence += [_env_line(*p) for p in pinned]
        yield Explanation("threads", 60, "another CPU count or thread count: reductions "
                          "(BLAS, OpenMP) may sum in another order", tuple(evidence))


def gpu(facts: Facts) -> Iterable[Explanation]:
    if not facts.original_gpu or facts.replay_gpu is None:
        return
    names = [sorted(str(d.get("name")) for d in (g or {}).get("devices") or [])
             for g in (facts.original_gpu, facts.replay_gpu)]
    if names[0] != names[1]:
        yield Explanation("gpu", 80, "another GPU model: kernels and their numerics differ",
                          (f"original: {', '.join(names[0]) or 'none'}",
                           f"replay: {', '.join(names[1]) or 'none'}"))
    evidence = [f"{key}: original {_get(facts.original_gpu, key)}, replay "
                f"{_get(facts.replay_gpu, key)}"
                for key in ("driver_version", "cuda_driver_version")
                if _get(facts.original_gpu, key) and
                _get(facts.original_gpu, key) != _get(facts.replay_gpu, key)]
    if evidence:
        yield Explanation("driver", 55, "another GPU driver", tuple(evidence))


def cpu(facts: Facts) -> Iterable[Explanation]:
    a, b = facts.original_host, facts.replay_host
    if not a or not b:
        return
    isa = (_get(a, "cpu.isa_level"), _get(b, "cpu.isa_level"))
    flags = (set(_get(a, "cpu.flags") or ()), set(_get(b, "cpu.flags") or ()))
    if isa[0] != isa[1] or flags[0] != flags[1]:
        evidence = [f"ISA level: original {isa[0]}, replay {isa[1]}"]
        if flags[0] != flags[1]:
            evidence.append(f"numeric CPU flags only on the original: "
                            f"{', '.join(sorted(flags[0] - flags[1])) or '-'}; only on the "
                            f"replay: {', '.join(sorted(flags[1] - flags[0])) or '-'}")
        yield Explanation("isa", 50, "another CPU instruction set: BLAS and vectorised "
                          "kernels pick other code paths", tuple(evidence))
    models = (_get(a, "cpu.model"), _get(b, "cpu.model"))
    if models[0] and models[1] and models[0] != models[1]:
        yield Explanation("cpu", 30, "another CPU model",
                          (f"original: {models[0]}", f"replay: {models[1]}"))


def nondeterminism(facts: Facts) -> Iterable[Explanation]:
    repeat = facts.repeat
    if repeat is None:
        return
    from envlock.model.repeat import DRIFT, NONDETERMINISTIC

    if repeat.kind == NONDETERMINISTIC:
        noisy = [s for s in repeat.noisy() if s.gated]
        yield Explanation("nondeterminism", 97, f"the run is nondeterministic: its "
                          f"{repeat.replays} replays differ among themselves",
                          tuple(s.describe() for s in noisy[:20]))
    elif repeat.kind == DRIFT:
        yield Explanation("drift", 20, f"not noise: {repeat.replays} replays agree with each "
                          "other, so the difference from the original is a change",
                          tuple(s.describe() for s in repeat.spreads
                                if s.gated and s.kind == "drift")[:20])


Explainer = Callable[[Facts], Iterable[Explanation]]
EXPLAINERS: tuple[Explainer, ...] = (changed_inputs, other_command, other_image, given_env,
                                     threads, gpu, cpu, nondeterminism)


def explain(facts: Facts, explainers: Iterable[Explainer] = EXPLAINERS
            ) -> tuple[Explanation, ...]:
    """Every explanation that applies, the most likely first."""
    found = [e for explainer in explainers for e in explainer(facts)]
    return tuple(sorted(found, key=lambda e: (-e.score, e.kind)))
