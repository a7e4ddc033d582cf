"""files_digest: the same content whether read from a wheel's RECORD or an installed one."""

from envlock.snapshot._probe import content_path, files_digest
from tests.factories import make_lock, package

WHEEL_RECORD = [
    ("demo/__init__.py", "sha256=AAA"), ("demo/core.py", "sha256=BBB"),
    ("demo-1.0.data/purelib/extra.py", "sha256=CCC"),
    ("demo-1.0.data/scripts/demo-tool", "sha256=DDD"),
    ("demo-1.0.dist-info/METADATA", "sha256=EEE"), ("demo-1.0.dist-info/RECORD", ""),
]
INSTALLED_RECORD = [
    ("demo/__init__.py", "sha256=AAA"), ("demo/core.py", "sha256=BBB"), ("extra.py", "sha256=CCC"),
    ("demo/__pycache__/core.cpython-311.pyc", ""), ("../../../bin/demo-tool", "sha256=ZZZ"),
    ("demo-1.0.dist-info/METADATA", "sha256=EEE"), ("demo-1.0.dist-info/INSTALLER", "sha256=FFF"),
    ("demo-1.0.dist-info/direct_url.json", "sha256=GGG"), ("demo-1.0.dist-info/REQUESTED", ""),
    ("demo-1.0.dist-info/RECORD", ""),
]


def test_wheel_and_installed_records_give_the_same_digest():
    assert files_digest(WHEEL_RECORD) == files_digest(INSTALLED_RECORD)


def test_any_content_change_changes_the_digest():
    edited = [(p, "sha256=XXX" if p == "demo/core.py" else h) for p, h in INSTALLED_RECORD]
    assert files_digest(edited) != files_digest(INSTALLED_RECORD)


def test_content_paths():
    assert content_path("pkg-1.0.data/platlib/mod.so") == "mod.so"
    assert content_path("pkg-1.0.data/headers/x.h") is None
    assert content_path("/abs/elsewhere") is None
    entry_points = "pkg-1.0.dist-info/entry_points.txt"
    assert content_path(entry_points) == entry_points


def test_editable_project_package_does_not_change_the_environment_digest():
    def lock_with(commit, dirty, root):
        editable = package("myproj", "0.1.0", kind="editable", path=f"{root}/src/myproj",
                           git_commit=commit, git_dirty=dirty)
        git = {**make_lock().git, "root": root, "commit": commit}
        return make_lock(packages=(package("numpy", "2.1.0"), editable), git=git)

    a = lock_with("a" * 40, False, "/home/alice/proj")
    b = lock_with("b" * 40, True, "/srv/ci/checkout")
    assert a.env_digest == b.env_digest
