"""The test registries themselves (tests/registry.py): real `docker-registry serve` processes
on free loopback ports, the htpasswd one refusing anonymous and wrong credentials, and a
registry that cannot start reported with its log, never silently skipped."""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.request

import pytest

from tests import registry as reg


def v2_with(address: str, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://{address}/v2/",
                                     headers={"Authorization": f"Basic {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_session_registries_answer_on_their_own_ports(open_registry, auth_registry):
    assert reg.v2_status(open_registry.address) == 200
    assert reg.v2_status(auth_registry.address) == 401
    assert v2_with(auth_registry.address, reg.AUTH_USER, reg.AUTH_PASSWORD) == 200
    assert v2_with(auth_registry.address, reg.AUTH_USER, "wrong") == 401
    assert open_registry.address != auth_registry.address


def test_the_base_image_is_pinned_in_the_session_registry(infra, open_registry):
    assert infra.base_image.startswith(f"{open_registry.address}/envlock-test/python@sha256:")
    assert infra.base_python == "3.11.2"


def test_a_registry_that_cannot_start_fails_with_its_log(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(reg, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(reg.RegistryError, match="address already in use"):
            reg.Registry.start(tmp_path, attempts=2)


def test_stop_ends_the_process(tmp_path):
    registry = reg.Registry.start(tmp_path)
    registry.stop()
    assert registry.process.poll() is not None
    assert reg.v2_status(registry.address) is None
