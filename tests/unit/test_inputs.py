"""The inputs a run read: manifests, merging, the copy/reference policy, diffs, the stat
cache, and the lock's ``inputs`` section with the migration of older locks."""

import dataclasses

import yaml

from envlock.model import inputs as model
from envlock.model import lockfile
from envlock.model.inputs import Entry, Input
from tests.factories import make_lock

SHA = {c: c * 64 for c in "abcdef"}


def file_input(path, size=10, sha="a", sources=("declared",), **extra):
    return Input(path=path, kind="file", size=size, sha256=SHA[sha], sources=sources, **extra)


def test_a_directory_manifest_is_sorted_and_its_digest_is_order_free():
    one = model.directory("data", [Entry("b.csv", 2, SHA["b"]), Entry("a.csv", 1, SHA["a"])])
    two = model.directory("data", [Entry("a.csv", 1, SHA["a"]), Entry("b.csv", 2, SHA["b"])])
    assert [f.path for f in one.files] == ["a.csv", "b.csv"]
    assert one.sha256 == two.sha256 and one.size == 3
    other = model.directory("data", [Entry("a.csv", 1, SHA["c"]), Entry("b.csv", 2, SHA["b"])])
    assert other.sha256 != one.sha256
    assert one.blobs() == [("data/a.csv", 1, SHA["a"]), ("data/b.csv", 2, SHA["b"])]


def test_duplicates_merge_their_sources_and_a_file_inside_a_directory_input_is_part_of_it():
    merged = model.merge([
        file_input("/abs/x.csv", sources=("command",)),
        file_input("/abs/x.csv", sources=("mlflow",), dataset={"name": "x", "digest": "d1"}),
        file_input("data/a.csv"),
        model.directory("data", [Entry("a.csv", 10, SHA["a"])], ("config",)),
    ])
    assert [i.path for i in merged] == ["/abs/x.csv", "data"]
    assert merged[0].sources == ("command", "mlflow")
    assert merged[0].dataset == {"name": "x", "digest": "d1"}


def test_inputs_are_copied_up_to_the_cap_and_larger_ones_referenced_with_the_fix():
    items = [file_input("a", size=600), file_input("b", size=600), file_input("c", size=300)]
    decided, warnings = model.decide_carry(items, copy_max=1000)
    assert [i.carry for i in decided] == ["copy", "reference", "copy"]
    assert len(warnings) == 1 and "input b (600 B) is referenced" in warnings[0]
    assert "inputs_copy_max" in warnings[0]


def test_without_a_registry_every_input_is_referenced_and_that_is_said_once():
    decided, warnings = model.decide_carry([file_input("a"), file_input("b")], can_copy=False)
    assert {i.carry for i in decided} == {"reference"}
    assert len(warnings) == 1 and "--registry" in warnings[0]


def test_the_diff_names_added_removed_and_changed_inputs_file_by_file():
    old = [file_input("gone.csv"), file_input("same.csv"), file_input("x.csv", 10, "a"),
           model.directory("d", [Entry("1", 1, SHA["a"]), Entry("2", 2, SHA["b"])])]
    new = [file_input("new.csv"), file_input("same.csv"), file_input("x.csv", 12, "c"),
           model.directory("d", [Entry("1", 1, SHA["a"]), Entry("2", 3, SHA["c"]),
                                 Entry("3", 1, SHA["d"])])]
    result = model.diff(old, new)
    assert [i.path for i in result.added] == ["new.csv"]
    assert [i.path for i in result.removed] == ["gone.csv"]
    assert [c.path for c in result.changed] == ["d", "x.csv"]
    directory, single = result.changed
    assert [(f.path, f.what) for f in directory.files] == [("2", "changed"), ("3", "added")]
    assert single.detail == f"size 10 → 12, sha256 {SHA['a'][:12]} → {SHA['c'][:12]}"
    assert "~ x.csv: changed (size 10 → 12" in "\n".join(result.lines())
    assert model.diff(old, old).same


def test_mlflow_dataset_digests_differ_even_when_the_file_hash_is_unknown_to_match():
    a = file_input("/d.csv", dataset={"name": "d", "digest": "111"})
    b = file_input("/d.csv", dataset={"name": "d", "digest": "222"})
    (changed,) = model.diff([a], [b]).changed
    assert "MLflow dataset digest 111 → 222" in changed.detail


