"""Pure: human-readable text for locks, diffs, checks and audits (the models are imported
for annotations only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envlock.cli.output import table

if TYPE_CHECKING:
    from envlock.model.audit import AuditReport
    from envlock.model.compare import Comparison
    from envlock.model.diff import LockDiff
    from envlock.model.lockfile import Lock
    from envlock.model.replayhost import HostDiff
    from envlock.operations.check import CheckResult


def _short(digest: str | None) -> str:
    return (digest or "-")[:19]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "{}"
    return str(value)


def gpu_line(gpu: Mapping[str, Any]) -> str:
    if not gpu.get("driver_version"):
        return f"none ({gpu.get('reason', 'no NVIDIA driver')})"
    names: dict[str, int] = {}
    for device in gpu.get("devices", []):
        label = f"{device['name']} (sm {device['compute_capability']})"
        names[label] = names.get(label, 0) + 1
    devices = ", ".join(f"{n}× {label}" for label, n in names.items()) or "no devices"
    cuda = gpu.get("cuda_driver_version") or "-"
    return f"{devices}; driver {gpu['driver_version']}, CUDA driver API {cuda}"


def host_line(host: Mapping[str, Any] | None) -> str:
    """``AMD EPYC (x86_64, x86-64-v4; avx2, avx512f), 2/2 cores; memory 23.5 GiB; /dev/shm
    23.5 GiB``; ``unknown`` for a lock that did not record it."""
    from envlock.model.resources import format_size

    if not host:
        return "unknown (not recorded)"
    cpu, memory = host.get("cpu") or {}, host.get("memory") or {}
    headline = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "sve", "sve2")
    flags = ", ".join(f for f in cpu.get("flags") or () if f in headline)
    limit = memory.get("limit_bytes")
    return (f"{cpu.get('model') or '?'} ({cpu.get('arch')}, {cpu.get('isa_level')}"
            f"{'; ' + flags if flags else ''}), {_fmt(cpu.get('usable_cores'))}/"
            f"{_fmt(cpu.get('logical_cores'))} cores usable; memory "
            f"{format_size(memory.get('total_bytes'))}"
            f"{' (limit ' + format_size(limit) + ')' if limit else ''}; /dev/shm "
            f"{format_size((host.get('shm') or {}).get('size_bytes'))}")


def torch_line(frameworks: dict[str, Any]) -> str:
    torch = frameworks.get("torch")
    if not torch:
        return "-"
    if torch["build"] == "cuda":
        return (f"{torch['version']} (CUDA {torch['cuda']}, cuDNN {torch.get('cudnn') or '-'}, "
                f"NCCL {torch.get('nccl') or '-'})")
    if torch["build"] == "rocm":
        return f"{torch['version']} (ROCm {torch['hip']})"
    return f"{torch['version']} (CPU build)"


def git_line(git: Mapping[str, Any] | None) -> str:
    if not git:
        return "not a git repository"
    commit = git["commit"][:12] if git.get("commit") else "no commit yet"
    branch = git.get("branch") or "detached"
    if not git.get("dirty"):
        return f"{commit} on {branch}, clean"
    changes = git.get("changes", {})
    return (f"{commit} on {branch}, dirty ({changes.get('staged', 0)} staged, "
            f"{changes.get('unstaged', 0)} unstaged, {changes.get('untracked', 0)} untracked)")


def code_line(code: Mapping[str, Any]) -> str:
    """A project outside git: how many files were packed, their size, what was withheld."""
    from envlock.snapshot.directory import human_size

    files, links = len(code.get("files") or []), len(code.get("symlinks") or [])
    withheld = len(code.get("withheld") or [])
    return (f"directory {code.get('root')}: {files} files"
            f"{f', {links} symlinks' if links else ''}, "
            f"{human_size(int(code.get('total_bytes') or 0))}, {withheld} withheld")


def lock_summary(lock: Lock, title: str) -> str:
    py, os_ = lock.python, lock.os
    sources: dict[str, int] = {}
    for pkg in lock.packages:
        sources[pkg.source.kind] = sources.get(pkg.source.kind, 0) + 1
    by_source = ", ".join(f"{n} {k}" for k, n in sorted(sources.items()))
    rows = [
        ("Python", f"{py['implementation']} {py['version']} ({py['platform_tag']}"
                   f"{', venv' if py.get('venv') else ''})"),
        ("Packages", f"{len(lock.packages)} ({by_source})" if by_source else "0"),
        ("PyTorch", torch_line(lock.frameworks)),
    ]
    for name in ("tensorflow", "jax", "cupy"):
        if name in lock.frameworks:
            fw = lock.frameworks[name]
            rows.append((name, f"{fw.get('version')} (CUDA {fw.get('cuda') or '-'})"))
    toolkit = lock.gpu.get("cuda_toolkit")
    rows += [
        ("GPU", gpu_line(lock.gpu)),
        ("CUDA toolkit", f"{toolkit['version']} ({toolkit['path']})" if toolkit else "none"),
        ("Host", host_line(lock.host)),
        ("OS", f"{os_.get('pretty_name') or os_['system']}, kernel {os_.get('kernel')}, "
               f"{_fmt(os_['libc'].get('family'))} {_fmt(os_['libc'].get('version'))}, "
               f"{os_['arch']}{', in ' + str(os_['container']) if os_.get('container') else ''}"),
        ("Git", git_line(lock.git)),
        *([("Code", code_line(lock.code))] if lock.code else []),
        ("Command", lock.runtime.get("command") or "-"),
        *([("Inputs", inputs_line(lock))] if lock.inputs else []),
        ("Env knobs", ", ".join(f"{k}={v}" for k, v in lock.runtime.get("env", {}).items()) or "-"),
        ("env_digest", lock.env_digest),
    ]
    return f"{title}\n" + table([(k + ":", v) for k, v in rows])


def inputs_line(lock: Lock) -> str:
    """``2 (1 copy, 1 reference), 1.2 GiB: data/train.csv, /mnt/x.csv``."""
    from envlock.model.inputs import human_size

    carries = {c: sum(1 for i in lock.inputs if i.carry == c) for c in ("copy", "reference")}
    names = ", ".join(i.path for i in lock.inputs[:4]) + (" …" if len(lock.inputs) > 4 else "")
    return (f"{len(lock.inputs)} ({', '.join(f'{n} {c}' for c, n in carries.items() if n)}), "
            f"{human_size(sum(i.size for i in lock.inputs))}: {names}")


def diff_text(diff: LockDiff, a: str, b: str) -> str:
    if diff.identical:
        return f"No differences between {a} and {b}."
    lines = [f"--- {a}", f"+++ {b}"]
    same = diff.old_env_digest == diff.new_env_digest
    lines.append(f"env_digest: {'unchanged' if same else 'CHANGED'} "
                 f"({_short(diff.old_env_digest)} → {_short(diff.new_env_digest)})")
    if diff.packages:
        rows: list[tuple[str, ...]] = []
        for pc in diff.packages:
            if pc.kind == "added":
                rows.append(("+", pc.name, pc.new_version or "", pc.new_source or ""))
            elif pc.kind == "removed":
                rows.append(("-", pc.name, pc.old_version or "", pc.old_source or ""))
            else:
                version = (pc.old_version if pc.old_version == pc.new_version
                           else f"{pc.old_version} → {pc.new_version}")
                source = (pc.new_source if pc.old_source == pc.new_source
                          else f"{pc.old_source} → {pc.new_source}")
                rows.append(("~", pc.name, version or "", source or ""))
        lines += [f"packages ({len(diff.packages)}):", table(rows)]
    if not diff.inputs.same:
        lines += [f"inputs ({len(diff.inputs.lines())}):",
                  *(f"  {line}" for line in diff.inputs.lines())]
    for category, changes in diff.by_category().items():
        show = _code_value if category == "code" else _fmt
        lines += [f"{category}:", table([(c.field, f"{show(c.old)} → {show(c.new)}")
                                         for c in changes])]
    return "\n".join(lines)


def _code_value(value: Any) -> str:
    """A file's ``sha256:… mode`` shortened for people (absent: ``-``)."""
    if isinstance(value, str) and value.startswith("sha256:"):
        digest, _, mode = value.partition(" ")
        return f"{digest[:19]} {mode}".strip()
    return _fmt(value)


