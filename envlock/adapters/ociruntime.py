"""A command run in a root filesystem by an OCI runtime (``runc`` or ``crun``): no daemon.

The build proves its environment in the image's own file system without loading the
image into an engine: the base image's layers are extracted once per base digest
(:func:`envlock.adapters.imagefs.extract_rootfs`), the staged tree is bind-mounted over
it read-only where the environment layer puts it, and the runtime runs the probe in
there with the image's interpreter, as the non-root user, without network.

Which runtime: ``$ENVLOCK_OCI_RUNTIME`` (a name or a path; ``none`` turns this off), else
the first of ``runc`` and ``crun`` on PATH. Only as root: a rootless runtime needs user
namespaces set up by hand. On a host with hybrid cgroups (v1 controllers plus a v2 mount)
``crun`` 1.8 refuses to start containers, ``runc`` runs them: hence its place first.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from envlock.adapters import proc
from envlock.errors import CommandTimeout, EnvlockError

RUNTIMES = ("runc", "crun")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class OCIRuntimeError(EnvlockError):
    """The OCI runtime could not start the command."""


def runtime() -> str | None:
    """The OCI runtime to use, or None when there is none (or not as root)."""
    chosen = os.environ.get("ENVLOCK_OCI_RUNTIME", "").strip()
    if chosen.lower() == "none":
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    for name in ([chosen] if chosen else list(RUNTIMES)):
        found = shutil.which(name)
        if found:
            return found
    return None


def config(rootfs: Path, args: Sequence[str], binds: Sequence[tuple[Path, str]],
           user: tuple[int, int], env: Sequence[str] = ()) -> dict[str, object]:
    """The bundle's ``config.json``: ``rootfs`` read-only, ``binds`` (host path, path
    inside) read-only over it, a tmpfs ``/tmp``, no network, no capabilities."""
    mounts: list[dict[str, object]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]}]
    mounts += [{"destination": inside, "type": "bind", "source": str(host),
                "options": ["rbind", "ro", "nosuid", "nodev"]} for host, inside in binds]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": user[0], "gid": user[1]},
                    "args": list(args), "cwd": "/", "noNewPrivileges": True,
                    "env": [f"PATH={PATH}", "HOME=/tmp", "LANG=C.UTF-8", *env],
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}]},
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "envlock-proof",
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in
                                 ("pid", "network", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
                  "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]}}


def run(rootfs: Path, args: Sequence[str], *, binds: Sequence[tuple[Path, str]] = (),
        user: tuple[int, int] = (0, 0), timeout: float = 600) -> tuple[int, bytes, bytes]:
    """Run ``args`` in ``rootfs``; (exit status, stdout, stderr). Raises
    :class:`OCIRuntimeError` when there is no runtime or it cannot start at all."""
    binary = runtime()
    if binary is None:
        raise OCIRuntimeError("no OCI runtime (runc or crun) to run the proof with",
                            "install runc (apt-get install runc), or set "
                            "ENVLOCK_OCI_RUNTIME")
    bundle = Path(tempfile.mkdtemp(prefix="envlock-bundle-"))
    name = f"envlock-proof-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        (bundle / "config.json").write_text(json.dumps(config(rootfs, args, binds, user)))
        try:
            out = proc.run([binary, "run", "--bundle", str(bundle), name], cwd=str(bundle),
                           timeout=timeout)
        except CommandTimeout:
            proc.run([binary, "delete", "--force", name], timeout=30)
            raise
    except OSError as exc:
        raise OCIRuntimeError(f"{binary} could not be started: {exc}") from exc
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
    return out.returncode, out.stdout, out.stderr
