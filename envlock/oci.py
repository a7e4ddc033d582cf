"""OCI image layouts and the OCI distribution API: the small part envlock needs.

Pure helpers build the files of an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/…``; image-spec v1.1 "image-layout") and the docker-archive
``manifest.json`` that ``docker load`` reads next to them (Docker ≥ 25 writes the same
dual layout). ``Registry`` moves manifests and blobs by digest over the distribution API
(distribution-spec v1.0), so a manifest keeps its digest bit for bit. Credentials come
from the Docker config file (``auths`` and credential helpers, read by docker-py) or are
passed in; Basic and Bearer-token challenges are answered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from envlock.engine.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
IMAGE_INDEXES = (OCI_INDEX, DOCKER_LIST)
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Upload(Protocol):
    """A blob to upload: readable, with a length (requests then sends Content-Length)."""

    def read(self, n: int = -1) -> bytes: ...

    def __len__(self) -> int: ...


# ---------------------------------------------------------------- digests and names

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def blob_path(digest: str) -> str:
    """``sha256:<hex>`` -> ``blobs/sha256/<hex>`` (only well-formed sha256 digests)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return "blobs/sha256/" + digest.split(":", 1)[1]


def digest_of_path(path: str) -> str | None:
    """``blobs/sha256/<hex>`` -> ``sha256:<hex>``; None for any other path."""
    head, _, hexpart = path.rpartition("/")
    digest = f"sha256:{hexpart}"
    return digest if head == "blobs/sha256" and is_digest(digest) else None


@dataclass(frozen=True)
class Reference:
    """``HOST[:PORT]/REPO[:TAG][@sha256:…]`` split into its parts."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"


def parse_reference(reference: str) -> Reference:
    """A registry reference; the registry part is required (``host[:port]`` or ``localhost``)."""
    name, _, digest = reference.partition("@")
    registry, slash, rest = name.partition("/")
    if not slash or not ("." in registry or ":" in registry or registry == "localhost"):
        raise ValueError(f"{reference!r} does not name a registry (HOST[:PORT]/REPO)")
    repository, tag = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and "/" not in tail:
        repository, tag = head, tail
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"{repository!r} is not a valid repository name (lowercase letters, "
                         "digits, '.', '_', '-' and '/')")
    if digest and not is_digest(digest):
        raise ValueError(f"{digest!r} is not a sha256 digest")
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest or None)


# ---------------------------------------------------------------- layout documents

def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def layer_media_type(head: bytes) -> str:
    """The OCI layer type for a layer blob that starts with ``head`` (compression sniffed)."""
    if head.startswith(b"\x1f\x8b"):
        return OCI_LAYER + "+gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER + "+zstd"
    return OCI_LAYER


def image_manifest(config: bytes, layers: list[tuple[str, int, str]]) -> bytes:
    """An OCI image manifest for a config blob and ``(digest, size, media type)`` layers."""
    document = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": media, "digest": digest, "size": size}
                   for digest, size, media in layers],
    }
    return canonical_json(document)


def manifest_blobs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The config and layer descriptors of a single-image manifest, validated."""
    media = manifest.get("mediaType")
    if media in IMAGE_INDEXES or "manifests" in manifest:
        raise ValueError("a multi-platform image index, not a single image manifest")
    if manifest.get("schemaVersion") != 2 or media not in (*IMAGE_MANIFESTS, None):
        raise ValueError(f"unsupported manifest (schemaVersion {manifest.get('schemaVersion')},"
                         f" mediaType {media})")
    descriptors = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    for descriptor in descriptors:
        if not is_digest(descriptor.get("digest")) or not isinstance(descriptor.get("size"),
                                                                     int):
            raise ValueError(f"malformed descriptor {descriptor!r}")
    return descriptors


def oci_layout() -> bytes:
    return canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def index_json(media_type: str, digest: str, size: int, name: str | None) -> bytes:
    """``index.json`` of a layout holding one image (named as ``docker save`` names it)."""
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if name:
        descriptor["annotations"] = {CONTAINERD_NAME: name,
                                     REF_NAME: name.rpartition(":")[2]}
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [descriptor]})


def docker_manifest_json(manifest: dict[str, Any], repo_tags: list[str]) -> bytes:
    """The docker-archive ``manifest.json`` pointing at the layout's blobs (``docker load``
    decompresses gzip layers itself)."""
    config, *layers = manifest_blobs(manifest)
    return canonical_json([{"Config": blob_path(config["digest"]), "RepoTags": repo_tags,
                            "Layers": [blob_path(layer["digest"]) for layer in layers]}])


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


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    return line if len(line) < 200 else line[:197] + "..."
