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


def _content_path_by_parts(path):
    """The first, split-based content_path: the fast one must agree with it on every path."""
    if path.startswith(("../", "/")) or path.endswith((".pyc", ".pyo")):
        return None
    parts = path.split("/")
    if "__pycache__" in parts:
        return None
    if parts[0].endswith(".data"):
        if len(parts) > 2 and parts[1] in ("purelib", "platlib"):
            return "/".join(parts[2:])
        return None
    if parts[0].endswith(".dist-info") and len(parts) == 2 and parts[1] in (
            "INSTALLER", "REQUESTED", "RECORD", "RECORD.jws", "RECORD.p7s", "direct_url.json"):
        return None
    return path


EDGE_PATHS = [
    "", "a", "a/b", "x.data", "x.data/", "x.data/purelib", "x.data/purelib/", "x.data/platlib/m.so",
    "x.data/purelib/a/b.py", "x.data/scripts/tool", "x.data/headers/x.h", "x.data/purelibx/a",
    "a/x.data/purelib/m.py", "d.dist-info", "d.dist-info/", "d.dist-info/RECORD",
    "d.dist-info/RECORD/x", "d.dist-info/INSTALLER", "d.dist-info/METADATA",
    "d.dist-info/licenses/RECORD", "d.dist-info/direct_url.json", "pkg/d.dist-info/RECORD",
    "__pycache__", "__pycache__/m.pyc", "pkg/__pycache__/m.cpython-311.opt-1.pyc",
    "pkg/__pycache__/data.txt", "pkg/__pycache__x/m.py", "pkg/x__pycache__/m.py",
    "pkg/__pycache__", "../bin/tool", "/etc/x", "./pkg/m.py", "pkg/m.pyo", "pkg//m.py",
    "x.data/purelib/__pycache__/m.py", "x.data/purelib/../m.py", "pkg/mod.py ",
]


def test_content_path_agrees_with_the_split_based_definition():
    for path in EDGE_PATHS:
        assert content_path(path) == _content_path_by_parts(path), path


def test_record_rows_reads_crlf_quoted_and_short_lines(tmp_path):
    from envlock.snapshot._probe import record_rows

    plain = tmp_path / "RECORD"
    plain.write_bytes(b"a/b.py,sha256=X,10\r\nc,d/e.py,sha256=Y,3\r\nbroken\r\nd.dist-info/RECORD,,"
                      b"\r\n\r\n")
    assert record_rows(str(plain)) == [("a/b.py", "sha256=X"), ("c,d/e.py", "sha256=Y"),
                                       ("d.dist-info/RECORD", "")]
    quoted = tmp_path / "RECORD2"
    quoted.write_text('"a,b.py",sha256=X,1\nc.py,sha256=Y,2\n')
    assert record_rows(str(quoted)) == [("a,b.py", "sha256=X"), ("c.py", "sha256=Y")]
    assert record_rows(str(tmp_path / "missing")) is None
