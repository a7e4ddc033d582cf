"""The one place Docker and registry failures become envlock errors."""

from __future__ import annotations

import os
from typing import Any

from envlock.errors import EnvlockError


class EngineError(EnvlockError):
    """The Docker engine is unreachable or refused an operation."""


class RegistryError(EnvlockError):
    """The registry is unreachable, refused credentials, or lacks an image."""


class BuildError(EnvlockError):
    """A build step failed inside a container."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def unavailable(exc: BaseException) -> EngineError:
    return EngineError(f"cannot reach the Docker engine at {docker_host()} (DOCKER_HOST): "
                       f"{_short(exc)}", "start the engine (dockerd) or point DOCKER_HOST at it")


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    return line if len(line) < 240 else line[:237] + "..."


def registry_error(exc: Any, registry: str, action: str) -> RegistryError:
    """Classify a registry failure reported by the engine (docker errors or push events)."""
    text = _short(exc) if isinstance(exc, BaseException) else str(exc)
    low = text.lower()
    if any(w in low for w in ("unauthorized", "authentication required", "denied",
                              "no basic auth credentials", "401", "403")):
        return RegistryError(f"registry {registry} refused the credentials for {action}: {text}",
                             f"docker login {registry}, or pass --registry-username and "
                             "--registry-password-stdin")
    if any(w in low for w in ("connection refused", "no such host", "timeout", "dial tcp",
                              "connect:", "i/o timeout", "eof")):
        return RegistryError(f"registry {registry} is unreachable ({action}): {text}",
                             "check that it is running and the address is right")
    if "manifest unknown" in low or "not found" in low:
        return RegistryError(f"{action}: not found in registry {registry}: {text}")
    return RegistryError(f"registry {registry} failed ({action}): {text}")