def host_diff_text(found: HostDiff) -> str:
    """The original's host against a replay's, beside the replay's verdict."""
    verdict = (found.verdict or "no verdict (still running?)").upper()
    lines = [f"--- {found.original_run_id} (original, from its lock)",
             f"+++ {found.replay_run_id} (replay"
             + (f" of {found.replay_of})" if found.replay_of else ")"),
             f"verdict: {verdict}"]
    if found.identical:
        lines.append("hosts: no differences in CPU, memory, /dev/shm, GPU, driver or OS")
    else:
        lines += ["hosts:", table([(f"{c.category}.{c.field}", f"{_fmt(c.old)} → {_fmt(c.new)}")
                                   for c in found.changes])]
    engine, given = found.engine or {}, found.resources or {}
    if engine:
        lines.append(f"replay engine: {engine.get('engine')} {engine.get('version') or '?'}")
    if given:
        from envlock.model.resources import format_size

        lines.append(f"replay container: /dev/shm {format_size(given.get('shm_size'))}, "
                     f"cpus {_fmt(given.get('cpus'))}, memory "
                     f"{format_size(given.get('mem_limit'))}")
    return "\n".join(lines)


def check_text(result: CheckResult) -> str:
    lines = []
    if result.drifted:
        lines.append(f"DRIFT: the live environment differs from {result.lock_path}")
    else:
        lines.append(f"OK: the live environment matches {result.lock_path}")
    if not result.diff.identical:
        lines.append(diff_text(result.diff, "locked", "live"))
    if result.integrity is not None:
        rep = result.integrity
        lines.append(f"files: {rep.files_checked} checked in {rep.packages_checked} packages, "
                     f"{len(rep.problems)} problem(s)")
        lines += [f"  {p.problem}: {p.path} ({p.package})" for p in rep.problems[:200]]
        if len(rep.problems) > 200:
            lines.append(f"  … and {len(rep.problems) - 200} more (see --json)")
    if not result.drifted and not result.diff.identical:
        lines.append("(differences outside packages and Python are reported, not failed; "
                     "use --strict to fail on them)")
    return "\n".join(lines)


