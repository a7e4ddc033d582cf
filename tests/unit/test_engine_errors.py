"""Docker and registry failures say what really happened: unreachable, refused
credentials, not found, out of space — whatever digits the URLs in them carry."""

import pytest

from envlock.adapters.engine.errors import (
    EngineError,
    RegistryError,
    registry_error,
    translated,
)

DIGEST = "sha256:4013" + "a" * 56  # a digest with "401" in it, as many have


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "error"


def api_error(status: int, text: str) -> Exception:
    import docker  # docker-py and requests: imported by the tests that raise their errors

    return docker.errors.APIError(f"{status} Server Error", Response(status), explanation=text)


@pytest.mark.parametrize("text, says", [
    (f'Patch "http://127.0.0.1:5055/v2/p/blobs/uploads/{DIGEST}": dial tcp 127.0.0.1:5055: '
     "connect: connection refused", "is unreachable"),
    (f"Put http://127.0.0.1:5055/v2/p/manifests/{DIGEST}: EOF", "is unreachable"),
    ("write tcp 127.0.0.1:5055: connection reset by peer", "is unreachable"),
    ("unauthorized: authentication required", "refused the credentials"),
    ("denied: requested access to the resource is denied", "refused the credentials"),
    ("received unexpected HTTP status: 401 Unauthorized", "refused the credentials"),
    ("manifest unknown: manifest unknown", "not found in registry"),
    ("filesystem: no space left on device", "out of disk space"),
    (f"blob upload invalid: digest {DIGEST}", "failed (pushing"),
])
def test_registry_failures_are_classified_by_what_happened(text, says):
    error = registry_error(text, "127.0.0.1:5055", "pushing p:t")
    assert isinstance(error, RegistryError) and says in error.message, error.message


def test_an_engine_500_is_translated_never_raw():
    with pytest.raises(EngineError) as caught, translated("building p:t"):
        raise api_error(500, "mkdir /var/lib/docker/overlay2/x: no space left on device")
    assert caught.value.message.startswith("the Docker engine ran out of disk space building")
    assert "docker system prune" in caught.value.hint
    with pytest.raises(EngineError) as caught, translated("tagging x"):
        raise api_error(500, "something odd")
    assert caught.value.message == "the Docker engine failed tagging x (HTTP 500): something odd"
    with pytest.raises(EngineError) as caught, translated("creating the replay container"):
        raise api_error(400, "Range of CPUs is from 0.01 to 2.00")
    assert caught.value.message.startswith("the Docker engine refused creating the replay "
                                           "container (HTTP 400): Range of CPUs")


def test_missing_and_unreachable_and_hung():
    import docker
    import requests

    with pytest.raises(EngineError, match="image x is not in the engine"), \
            translated("saving x", missing="image x is not in the engine"):
        raise docker.errors.ImageNotFound("No such image: x")
    with pytest.raises(EngineError, match="cannot reach the Docker engine"), translated("x"):
        raise requests.exceptions.ConnectionError("connection refused")
    with pytest.raises(EngineError, match="did not answer in time"), translated("x"):
        raise requests.exceptions.ReadTimeout("read timed out")


def test_with_a_registry_an_api_error_is_a_registry_error():
    with pytest.raises(RegistryError, match="is unreachable"), \
            translated("pushing p:t", registry="127.0.0.1:5055"):
        raise api_error(500, "Get http://127.0.0.1:5055/v2/: dial tcp: connection refused")
