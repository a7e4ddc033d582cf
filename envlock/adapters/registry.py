"""The OCI distribution API: the small part envlock needs, the only place that speaks
HTTP to registries. ``Registry`` moves manifests and blobs by digest (distribution-spec
v1.0), so a manifest keeps its digest bit for bit. Credentials come from the Docker
config file (``auths`` and credential helpers, read by docker-py) or are passed in;
Basic and Bearer-token challenges are answered.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from envlock.adapters.engine.errors import RegistryError
from envlock.image.oci import (
    _CHALLENGE_PARAM,
    IMAGE_INDEXES,
    IMAGE_MANIFESTS,
    Upload,
    sha256_digest,
)

# ---------------------------------------------------------------- auth

def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` -> ("bearer", {"realm": …, "service": …})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def docker_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from the Docker config file (``DOCKER_CONFIG`` or
    ``~/.docker/config.json``): ``auths`` entries and credential helpers, as docker does."""
    from docker import auth

    try:
        entry = auth.load_config().resolve_authconfig(registry) or {}
    except Exception:  # noqa: BLE001 - a broken helper or config: go on without credentials
        return None
    user, password = entry.get("username") or entry.get("Username"), \
        entry.get("password") or entry.get("Password")
    if user and password:
        return str(user), str(password)
    encoded = entry.get("auth")
    if encoded:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return (user, password) if user else None
    return None


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


# ---------------------------------------------------------------- registry client