def comparison_table(comparison: Comparison) -> str:
    """The root's gated metrics, changed params, the child runs, where histories part,
    the metrics shown but not gated, the artifacts, what differs, the verdict."""
    rows = [("metric", "original", "replay", "delta", "")]
    for row in comparison.rows:
        if row.gated:
            rows.append((row.name, _fmt(row.original), _fmt(row.replay),
                         _fmt(row.delta), _metric_state(row)))
    lines = [table(rows)]
    lines += [f"param {p.name}: original {p.original!r}, replay {p.replay!r}"
              for p in comparison.params if not p.ok]
    if comparison.runs:
        original, replay = comparison.children
        lines.append(f"child runs: {original} in the original, {replay} in the replay")
        lines.append(runs_table(comparison))
    lines += history_lines(comparison)
    if comparison.ungated():
        lines.append(ungated_table(comparison))
    if comparison.artifacts is not None:
        lines.append(artifacts_table(comparison))
    lines += [f"relay incomplete: {m}" for m in comparison.relay_missing]
    differing = comparison.differing()
    if differing:
        lines.append("differ: " + ", ".join(f"{name} ({n} run{'s' if n > 1 else ''})"
                                            for name, n in differing.items()))
    verdict = "REPRODUCED" if comparison.reproduced else "NOT REPRODUCED"
    tol = comparison.tolerance
    strict = "; --strict: every metric gates" if comparison.policy.strict else ""
    lines.append(f"{verdict} (tolerance abs={tol.absolute:g}, rel={tol.relative:g}{strict})")
    return "\n".join(lines)


def _metric_state(row: Any) -> str:
    if row.ok:
        return "ok"
    if row.divergence is not None:
        return f"DIFFERS from step {row.divergence.step}"
    return "DIFFERS"


def history_lines(comparison: Comparison, limit: int = 20) -> list[str]:
    """Where each gated metric's history first parts from the original's."""
    found = comparison.divergences()
    lines = []
    for label, row, d in found[:limit]:
        points = f"; {row.points[0]}/{row.points[1]} points" if row.points else ""
        delta = f" (delta {d.delta:+.6g})" if d.delta is not None else ""
        lines.append(f"history of {row.name} ({'child ' + label if label else 'root'}): "
                     f"first differs at step {d.step}: original {_fmt(d.original)}, "
                     f"replay {_fmt(d.replay)}{delta}{points}")
    if len(found) > limit:
        lines.append(f"… and {len(found) - limit} more histories differ (see --json)")
    return lines


def ungated_table(comparison: Comparison) -> str:
    """The metrics shown but not gated: at the root with their values, in child runs as
    how many differ."""
    root = {r.name: r for r in comparison.rows if not r.gated}
    rows = [("metric", "original", "replay", "delta", "differs in", "not gated by")]
    for metric in comparison.ungated():
        at_root = root.get(metric.name)
        rows.append((metric.name, _fmt(at_root.original if at_root else None),
                     _fmt(at_root.replay if at_root else None),
                     _fmt(at_root.delta if at_root else None),
                     f"{metric.differ}/{metric.runs} runs", metric.rule))
    return ("not gated (time, throughput or the machine; shown, not part of the verdict; "
            "--strict gates them):\n" + table(rows))


