"""Pure: a lock (plus a provisioning plan and a code plan) -> the build recipe.

Nothing here touches Docker. The recipe names the base (pinned by digest), the
environment image (one per ``env_digest``) and the code image (one per run), their
labels and settings (the instructions ``imageconfig.apply_changes`` turns into the
assembled images' configs), and renders an equivalent multi-stage Dockerfile that
``--dry-run`` prints and capture stores next to the run. envlock itself assembles the
images without running this file (``operations.build.stage``, ``operations.build.assemble``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from envlock import __version__
from envlock.errors import UsageError
from envlock.model import runrecord
from envlock.model.lockfile import Lock
from envlock.model.uvrun import replay_command

VENV = "/opt/envlock/venv"
WORKDIR = "/workspace"
WHEELHOUSE = "/tmp/envlock-wheelhouse"
USER_ID = 1000
USER_NAME = "envlock"
#: The time every file of the environment layer carries, and its image's creation time.
#: With it pip compiles hash-checked .pyc files (SOURCE_DATE_EPOCH), so the same lock on
#: the same base gives the same layer and the same image id, build after build.
#: 1980-01-01: the oldest time a zip file can hold.
SOURCE_DATE_EPOCH = 315532800
CREATED = "1980-01-01T00:00:00Z"
#: Directories of the base that the build changes, so the layer holds them too.
_BASE_DIRS = ("/etc", "/opt", "/tmp")
#: Knobs that describe the capturing host, not the experiment: replay decides them.
HOST_KNOBS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
              "ROCR_VISIBLE_DEVICES")
_NAME = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class Recipe:
    base: str  # NAME@sha256:... (or an unpinned ref, only in a dry run)
    repository: str  # e.g. envlock/myproj or 127.0.0.1:5000/team/myproj
    env_tag: str
    code_tag: str
    requirements: tuple[str, ...]  # name==version, in lock order
    env_labels: dict[str, str]
    code_labels: dict[str, str]
    code_env: dict[str, str]  # numerics knobs baked into the code image
    install_command: str
    env_changes: tuple[str, ...] = field(default=())  # Dockerfile instructions for commit
    code_changes: tuple[str, ...] = field(default=())

    @property
    def env_image(self) -> str:
        return f"{self.repository}:{self.env_tag}"

    @property
    def code_image(self) -> str:
        return f"{self.repository}:{self.code_tag}"

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "repository": self.repository, "env_image": self.env_image,
                "code_image": self.code_image, "requirements": list(self.requirements),
                "env_labels": self.env_labels, "code_labels": self.code_labels,
                "code_env": self.code_env}


def project_name(lock: Lock) -> str:
    root = lock.project_root or "project"
    name = _NAME.sub("-", root.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-._")
    return name or "project"


def repository_for(lock: Lock, registry: str | None) -> str:
    """``--registry HOST[:PORT]/REPO`` as given, else ``envlock/<project>`` (local only)."""
    if registry:
        if "/" not in registry:
            return f"{registry}/envlock/{project_name(lock)}"
        return registry.rstrip("/")
    return f"envlock/{project_name(lock)}"


def default_code_tag(lock: Lock, run_id: str | None, tag: str | None) -> str:
    value = tag or run_id or f"lock-{lock.lock_digest.split(':', 1)[1][:12]}"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value):
        raise UsageError(f"--tag {value!r} is not a valid image tag",
                         "use letters, digits, '_', '.' and '-' (at most 128 characters)")
    return value


def env_tag(lock: Lock) -> str:
    return "env-" + lock.env_digest.split(":", 1)[1][:16]


def needs_system_cuda(lock: Lock) -> bool:
    """A CUDA build of a framework whose CUDA libraries do not come from pip wheels."""
    torch = lock.frameworks.get("torch") or {}
    uses_cuda = torch.get("build") == "cuda" or any(
        (lock.frameworks.get(n) or {}).get("cuda") for n in ("tensorflow", "jax", "cupy"))
    wheels = lock.frameworks.get("cuda_libraries") or {}
    return bool(uses_cuda and not wheels and not torch.get("cudnn"))


def choose_base(lock: Lock, override: str | None = None) -> str:
    """The base image for a lock: the official slim Python image of its exact version, or
    an NVIDIA CUDA runtime image when CUDA comes from the system, unless overridden."""
    if override:
        return override
    py = lock.python
    if py["implementation"] != "cpython":
        raise UsageError(f"no default base image for {py['implementation']}",
                         "pass --base-image with an image that has this interpreter")
    toolkit = lock.gpu.get("cuda_toolkit") or {}
    if needs_system_cuda(lock) and toolkit.get("version"):
        major_minor_patch = ".".join(toolkit["version"].split(".")[:3])
        return f"nvidia/cuda:{major_minor_patch}-cudnn-runtime-ubuntu22.04"
    codename = lock.os.get("distro_codename") if lock.os.get("distro") == "debian" else None
    return f"python:{py['version']}-slim-{codename or 'bookworm'}"


def _labels_common(lock: Lock, base: str) -> dict[str, str]:
    name, _, digest = base.partition("@")
    return {
        runrecord.VERSION: __version__,
        runrecord.ENV_DIGEST: lock.env_digest,
        runrecord.PYTHON: lock.python["version"],
        "org.opencontainers.image.base.name": name,
        "org.opencontainers.image.base.digest": digest,
    }


def install_command(python: str = "python3") -> str:
    """Runs inside the base: a venv with nothing in it, then exactly the locked wheels,
    then every time stamp made deterministic (see ``SOURCE_DATE_EPOCH``)."""
    epoch = SOURCE_DATE_EPOCH
    dirs = " ".join(_BASE_DIRS)
    return (f"set -e; export SOURCE_DATE_EPOCH={epoch} PYTHONDONTWRITEBYTECODE=1; "
            f"{python} -m venv --without-pip {VENV}; "
            f"{VENV}/bin/python {WHEELHOUSE}/tools/pip.whl/pip install "
            f"--no-index --no-deps --no-cache-dir --disable-pip-version-check "
            f"--no-warn-script-location --find-links {WHEELHOUSE} "
            f"-r {WHEELHOUSE}/requirements.txt; rm -rf {WHEELHOUSE}; "
            f"mkdir -p {WORKDIR}; grep -q '^{USER_NAME}:' /etc/passwd || "
            f"echo '{USER_NAME}:x:{USER_ID}:{USER_ID}:{USER_NAME}:{WORKDIR}:/bin/sh' "
            f">> /etc/passwd; grep -q '^{USER_NAME}:' /etc/group || "
            f"echo '{USER_NAME}:x:{USER_ID}:' >> /etc/group; "
            f"chown {USER_ID}:{USER_ID} {WORKDIR}; "
            f"find {VENV.rsplit('/', 1)[0]} {WORKDIR} -exec touch -h -d @{epoch} {{}} +; "
            f"touch -h -d @{epoch} /etc/passwd /etc/group {dirs}")


def _instruction_labels(labels: dict[str, str]) -> list[str]:
    return [f'LABEL "{k}"="{v}"' for k, v in labels.items()]


def render(lock: Lock, base: str, repository: str, code_tag: str, *, run_id: str | None = None,
           code_digest: str | None = None, created: str | None = None,
           base_python: str = "python3") -> Recipe:
    """The recipe for ``lock``; ``base`` should already be pinned (``name@sha256:…``)."""
    requirements = tuple(f"{p.name}=={p.version}" for p in lock.packages)
    common = _labels_common(lock, base)
    # How the environment's byte-code was made (the builder says "none" when it had no
    # interpreter of the lock's version); the code image inherits it.
    env_labels = {**common, runrecord.LABEL_BYTECODE: f"cpython-{lock.python['version']}"}
    git = lock.git or {}
    code_labels = {
        **common,
        runrecord.LOCK_DIGEST: lock.lock_digest,
        runrecord.LABEL_RUN_ID: run_id or "",
        runrecord.LABEL_CODE_DIGEST: code_digest or "",
        runrecord.GIT_COMMIT: git.get("commit") or "",
        runrecord.DIRTY: "true" if git.get("dirty") else "false",
        "org.opencontainers.image.source": git.get("remote_url") or "",
        "org.opencontainers.image.revision": git.get("commit") or "",
        "org.opencontainers.image.created": created or "",
    }
    knobs = {k: v for k, v in lock.runtime.get("env", {}).items() if k not in HOST_KNOBS}
    path = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # Every instruction the builder commits comes from here, so the published recipe
    # (build --dry-run, the run's Dockerfile artifact) is exactly what is built.
    env_changes = ("ENTRYPOINT []", 'CMD ["python"]',
                   f'ENV VIRTUAL_ENV="{VENV}"', f'ENV PATH="{path}"', "ENV PYTHONUNBUFFERED=1",
                   f"WORKDIR {WORKDIR}", f"USER {USER_ID}:{USER_ID}",
                   *_instruction_labels(env_labels))
    # The recorded command as the image runs it (`uv run train.py`: the image has no uv)
    command = replay_command(lock.runtime.get("command"))
    code_changes = (*[f'ENV {k}="{v}"' for k, v in knobs.items()],
                    f"WORKDIR {WORKDIR}", f"USER {USER_ID}:{USER_ID}",
                    *_instruction_labels(code_labels),
                    *([f"CMD {json.dumps(['/bin/sh', '-c', command])}"] if command else []))
    return Recipe(base=base, repository=repository, env_tag=env_tag(lock), code_tag=code_tag,
                  requirements=requirements, env_labels=env_labels, code_labels=code_labels,
                  code_env=knobs, install_command=install_command(base_python),
                  env_changes=env_changes, code_changes=code_changes)


def dockerfile(recipe: Recipe) -> str:
    """An equivalent multi-stage Dockerfile (context: ``wheelhouse/`` and ``code/``)."""
    env_body = "\n".join(recipe.env_changes)
    code_body = "\n".join(recipe.code_changes)
    return f"""# envlock {__version__} build recipe for {recipe.code_image}
# Context: wheelhouse/ (the locked wheels, requirements.txt, tools/pip.whl) and code/.
# envlock assembles these images itself (no engine needed); `docker build` on this file
# yields the same environment (the same packages and settings, not the same bytes).

FROM {recipe.base} AS env
USER root
COPY wheelhouse/ {WHEELHOUSE}/
RUN {recipe.install_command}
{env_body}
# environment image: {recipe.env_image}  ({recipe.env_labels[runrecord.ENV_DIGEST]})

FROM env AS code
COPY --chown={USER_ID}:{USER_ID} code/ {WORKDIR}/
{code_body}
# code image: {recipe.code_image}
"""