class Registry:
    """One registry over the distribution API (plain http for loopback registries, as
    Docker allows, https elsewhere)."""

    def __init__(self, host: str, credentials: tuple[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        import requests

        self.host = host
        self.base = f"{'http' if _is_loopback(host) else 'https'}://{host}/v2"
        self.credentials = credentials if credentials is not None else docker_credentials(host)
        self.timeout = timeout
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False  # the registry asked for Basic auth: send it from now on

    # ---------------------------------------------------------------- requests

    def _request(self, method: str, url: str, scope: str, action: str,
                 ok: tuple[int, ...], **kwargs: Any) -> Any:
        """One request, answering an auth challenge once; statuses outside ``ok`` (and 404,
        which the callers handle) become RegistryErrors."""
        response = self._send(method, url, scope, action, **kwargs)
        if response.status_code == 401 and "www-authenticate" in response.headers:
            self._authenticate(response.headers["www-authenticate"], scope, action)
            response = self._send(method, url, scope, action, **kwargs)
        if response.status_code in ok or response.status_code == 404:
            return response
        raise self._error(response, action)

    def _send(self, method: str, url: str, scope: str, action: str, **kwargs: Any) -> Any:
        import requests

        headers = dict(kwargs.pop("headers", {}))
        auth = None
        if scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        elif self._basic and self.credentials:
            auth = self.credentials
        try:
            return self.session.request(method, url, headers=headers, auth=auth,
                                        timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.host} is unreachable ({action}): "
                                f"{_short(exc)}", "check that it is running and the "
                                "address is right") from exc

    def _authenticate(self, header: str, scope: str, action: str) -> None:
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.credentials:
                raise self._refused(action, "no credentials for it in the Docker config")
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.host} asks for unsupported authentication "
                                f"{scheme!r} ({action})")
        self._tokens[scope] = self._token(params, scope, action)

    def _token(self, params: dict[str, str], scope: str, action: str) -> str:
        import requests

        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        try:
            response = self.session.get(params["realm"], params=query, auth=self.credentials,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.host}: its token service {params['realm']} "
                                f"is unreachable ({action}): {_short(exc)}") from exc
        if response.status_code in (401, 403):
            raise self._refused(action, f"token service answered HTTP {response.status_code}")
        body = response.json() if response.ok else {}
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"registry {self.host}: no token from {params['realm']} "
                                f"(HTTP {response.status_code}, {action})")
        return str(token)

    def _refused(self, action: str, why: str) -> RegistryError:
        return RegistryError(f"registry {self.host} refused the credentials for {action}: "
                             f"{why}", f"docker login {self.host}")

    def _error(self, response: Any, action: str) -> RegistryError:
        if response.status_code in (401, 403):
            return self._refused(action, f"HTTP {response.status_code}")
        text = response.text.strip().splitlines()[0][:200] if response.text else ""
        return RegistryError(f"registry {self.host} failed ({action}): HTTP "
                             f"{response.status_code} {text}".rstrip())

    # ---------------------------------------------------------------- manifests

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest's exact bytes and media type."""
        action = f"reading the manifest {repository}@{reference}"
        accept = ", ".join((*IMAGE_MANIFESTS, *IMAGE_INDEXES))
        response = self._request("GET", f"{self.base}/{repository}/manifests/{reference}",
                                 _pull(repository), action, (200,),
                                 headers={"Accept": accept})
        if response.status_code == 404:
            raise RegistryError(f"{action}: not found in registry {self.host}")
        media = response.headers.get("content-type", "").split(";")[0].strip()
        data = response.content
        return data, media or str(json.loads(data).get("mediaType") or "")

    def has_manifest(self, repository: str, digest: str) -> bool:
        accept = ", ".join((*IMAGE_MANIFESTS, *IMAGE_INDEXES))
        response = self._request("HEAD", f"{self.base}/{repository}/manifests/{digest}",
                                 _pull(repository), f"checking {repository}@{digest}", (200,),
                                 headers={"Accept": accept})
        return bool(response.status_code == 200)

    def find_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """Like :meth:`manifest`, but None when the registry has no such manifest."""
        try:
            return self.manifest(repository, reference)
        except RegistryError as exc:
            if "not found in registry" in exc.message:
                return None
            raise

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The manifests whose ``subject`` is ``digest``, from the referrers API
        (distribution-spec 1.1); None when the registry does not serve that API (then
        the referrers tag schema's ``sha256-<hex>`` index stands in for it)."""
        action = f"listing the referrers of {repository}@{digest[:19]}"
        try:
            response = self._request("GET", f"{self.base}/{repository}/referrers/{digest}",
                                     _pull(repository), action, (200, 400, 405),
                                     headers={"Accept": IMAGE_INDEXES[0]})
        except RegistryError:  # refused or failed: the tag schema's index is the way then
            return None
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if response.status_code != 200 or media != IMAGE_INDEXES[0]:
            return None
        try:
            listed = json.loads(response.content).get("manifests") or []
        except (ValueError, AttributeError):
            return None
        return [m for m in listed if isinstance(m, dict)]

    def put_manifest(self, repository: str, tag: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under ``tag``; returns the digest the registry computed."""
        action = f"pushing the manifest {repository}:{tag}"
        response = self._request("PUT", f"{self.base}/{repository}/manifests/{tag}",
                                 _push(repository), action, (201,), data=data,
                                 headers={"Content-Type": media_type})
        if response.status_code == 404:
            raise RegistryError(f"registry {self.host} refused the manifest ({action}): a "
                                "referenced blob is missing")
        return str(response.headers.get("docker-content-digest") or sha256_digest(data))

    # ---------------------------------------------------------------- blobs

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"{self.base}/{repository}/blobs/{digest}",
                                 _push(repository), f"checking blob {digest[:19]}",
                                 (200,))
        return bool(response.status_code == 200)

    def blob(self, repository: str, digest: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """A blob's bytes, streamed (redirects to storage are followed without the token)."""
        action = f"downloading blob {digest[:19]} of {repository}"
        response = self._request("GET", f"{self.base}/{repository}/blobs/{digest}",
                                 _pull(repository), action, (200,), stream=True)
        if response.status_code == 404:
            raise RegistryError(f"{action}: not found in registry {self.host}")
        with response:
            yield from response.iter_content(chunk)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository blob mount (distribution-spec): True when the registry linked
        the blob from ``from_repository`` without a copy; False when it declined (it then
        opens an ordinary upload, which is abandoned) — the caller copies the blob."""
        from urllib.parse import quote

        action = f"mounting blob {digest[:19]} from {from_repository} into {repository}"
        try:
            response = self._request(
                "POST", f"{self.base}/{repository}/blobs/uploads/?mount={quote(digest)}"
                        f"&from={quote(from_repository, safe='/')}",
                _push(repository) + f" repository:{from_repository}:pull", action,
                (201, 202), headers={"Content-Length": "0"})
        except RegistryError:
            return False  # refused (e.g. no pull right on the source): copy instead
        return bool(response.status_code == 201)

    def push_blob(self, repository: str, digest: str, size: int, data: Upload) -> None:
        """Monolithic upload: POST for an upload URL, then one PUT with the whole blob."""
        from urllib.parse import urljoin

        action = f"uploading blob {digest[:19]} to {repository}"
        start = self._request("POST", f"{self.base}/{repository}/blobs/uploads/",
                              _push(repository), action, (202,),
                              headers={"Content-Length": "0"})
        if start.status_code == 404 or "location" not in start.headers:
            raise RegistryError(f"registry {self.host} did not start an upload ({action})")
        location = urljoin(self.base + "/", start.headers["location"])
        separator = "&" if "?" in location else "?"
        done = self._request("PUT", f"{location}{separator}digest={digest}", _push(repository),
                             action, (201,), data=data,
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(size)})
        if done.status_code == 404:
            raise RegistryError(f"registry {self.host} lost the upload ({action})")


# ---------------------------------------------------------------- blob streams

class Chunks:
    """A file-like view of an iterator of byte chunks (a blob being downloaded)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._buffer, self._pos = iter(chunks), b"", 0

    def read(self, n: int = -1) -> bytes:
        parts = []
        while n != 0:
            if self._pos >= len(self._buffer):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buffer, self._pos = chunk, 0
            left = len(self._buffer) - self._pos
            take = left if n < 0 else min(n, left)
            parts.append(self._buffer[self._pos:self._pos + take])
            self._pos += take
            n = n - take if n > 0 else n
        return b"".join(parts)


class Sized:
    """A reader with a known length: an :class:`Upload` requests streams with
    Content-Length (a local file, or another registry's blob through :class:`Chunks`)."""

    def __init__(self, reader: Any, size: int) -> None:
        self.reader, self.size = reader, size

    def read(self, n: int = -1) -> bytes:
        return bytes(self.reader.read(n))

    def __len__(self) -> int:
        return self.size


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    return line if len(line) < 200 else line[:197] + "..."