def runs_table(comparison: Comparison) -> str:
    rows = [("child run", "original", "replay", "matched by", "status", "metrics", "params")]
    for run in comparison.runs:
        gated = [m for m in run.metrics if m.gated]
        differs = [m.name for m in gated if not m.ok]
        changed = [p.name for p in run.params if not p.ok]
        name = run.name if run.name_ok else f"{run.name} -> {run.replay_name} (DIFFERS)"
        status = "-" if run.status is None else run.status[0] if run.status_ok else \
            f"{run.status[0]} -> {run.status[1]} (DIFFERS)"
        ungated = len(run.metrics) - len(gated)
        rows.append(("  " * (run.depth - 1) + name, (run.original_id or "-")[:12],
                     (run.replay_id or "-")[:12], run.rule, status,
                     f"{len(gated) - len(differs)}/{len(gated)} ok"
                     + (f" (differ: {', '.join(differs)})" if differs else "")
                     + (f" +{ungated} not gated" if ungated else ""),
                     "same" if not changed else "CHANGED: " + ", ".join(changed)))
    return table(rows)


def artifacts_table(comparison: Comparison) -> str:
    rows = [("run", "artifact", "", "why")]
    rows += [(a.run or "(replay run)", a.path, a.status, a.reason or "")
             for a in comparison.artifacts or ()]
    counts: dict[str, int] = {}
    for artifact in comparison.artifacts or ():
        counts[artifact.status] = counts.get(artifact.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    return table(rows) + f"\nartifacts: {summary}"


def audit_text(result: AuditReport) -> str:
    lines = [f"audited {len(result.audited)} packages of {result.target} against "
             + "; ".join(s.describe() for s in result.sources)]
    if result.findings:
        rows = [("PACKAGE", "VERSION", "VULNERABILITY", "SEVERITY", "FIXED IN", "ALIASES", "")]
        rows += [(f.package, f.version, f.id, f.severity or "unknown",
                  ", ".join(f.fixed) or "-", ", ".join(f.aliases) or "-",
                  "ignored" if f.ignored else "FAILS" if f.fails else "below threshold")
                 for f in result.findings]
        lines.append(table(rows))
    lines.append(result.summary())
    if result.not_audited:
        lines.append("not audited (not a published release): " + ", ".join(
            f"{n} {v} ({k})" for n, v, k in result.not_audited))
    return "\n".join(lines)



def repeat_text(result: Any, limit: int = 40) -> str:
    """``--repeat N`` (an ``operations.repeat.RepeatResult``): one line per replay, every
    gated metric that is not simply equal with its spread, the ungated ones counted, what
    else kept a replay from reproducing, then the classification."""
    lines = [f"replay {n} of {len(result.results)}: run {r.replay_run_id}, exit "
             f"{r.exit_code}, {_alone(r)} on its own" for n, r in enumerate(result.results, 1)]
    repeat = result.repeat
    if repeat is None:
        return "\n".join(lines)
    shown = [s for s in repeat.spreads if s.gated and s.kind != "equal"]
    equal = sum(1 for s in repeat.spreads if s.gated and s.kind == "equal")
    rows = [("metric", "run", "kind", "original", "replays (min .. max)", "sd", "original")]
    rows += [(s.name, s.run or "(root)", s.kind, _fmt(s.original),
              f"{_fmt(s.low)} .. {_fmt(s.high)}",
              f"{s.stdev:.3g}" if s.stdev is not None else "-",
              "within" if s.within else "OUTSIDE" if s.within is False else
              "-" if s.ok else "DIFFERS") for s in shown[:limit]]
    if shown:
        lines.append(table(rows))
    if len(shown) > limit:
        lines.append(f"… and {len(shown) - limit} more (see --json)")
    ungated = [s for s in repeat.spreads if not s.gated]
    lines.append(f"metrics: {equal} equal in every replay"
                 + (f", {len(shown)} not" if shown else "")
                 + (f"; {len(ungated)} not gated (time, throughput or the machine), "
                    f"{sum(1 for s in ungated if s.kind == 'noise')} of them vary"
                    if ungated else ""))
    lines += [f"leaves the replays' band: {s.describe()}" for s in shown if s.leaves][:10]
    lines += [f"artifact {(a.run + '/') if a.run else ''}{a.path}: {a.kind}"
              for a in repeat.artifacts if a.kind != "equal"][:limit]
    lines += [f"problem: {p}" for p in repeat.problems[:limit]]
    lines.append(repeat.verdict.replace(repeat.kind, repeat.kind.upper(), 1))
    return "\n".join(lines + explanations_text(result.explanations))


def _alone(result: Any) -> str:
    ok = result.exit_code == 0 and result.comparison and result.comparison.reproduced
    return "reproduced" if ok else "not reproduced"


def explanations_text(explanations: Any, limit: int = 8) -> list[str]:
    """NOT REPRODUCED: why it may be, the most likely first, each with its evidence."""
    if not explanations:
        return []
    lines = ["why it may differ (most likely first):"]
    for number, item in enumerate(explanations[:limit], 1):
        lines.append(f"  {number}. {item.title}")
        lines += [f"       {line}" for line in item.evidence[:6]]
    return lines
