"""The only place that talks to Docker and registries (through docker-py).

Every docker-py call runs inside ``errors.translated()``, the one place its exceptions become
envlock errors that name the engine (``DOCKER_HOST``) or the registry and say what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from envlock.adapters.engine.errors import (
    EngineError,
    translated,
    unavailable,
)
from envlock.model import runrecord

#: Marks envlock's build containers; ``docker commit`` copies it into the image's labels.
STAGING_LABEL = runrecord.LABEL_STAGING


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: dict[str, str]
    repo_digests: tuple[str, ...]
    size: int
    repo_tags: tuple[str, ...] = ()

    def digest_in(self, repository: str) -> str | None:
        """The registry manifest digest this image has under ``repository``, if pushed."""
        for ref in self.repo_digests:
            name, _, digest = ref.partition("@")
            if name == repository:
                return digest
        return None


def pull_progress(events: Any, label: str) -> str | None:
    """Follow a pull's JSON events, reporting bytes downloaded of the layers' total
    (envlock.progress); the engine's error, if it reported one."""
    from envlock import progress

    layers: dict[str, tuple[int, int]] = {}
    error = None
    with progress.transfer(label) as moving:
        for event in events:
            error = event.get("error") or error
            detail = event.get("progressDetail") or {}
            if event.get("status") == "Downloading" and detail.get("total"):
                layers[str(event.get("id"))] = (int(detail.get("current") or 0),
                                                int(detail["total"]))
                moving.total = sum(total for _done, total in layers.values())
                moving.advance(sum(done for done, _total in layers.values()) - moving.done)
    return str(error) if error else None


def registry_of(reference: str) -> str:
    """The registry host of an image reference (``docker.io`` when it names none)."""
    from envlock.image.oci import parse_reference

    return parse_reference(reference, require_registry=False).registry


def split_tag(reference: str) -> tuple[str, str | None]:
    """``repo:tag`` -> (repo, tag); a port colon is not a tag, a digest is no tag."""
    from envlock.image.oci import parse_reference

    if "@" in reference:
        return reference.partition("@")[0], None
    ref = parse_reference(reference, require_registry=False)
    name = reference[:len(reference) - len(ref.tag) - 1] if ref.tag else reference
    return name, ref.tag


