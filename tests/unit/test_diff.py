from envlock.model.diff import diff_locks
from tests.factories import make_lock, package


def test_identical_locks():
    result = diff_locks(make_lock(), make_lock())
    assert result.identical and not result.env_changed
    assert result.to_dict()["packages"] == {"added": [], "removed": [], "changed": []}


def test_package_added_removed_and_changed_with_sources():
    old = make_lock(packages=(package("numpy", "1.26.4"), package("six", "1.16.0"),
                              package("mylib", "0.1", kind="vcs", url="https://g/mylib",
                                      vcs="git", commit="a" * 40)))
    new = make_lock(packages=(package("numpy", "2.0.0"), package("rich", "13.7.1"),
                              package("mylib", "0.1", kind="vcs", url="https://g/mylib",
                                      vcs="git", commit="b" * 40)))
    result = diff_locks(old, new)
    kinds = {p.name: p.kind for p in result.packages}
    assert kinds == {"mylib": "changed", "numpy": "changed", "rich": "added", "six": "removed"}
    mylib = next(p for p in result.packages if p.name == "mylib")
    assert mylib.old_source.endswith("@" + "a" * 12) and mylib.new_source.endswith("@" + "b" * 12)
    assert result.env_changed and result.old_env_digest != result.new_env_digest


def test_categories_for_torch_driver_gpu_os_git():
    old = make_lock()
    new = make_lock(
        frameworks={"torch": {**old.frameworks["torch"], "cudnn": "9.1.0.70"}},
        gpu={**old.gpu, "driver_version": "550.54.15",
             "devices": [{**old.gpu["devices"][0], "name": "NVIDIA H100 80GB HBM3"}]},
        os={**old.os, "kernel": "6.5.0"},
        git={**old.git, "commit": "c" * 40, "dirty": True},
    )
    result = diff_locks(old, new)
    fields = {(c.category, c.field) for c in result.changes}
    assert fields == {("frameworks", "torch.cudnn"), ("gpu", "driver_version"),
                      ("gpu", "devices"), ("os", "kernel"), ("git", "commit"), ("git", "dirty")}
    assert not result.env_changed  # nothing that defines the image changed


def test_python_change_is_environment_drift():
    old = make_lock()
    new = make_lock(python={**old.python, "version": "3.11.9"})
    result = diff_locks(old, new)
    assert result.env_changed
    assert [(c.field, c.old, c.new) for c in result.changes] == [("version", "3.11.7", "3.11.9")]


def test_git_appearing_is_reported():
    result = diff_locks(make_lock(git=None), make_lock())
    assert [(c.category, c.field, c.old, c.new) for c in result.changes] == \
        [("git", "repository", False, True)]
