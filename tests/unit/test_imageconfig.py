"""The assembled images' configs: the recipe's instructions applied as Docker would."""

from __future__ import annotations

import json

import pytest

from envlock.image import imageconfig, oci

PARENT = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
          "container": "abc", "docker_version": "20.10",
          "config": {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "Cmd": ["python3"],
                     "Labels": {"base": "yes"}},
          "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "debootstrap"}],
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}}


def test_instructions_set_env_labels_user_workdir_and_command():
    settings = imageconfig.apply_changes(PARENT["config"], [
        'ENTRYPOINT []', 'CMD ["python"]', 'ENV PATH="/venv/bin:/usr/bin"',
        "ENV PYTHONUNBUFFERED=1", "WORKDIR /workspace", "USER 1000:1000",
        'LABEL "envlock.env_digest"="sha256:e"'])
    assert settings["Env"] == ["LANG=C.UTF-8", "PATH=/venv/bin:/usr/bin", "PYTHONUNBUFFERED=1"]
    assert settings["Cmd"] == ["python"] and "Entrypoint" not in settings
    assert (settings["WorkingDir"], settings["User"]) == ("/workspace", "1000:1000")
    assert settings["Labels"] == {"base": "yes", "envlock.env_digest": "sha256:e"}
    assert PARENT["config"]["Env"] == ["PATH=/usr/bin", "LANG=C.UTF-8"]  # not mutated


def test_an_instruction_the_builder_cannot_apply_is_refused():
    with pytest.raises(ValueError, match="unsupported recipe instruction"):
        imageconfig.apply_changes({}, ["RUN rm -rf /"])


def test_a_child_config_adds_one_layer_and_nothing_of_the_build_host():
    child = imageconfig.child_config(PARENT, ["USER 1000:1000"], "sha256:" + "b" * 64,
                                     created="1980-01-01T00:00:00Z", created_by="envlock")
    assert child["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    assert child["created"] == "1980-01-01T00:00:00Z" and len(child["history"]) == 2
    assert not {"container", "docker_version"} & set(child)
    again = imageconfig.child_config(json.loads(json.dumps(PARENT)), ["USER 1000:1000"],
                                     "sha256:" + "b" * 64, created="1980-01-01T00:00:00Z",
                                     created_by="envlock")
    assert imageconfig.config_bytes(child) == imageconfig.config_bytes(again)


def test_base_layers_keep_their_bytes_under_oci_media_types():
    docker = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
              "digest": "sha256:" + "c" * 64, "size": 3, "annotations": {"x": "y"}}
    assert imageconfig.oci_descriptor(docker) == {
        "mediaType": oci.OCI_LAYER + "+gzip", "digest": "sha256:" + "c" * 64, "size": 3}
    manifest = json.loads(imageconfig.manifest(b"{}", [imageconfig.oci_descriptor(docker)]))
    assert manifest["mediaType"] == oci.OCI_MANIFEST
    assert manifest["config"] == {"mediaType": oci.OCI_CONFIG, "size": 2,
                                  "digest": oci.sha256_digest(b"{}")}