class Engine:
    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def connect(cls) -> Engine:
        import docker

        with translated("connecting"):
            try:
                client = docker.from_env(timeout=600)
                client.ping()
            except docker.errors.DockerException as exc:
                raise unavailable(exc) from exc
        return cls(client)

    def login(self, registry: str, username: str, password: str) -> None:
        """Credentials for ``registry`` for this engine session (nothing is written to the
        Docker config). Every later push, pull and digest lookup on that registry uses them;
        wrong ones fail here, before anything is built or recorded."""
        with translated(f"logging in as {username}", registry=registry):
            self.client.login(username=username, password=password, registry=registry,
                              reauth=True)

    # ---------------------------------------------------------------- images

    def image(self, reference: str) -> ImageInfo | None:
        import docker

        with translated(f"inspecting {reference}"):
            try:
                attrs = self.client.api.inspect_image(reference)
            except docker.errors.NotFound:
                return None
        return ImageInfo(id=attrs["Id"], labels=(attrs.get("Config") or {}).get("Labels") or {},
                         repo_digests=tuple(attrs.get("RepoDigests") or ()),
                         size=int(attrs.get("Size") or 0),
                         repo_tags=tuple(attrs.get("RepoTags") or ()))

    def registry_digest(self, reference: str) -> str | None:
        """The manifest digest the registry holds for ``reference`` (None: not there)."""
        import docker

        with translated(f"looking up {reference}", registry=registry_of(reference)):
            try:
                data = self.client.images.get_registry_data(reference)
            except docker.errors.APIError as exc:
                text = str(exc.explanation or exc).lower()
                if "manifest unknown" in text or "not found" in text or exc.status_code == 404:
                    return None
                raise
        return str(data.id)

    def pull(self, reference: str, auth: dict[str, str] | None = None) -> ImageInfo:
        name, _, digest = reference.partition("@")
        repo, tag = (name, digest) if digest else split_tag(reference)
        # a digest goes where the tag would: the engine pulls exactly that manifest
        with translated(f"pulling {reference}", registry=registry_of(reference)):
            events = self.client.api.pull(repo, tag=tag or "latest", auth_config=auth,
                                          stream=True, decode=True)
            failed = pull_progress(events, f"pulling {reference}")
        if failed:
            raise EngineError(f"pulling {reference}: {failed}")
        info = self.image(reference)
        if info is None:
            raise EngineError(f"pulled {reference} but the engine does not show it")
        return info

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        with translated(f"tagging {image_id[:19]} as {repository}:{tag}",
                        missing=f"image {image_id} is not in the engine"):
            self.client.api.tag(image_id, repository, tag, force=True)

    def remove(self, reference: str) -> None:
        import docker

        with translated(f"removing {reference}"), \
                contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_image(reference, force=True, noprune=False)

    def save(self, reference: str, dest: BinaryIO) -> None:
        """``docker save`` of one image, streamed into ``dest``."""
        with translated(f"saving {reference}",
                        missing=f"image {reference} is not in the engine"):
            for chunk in self.client.api.get_image(reference, chunk_size=1 << 20):
                dest.write(chunk)

    def load(self, archive: BinaryIO) -> list[str]:
        """``docker load`` of a tar (docker-archive ``manifest.json``); what it loaded."""
        loaded: list[str] = []
        with translated("loading an image"):
            for event in self.client.api.load_image(archive):
                if "error" in event or "errorDetail" in event:
                    detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise EngineError(f"the engine refused to load the image: {detail}")
                text = str(event.get("stream") or "")
                for prefix in ("Loaded image ID: ", "Loaded image: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix):].strip())
        return loaded

    # ---------------------------------------------------------------- containers

    def run(self, image: str, command: list[str], *, user: str = "0:0",
            stdout_only: bool = False) -> tuple[int, bytes]:
        """Run a command with no network; returns (exit code, output)."""
        container = self._create(image, command, user=user)
        try:
            with translated(f"running {command[0]} in {image[:40]}"):
                container.start()
                status = container.wait()
                output = container.logs(stdout=True, stderr=not stdout_only)
            return int(status.get("StatusCode", 1)), output
        finally:
            self._discard(container.id)

    def _create(self, image: str, command: list[str], user: str = "0:0",
                purpose: str = "probe") -> Any:
        with translated(f"creating a container from {image[:40]}",
                        missing=f"image {image} is not in the engine"):
            return self.client.containers.create(image, command=command, entrypoint=[],
                                                 user=user, network_disabled=True,
                                                 working_dir="/", detach=True,
                                                 labels={STAGING_LABEL: purpose})

    def _discard(self, container_id: str) -> None:
        """Remove a staging container, also after an interrupt: a commit still running in
        the engine keeps it busy for a moment, so retry until it is really gone."""
        import time

        import docker

        for _ in range(40):
            try:
                self.client.api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                pass
            try:
                self.client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                return
            time.sleep(0.25)

    def run_experiment(self, args: Mapping[str, Any], *, on_output: Callable[[bytes], None],
                       timeout: float | None = None) -> int:
        """Run a replay's container: ``args`` are docker-py's create arguments as
        :func:`envlock.model.replayspec.docker_args` renders them from the replay's spec
        (hardened, its resources, GPUs, network and hostname); streams its output, returns
        its exit code and removes it. One that outlives ``timeout`` seconds is stopped:
        :class:`envlock.errors.ReplayTimeout`."""
        import docker

        try:
            with translated("creating the replay container",
                            missing=f"image {args.get('image')} is not in the engine"):
                container = self.client.containers.create(**args)
        except EngineError as exc:  # e.g. --cpus beyond this host's CPUs
            exc.hint = exc.hint if "not in the engine" in exc.message else \
                "check --cpus, --memory and --shm-size against this host"
            raise
        try:
            return self._follow(container, on_output, timeout)
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)

    def _follow(self, container: Any, on_output: Callable[[bytes], None],
                timeout: float | None) -> int:
        """Start ``container``, stream its output until it ends (or is stopped when
        ``timeout`` passes), its exit code."""
        import threading

        from envlock.errors import ReplayTimeout

        expired = threading.Event()
        timer = threading.Timer(timeout, _stop, (container, expired)) if timeout else None
        try:
            with translated("running the replay container"):
                container.start()
                if timer is not None:
                    timer.daemon = True
                    timer.start()
                for chunk in container.logs(stream=True, follow=True):
                    on_output(chunk)
                code = int(container.wait().get("StatusCode", 1))
        finally:
            if timer is not None:
                timer.cancel()
        if expired.is_set():
            raise ReplayTimeout(timeout or 0)
        return code

    def version(self) -> dict[str, str | None]:
        """The engine's version facts (``docker version``): engine, API, OS, kernel."""
        with translated("reading its version"):
            info = self.client.version()
        return {"engine": "docker", "version": info.get("Version"),
                "api_version": info.get("ApiVersion"), "os": info.get("Os"),
                "arch": info.get("Arch"), "kernel": info.get("KernelVersion")}

    # ---------------------------------------------------------------- push

def _stop(container: Any, expired: Any) -> None:
    """The timeout's action (in the timer's thread): SIGTERM, SIGKILL 5 s later; the log
    stream the main thread follows then ends."""
    import docker

    expired.set()
    with contextlib.suppress(docker.errors.DockerException):
        container.stop(timeout=5)


