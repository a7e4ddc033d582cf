"""The canonical image config: what the engine reports minus everything build-specific."""

from __future__ import annotations

import copy
import json

from envlock.image import imageconfig

INSPECT = {  # trimmed from `docker image inspect` of a committed envlock environment image
    "Id": "sha256:732850ba5d96adaf5688f285e810c35dc4b099e7c5dcaa281a51dedc65fada23",
    "Container": "f2722658dc0a60b646e9a72c09a9e73a0ac490e6b3107308fc66d312dcaa147d",
    "Created": "2026-11-23T16:07:14.787723366Z",
    "Architecture": "amd64", "Os": "linux",
    "Config": {
        "Hostname": "f2722658dc0a", "Domainname": "", "User": "1000:1000",
        "AttachStdin": False, "Tty": False,
        "Env": ["PATH=/opt/envlock/venv/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"],
        "Cmd": ["python"], "Image": "127.0.0.1:5055/envlock-test/python@sha256:4f6b",
        "Volumes": None, "WorkingDir": "/workspace", "Entrypoint": [],
        "NetworkDisabled": True, "OnBuild": None,
        "Labels": {"envlock.env_digest": "sha256:8df4", "envlock.staging": "repo:staging-env"},
    },
    "RootFS": {"Type": "layers", "Layers": ["sha256:0782", "sha256:fab0"]},
}
HISTORY = [  # `docker history`, newest first
    {"Comment": "", "Created": 1795450034, "CreatedBy": "/bin/sh -c set -e; ...",
     "Size": 22986749},
    {"Comment": "envlock test base image", "Created": 1795434421, "CreatedBy": "",
     "Size": 190844738},
]


def canonical(inspect=INSPECT, history=HISTORY):
    return imageconfig.canonical_config(inspect, history, created="1980-01-01T00:00:00Z",
                                        created_by="envlock: 6 locked packages",
                                        drop_labels=("envlock.staging",))


def test_only_what_the_image_is_remains():
    config = canonical()
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:0782", "sha256:fab0"]}
    assert config["config"] == {
        "User": "1000:1000", "Env": INSPECT["Config"]["Env"], "Cmd": ["python"],
        "WorkingDir": "/workspace", "Entrypoint": [],  # [] overrides the base's: kept
        "Labels": {"envlock.env_digest": "sha256:8df4"}}
    assert config["created"] == "1980-01-01T00:00:00Z"
    assert config["history"] == [
        {"created": "2026-11-23T11:47:01Z", "comment": "envlock test base image"},
        {"created": "1980-01-01T00:00:00Z", "created_by": "envlock: 6 locked packages"}]
    assert "f2722658dc0a" not in json.dumps(config)


def test_a_second_commit_of_the_same_layers_gives_the_same_id():
    other = copy.deepcopy(INSPECT)
    other.update(Id="sha256:dd41", Container="9c1e" * 16, Created="2026-11-24T01:02:03Z")
    other["Config"].update(Hostname="9c1e9c1e9c1e", Labels={
        "envlock.staging": "elsewhere:staging-env", "envlock.env_digest": "sha256:8df4"})
    history = copy.deepcopy(HISTORY)
    history[0]["Created"] += 3600
    assert imageconfig.image_id(canonical(other, history)) == imageconfig.image_id(canonical())
    changed = copy.deepcopy(INSPECT)
    changed["RootFS"]["Layers"][-1] = "sha256:d47a"
    assert imageconfig.image_id(canonical(changed)) != imageconfig.image_id(canonical())


def test_the_id_is_the_sha256_of_canonical_bytes():
    import hashlib

    blob = imageconfig.config_bytes(canonical())
    assert blob == json.dumps(json.loads(blob), sort_keys=True, separators=(",", ":")).encode()
    assert imageconfig.image_id(canonical()) == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_history_that_does_not_match_the_layers_is_left_out():
    history = [HISTORY[0], {"Created": 1, "CreatedBy": "ENV X=1", "Size": 0}, HISTORY[1]]
    assert [h.get("empty_layer") for h in canonical(history=history)["history"]] == \
        [None, True, None]
    unsized = [HISTORY[0], {**HISTORY[1], "Size": 0}]  # a base layer with no size: unknowable
    assert canonical(history=unsized)["history"] == [
        {"created": "1980-01-01T00:00:00Z", "created_by": "envlock: 6 locked packages"}]