def test_verify_names_missing_and_changed_inputs():
    recorded = [file_input("a.csv"), file_input("b.csv", 10, "a"), file_input("c.csv")]
    found = {"a.csv": None, "b.csv": file_input("b.csv", 11, "b"), "c.csv": file_input("c.csv")}
    problems = model.verify(recorded, found)
    assert [p.describe() for p in problems] == [
        "a.csv: missing (not on this host)",
        f"b.csv: changed (size 10 → 11, sha256 {SHA['a'][:12]} → {SHA['b'][:12]})"]


def test_the_stat_cache_round_trips_and_ignores_a_damaged_file():
    cache = model.StatCache()
    key = ("/x", 1, 2, 3)
    cache.put(key, SHA["a"])
    assert cache.dirty
    again = model.StatCache.from_json(yaml.safe_load(yaml.safe_dump(cache.to_json())))
    assert again.get(key) == SHA["a"] and not again.dirty
    assert again.get(("/x", 1, 2, 4)) is None  # another inode: hashed again
    assert model.StatCache.from_json({"version": 1, "entries": [["x"]]}).entries == {}
    assert model.StatCache.from_json("nonsense").entries == {}


def test_an_output_is_a_file_modified_after_the_run_started():
    assert model.is_output(2_000, 1_000) and not model.is_output(500, 1_000)
    assert not model.is_output(2_000, None)


def test_replay_paths_are_in_the_workspace_or_the_same_absolute_path():
    assert model.container_path("data/train.csv", "/workspace") == "/workspace/data/train.csv"
    assert model.container_path("/mnt/x.csv", "/workspace") == "/mnt/x.csv"


def test_the_lock_carries_inputs_byte_stably_and_they_do_not_change_the_environment(tmp_path):
    entries = [Entry("b", 2, SHA["b"]), Entry("a", 1, SHA["a"])]
    lock = dataclasses.replace(make_lock(), inputs=(
        file_input("/abs/x.csv", dataset={"name": "x", "digest": "d"}, carry="copy"),
        model.directory("data", entries)))
    path = lockfile.write(lock, tmp_path / "l.yaml")
    loaded = lockfile.load(path)
    assert loaded.inputs == lock.inputs
    assert lockfile.dumps(loaded) == path.read_text()
    assert loaded.env_digest == make_lock().env_digest
    assert loaded.lock_digest != make_lock().lock_digest


def test_a_schema_2_lock_loads_with_no_inputs(tmp_path):
    doc = lockfile.to_document(make_lock())
    del doc["inputs"], doc["lock_digest"]
    doc["schema_version"] = 2
    doc["lock_digest"] = lockfile._digest(doc)
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(doc))
    lock = lockfile.load(path)
    assert lock.inputs == () and lock.schema_version == 3
    assert lock.env_digest == make_lock().env_digest


def test_the_sbom_lists_inputs_as_data_components_with_their_hashes():
    import json

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from envlock.model.sbom import SbomInput
    from envlock.model.sbomdoc import render

    lock = dataclasses.replace(make_lock(), inputs=(
        file_input("/abs/x.csv", dataset={"name": "x", "digest": "d"}, carry="copy"),
        model.directory("data", [Entry("a", 1, SHA["a"])])))
    document = render(SbomInput(lock=lock), "cyclonedx-json")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None
    data = {c["name"]: c for c in json.loads(document)["components"] if c["type"] == "data"}
    assert set(data) == {"/abs/x.csv", "data"}
    assert data["/abs/x.csv"]["hashes"] == [{"alg": "SHA-256", "content": SHA["a"]}]
    assert data["data"]["hashes"][0]["content"] == lock.inputs[1].sha256
    assert render(SbomInput(lock=lock), "spdx-json")  # SPDX takes them as files


def test_diff_and_show_name_the_inputs():
    from envlock.cli.render import diff_text, lock_summary
    from envlock.model.diff import diff_locks

    old = dataclasses.replace(make_lock(), inputs=(file_input("data/a.csv", 10, "a"),
                                                   file_input("gone.csv")))
    new = dataclasses.replace(make_lock(), inputs=(file_input("data/a.csv", 12, "b"),))
    found = diff_locks(old, new)
    assert not found.identical and not found.env_changed
    assert found.to_dict()["inputs"]["removed"] == ["gone.csv"]
    text = diff_text(found, "A", "B")
    assert "inputs (2):" in text and "- gone.csv (file, 10 B)" in text
    assert "~ data/a.csv: changed (size 10 → 12" in text
    assert diff_locks(old, old).identical
    assert "Inputs:" in lock_summary(old, "x") and "2 (2 reference), 20 B" in lock_summary(old, "x")
