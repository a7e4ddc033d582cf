"""``--builder``, ``--registry`` and ``--no-push`` choose the build's sinks, in one place;
capture's Python API options split into a request and its collaborators."""

from __future__ import annotations

import pytest

from envlock.errors import UsageError
from envlock.image import oci
from envlock.operations.build import BuildOptions
from envlock.operations.build.sinks import (
    EngineSink,
    RegistrySink,
    StoreSink,
    check_builder,
    choose,
)
from envlock.operations.capture import CaptureRequest, request_from

TARGET = oci.parse_reference("reg.example:5000/team/proj")
ENGINE, REGISTRY = object(), object()


def kinds(options: BuildOptions, engine: object | None, registry: object | None) -> list[type]:
    target = TARGET if registry is not None else None
    return [type(s) for s in choose(options, engine, target, registry)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("builder", "engine", "registry", "push", "expected"), [
    ("auto", ENGINE, REGISTRY, True, [RegistrySink, EngineSink]),  # loads after the push
    ("auto", None, REGISTRY, True, [RegistrySink]),
    ("auto", ENGINE, None, True, [EngineSink]),
    ("auto", None, None, True, [StoreSink]),
    ("docker", ENGINE, REGISTRY, False, [EngineSink]),
    ("oci", ENGINE, REGISTRY, True, [RegistrySink]),
    ("oci", ENGINE, REGISTRY, False, [StoreSink]),
    ("oci", None, None, True, [StoreSink]),
])
def test_the_builder_registry_and_push_choose_the_sinks_in_delivery_order(
        builder, engine, registry, push, expected):
    assert kinds(BuildOptions(builder=builder, push=push), engine, registry) == expected


def test_the_engine_sink_keeps_the_builds_options_and_target():
    options = BuildOptions(builder="docker", registry="reg.example:5000/team/proj")
    (engine_sink, registry_sink) = choose(options, ENGINE, TARGET, REGISTRY)  # type: ignore[arg-type]
    assert isinstance(engine_sink, EngineSink) and engine_sink.target is TARGET
    assert isinstance(registry_sink, RegistrySink) and registry_sink.registry is REGISTRY


def test_builder_docker_without_an_engine_is_refused_before_anything():
    with pytest.raises(UsageError, match="--builder docker needs a Docker engine"):
        check_builder("docker", None)
    check_builder("auto", None)
    check_builder("oci", None)


def test_capture_options_split_into_a_request_and_collaborators():
    tracker = object()
    request, using = request_from("r1", {"registry": "reg/p", "push": False,
                                         "tracker": tracker, "python": "/usr/bin/python3"})
    assert request == CaptureRequest("r1", python="/usr/bin/python3", registry="reg/p",
                                     push=False)
    assert using == {"tracker": tracker}


def test_an_unknown_capture_option_is_a_type_error_as_before():
    with pytest.raises(TypeError, match="regsitry"):
        request_from(None, {"regsitry": "reg/p"})
