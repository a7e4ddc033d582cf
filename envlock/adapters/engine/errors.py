"""The one place Docker and registry failures become envlock errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

from envlock.errors import EnvlockError

#: A connection-level failure: checked first, so a registry that died mid-push is never
#: taken for one that refused credentials (a URL's digest may well contain "401").
_UNREACHABLE = re.compile(r"connection refused|connection reset|no such host|timed? ?out|"
                          r"dial tcp|connect:|\beof\b|broken pipe|server misbehaving|"
                          r"request canceled|no route to host", re.IGNORECASE)
_CREDENTIALS = re.compile(r"unauthorized|authentication required|access to the resource is "
                          r"denied|\bdenied\b|no basic auth credentials|\b40[13]\b",
                          re.IGNORECASE)
_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.IGNORECASE)
_NOT_FOUND = re.compile(r"manifest unknown|not found|blob unknown|name unknown", re.IGNORECASE)


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
    """Classify a registry failure reported by the engine (docker errors or push events):
    unreachable, out of space, refused credentials, not found, or another failure."""
    text = _short(exc) if isinstance(exc, BaseException) else str(exc)
    if _UNREACHABLE.search(text):
        return RegistryError(f"registry {registry} is unreachable ({action}): {text}",
                             "check that it is running and the address is right")
    if _NO_SPACE.search(text):
        return RegistryError(f"registry {registry} is out of disk space ({action}): {text}",
                             "free space on the registry's storage and retry")
    if _CREDENTIALS.search(text):
        return RegistryError(f"registry {registry} refused the credentials for {action}: {text}",
                             f"docker login {registry}, or pass --registry-username and "
                             "--registry-password-stdin")
    if _NOT_FOUND.search(text):
        return RegistryError(f"{action}: not found in registry {registry}: {text}")
    return RegistryError(f"registry {registry} failed ({action}): {text}")


def engine_refused(exc: Any, action: str) -> EngineError:
    """The engine answered, with an error: out of space, or what it said (HTTP status)."""
    text = _short(exc)
    if _NO_SPACE.search(text):
        return EngineError(f"the Docker engine ran out of disk space {action}: {text}",
                           "free space (docker system prune, or more disk for the engine's "
                           "data root) and retry")
    status = getattr(exc, "status_code", None)
    verb = "refused" if status and 400 <= status < 500 else "failed"  # our request / itself
    return EngineError(f"the Docker engine {verb} {action}"
                       + (f" (HTTP {status})" if status else "") + f": {text}",
                       "see the engine's log (journalctl -u docker, or dockerd's output)")


@contextlib.contextmanager
def translated(action: str, *, registry: str | None = None,
               missing: str | None = None) -> Iterator[None]:
    """The one place docker-py's errors become envlock's: wrap every engine call.

    ``action`` says what was being done ("pushing x:y"); with ``registry`` an API error
    is classified as a registry failure; ``missing`` is the message for a 404."""
    import docker
    import requests

    try:
        yield
    except EnvlockError:
        raise
    except docker.errors.APIError as exc:
        if registry:
            raise registry_error(exc, registry, action) from exc
        if isinstance(exc, docker.errors.NotFound) and missing:
            raise EngineError(missing) from exc
        raise engine_refused(exc, action) from exc
    except requests.exceptions.ReadTimeout as exc:
        raise EngineError(f"the Docker engine at {docker_host()} did not answer in time "
                          f"({action})", "check that the engine is healthy") from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise unavailable(exc) from exc
