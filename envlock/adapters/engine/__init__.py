"""The only place that talks to Docker and registries (through docker-py).

Every docker-py call runs inside ``errors.translated()``, the one place its exceptions become
envlock errors that name the engine (``DOCKER_HOST``) or the registry and say what to do.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from envlock.adapters.engine.errors import (
    BuildError,
    EngineError,
    registry_error,
    translated,
    unavailable,
)

#: Marks envlock's build containers; ``docker commit`` copies it into the image's labels.
STAGING_LABEL = "envlock.staging"


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


@dataclass
class PushStats:
    layers_pushed: int = 0
    layers_existing: int = 0
    bytes_pushed: int = 0
    digest: str | None = None
    _sizes: dict[str, int] = field(default_factory=dict)


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
            self.client.api.pull(repo, tag=tag or "latest", auth_config=auth)
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

    def restate(self, image_id: str, *, created: str, created_by: str,
                drop_labels: tuple[str, ...] = ()) -> str:
        """The image ``image_id`` again, with a canonical config (see ``imageconfig``):
        same layers, a fixed creation time, no trace of the committing container. Only
        the config travels (``docker load`` skips layers the engine already has), so
        this costs milliseconds whatever the image's size; returns the new image id."""
        from envlock.image import imageconfig

        with translated(f"reading {image_id[:19]} back",
                        missing=f"image {image_id} vanished from the engine"):
            inspect = self.client.api.inspect_image(image_id)
            history = self.client.api.history(image_id)
        config = imageconfig.canonical_config(inspect, history, created=created,
                                              created_by=created_by, drop_labels=drop_labels)
        blob = imageconfig.config_bytes(config)
        expected = imageconfig.image_id(config)
        layers = [f"{n}/layer.tar" for n in range(len(config["rootfs"]["diff_ids"]))]
        manifest = json.dumps([{"Config": "config.json", "RepoTags": None, "Layers": layers}])
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name, data in (("config.json", blob), ("manifest.json", manifest.encode())):
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        archive.seek(0)
        loaded = self.load(archive)
        if expected not in loaded:
            raise EngineError(f"the engine loaded {loaded or 'nothing'} instead of {expected} "
                              f"when re-stating {image_id[:19]}")
        return expected

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

    def commit_after(self, image: str, command: list[str], archives: Iterable[tuple[str, Any]],
                     changes: list[str], repository: str, tag: str, run: bool = True) -> str:
        """create → copy archives in → (run the command) → commit with ``changes``.

        Files copied in and removed by the command never reach the committed layer,
        which is how the wheelhouse stays out of the image."""
        container = self._create(image, command, purpose=f"{repository}:{tag}")
        try:
            with translated(f"building {repository}:{tag}"):
                self._fill_and_run(container, image, archives, run)
                image_attrs = container.commit(repository=repository, tag=tag, changes=changes)
            return str(image_attrs.id)
        finally:
            self._discard(container.id)

    @staticmethod
    def _fill_and_run(container: Any, image: str, archives: Iterable[tuple[str, Any]],
                      run: bool) -> None:
        for path, data in archives:
            container.put_archive(path, data)
        if not run:
            return
        container.start()
        code = int(container.wait().get("StatusCode", 1))
        if code != 0:
            tail = container.logs(stdout=True, stderr=True).decode(errors="replace")
            last = [line for line in tail.strip().splitlines() if line.strip()][-3:]
            raise BuildError(f"build step failed in {image[:40]} (exit {code}): "
                             f"{' | '.join(last)}", "rerun with --debug for the full log")

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

    def run_experiment(self, image: str, command: list[str] | None, *, env: dict[str, str],
                       binds: dict[str, dict[str, str]], gpus: Any = None,
                       network: str = "none", on_output: Callable[[bytes], None],
                       shm_size: int | None = None, nano_cpus: int | None = None,
                       mem_limit: int | None = None) -> int:
        """Run an experiment hardened: non-root, no new privileges, no capabilities,
        read-only root filesystem with a writable /workspace (a volume filled from the
        image) and /tmp; streams its output; returns its exit code. ``shm_size`` (bytes)
        sizes /dev/shm, ``nano_cpus`` / ``mem_limit`` cap CPUs and memory (None: the
        engine's defaults)."""
        import docker
        from docker.types import DeviceRequest, Mount

        requests = None
        if gpus is not None:
            requests = [DeviceRequest(count=gpus.get("count"), device_ids=gpus.get("ids"),
                                      capabilities=[["gpu"]])]
        try:
            with translated("creating the replay container",
                            missing=f"image {image} is not in the engine"):
                container = self.client.containers.create(
                    image, command=command, environment=env, user="1000:1000",
                    security_opt=["no-new-privileges"], cap_drop=["ALL"], read_only=True,
                    tmpfs={"/tmp": "rw,nosuid,nodev,size=2g"}, volumes=binds,
                    mounts=[Mount(target="/workspace", source=None, type="volume")],
                    network_mode=network, device_requests=requests, detach=True,
                    **_limits(shm_size=shm_size, nano_cpus=nano_cpus, mem_limit=mem_limit))
        except EngineError as exc:  # e.g. --cpus beyond this host's CPUs
            exc.hint = exc.hint if "not in the engine" in exc.message else \
                "check --cpus, --memory and --shm-size against this host"
            raise
        try:
            with translated("running the replay container"):
                container.start()
                for chunk in container.logs(stream=True, follow=True):
                    on_output(chunk)
                return int(container.wait().get("StatusCode", 1))
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)

    def version(self) -> dict[str, str | None]:
        """The engine's version facts (``docker version``): engine, API, OS, kernel."""
        with translated("reading its version"):
            info = self.client.version()
        return {"engine": "docker", "version": info.get("Version"),
                "api_version": info.get("ApiVersion"), "os": info.get("Os"),
                "arch": info.get("Arch"), "kernel": info.get("KernelVersion")}

    # ---------------------------------------------------------------- push

    def push(self, repository: str, tag: str, auth: dict[str, str] | None = None,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> PushStats:
        stats = PushStats()
        registry = registry_of(f"{repository}:{tag}")
        action = f"pushing {repository}:{tag}"
        with translated(action, registry=registry):
            for event in self.client.api.push(repository, tag=tag, stream=True, decode=True,
                                              auth_config=auth):
                if "error" in event or "errorDetail" in event:
                    detail = (event.get("errorDetail") or {}).get("message") or event.get("error")
                    raise registry_error(detail, registry, action)
                _count(stats, event)
                if on_event:
                    on_event(event)
        return stats


def _limits(**limits: int | None) -> dict[str, int]:
    """Only the limits that were decided: docker-py sends every keyword it is given."""
    return {key: value for key, value in limits.items() if value is not None}


def _count(stats: PushStats, event: dict[str, Any]) -> None:
    status = event.get("status", "")
    layer = event.get("id", "")
    if status == "Pushing":
        total = (event.get("progressDetail") or {}).get("total") or 0
        stats._sizes[layer] = max(stats._sizes.get(layer, 0), int(total))
    elif status == "Pushed":
        stats.layers_pushed += 1
        stats.bytes_pushed += stats._sizes.get(layer, 0)
    elif status == "Layer already exists":
        stats.layers_existing += 1
    aux = event.get("aux") or {}
    if aux.get("Digest"):
        stats.digest = aux["Digest"]


def tar_directory(directory: Path, arcname: str) -> io.BufferedReader:
    """A tar of ``directory`` (as ``arcname``) in a temporary file, opened for reading."""
    import tempfile

    handle = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; the caller closes it  # noqa: SIM115 - returned open, closed by the caller
    with tarfile.open(fileobj=handle, mode="w") as archive:
        archive.add(str(directory), arcname=arcname)
    handle.seek(0)
    return handle  # type: ignore[return-value]

