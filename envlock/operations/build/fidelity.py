"""The fidelity proof: what the probe sees of a built environment against the lock."""

from __future__ import annotations

from typing import Any

from envlock.adapters.engine.errors import BuildError
from envlock.adapters.protocols import EngineLike
from envlock.image import render
from envlock.model.lockfile import Lock


def check_probe(raw: dict[str, Any], lock: Lock, where: str) -> dict[str, Any]:
    """The fidelity proof: the probe's view of the image's venv against the lock (versions,
    files digests, RECORD hashes, nothing extra); a BuildError on any difference."""
    from envlock.model.integrity import from_probe
    from envlock.snapshot.packages import resolve

    venv_site = [d for d in raw["distributions"] if d["location"].startswith(render.VENV)]
    found = {p.name: p for p in resolve(venv_site, raw["python"].get("site_dirs", [])).packages}
    problems: list[str] = []
    for pkg in lock.packages:
        got = found.pop(pkg.name, None)
        if got is None:
            problems.append(f"{pkg.name}=={pkg.version} is missing")
        elif got.version != pkg.version:
            problems.append(f"{pkg.name}: {got.version} installed, {pkg.version} locked")
        elif pkg.files_digest and pkg.source.kind != "editable" and \
                got.files_digest != pkg.files_digest:
            problems.append(f"{pkg.name}=={pkg.version}: installed files differ from the lock")
    problems += [f"{name}=={p.version} is installed but not locked" for name, p in found.items()]
    integrity = from_probe(venv_site)
    problems += [f"{p.package}: {p.problem} {p.path}" for p in integrity.problems]
    if raw["python"]["version"] != lock.python["version"]:
        problems.append(f"Python {raw['python']['version']} in the image, "
                        f"{lock.python['version']} locked")
    if problems:
        raise BuildError(f"the {where} does not match the lock: {'; '.join(problems[:5])}"
                         f"{' …' if len(problems) > 5 else ''}",
                         "report this with the lockfile; nothing was tagged or pushed")
    return {"ok": True, "packages": len(lock.packages),
            "files_verified": integrity.files_checked, "problems": [], "where": where}


def verify_fidelity(engine: EngineLike, image_id: str, lock: Lock) -> dict[str, Any]:
    """Run the stdlib probe (with RECORD verification) in the image, compare with the lock."""
    import json

    from envlock.snapshot.interpreter import PROBE_SOURCE

    code, out = engine.run(image_id, [f"{render.VENV}/bin/python", "-c",
                                      PROBE_SOURCE.read_text(), "--deep"],
                           user=f"{render.USER_ID}:{render.USER_ID}", stdout_only=True)
    if code != 0:
        raise BuildError(f"the fidelity probe failed in {image_id[:19]} (exit {code})")
    return check_probe(json.loads(out), lock, "image")
