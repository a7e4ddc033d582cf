import json

from envlock.snapshot.packages import classify, index_url_for, normalize, resolve

SITE = "/v/lib/python3.11/site-packages"


def raw(name, version, *, location=SITE, kind="dist-info", order=3, direct_url=None,
        installer="pip", dir=None):
    return {"name": name, "version": version, "location": location, "kind": kind,
            "order": order, "installer": installer, "requested": False,
            "direct_url": json.dumps(direct_url) if direct_url else None,
            "dir": dir or f"{name}-{version}.{kind}"}


def test_normalize():
    assert normalize("Typing_Extensions") == "typing-extensions"
    assert normalize("zope.interface") == "zope-interface"


def test_vcs_source_keeps_commit_and_strips_credentials():
    src = classify(raw("lib", "0.1", direct_url={
        "url": "https://user:ghp_TOKEN@github.com/org/lib.git",
        "vcs_info": {"vcs": "git", "commit_id": "f" * 40, "requested_revision": "v0.1"}}),
        [SITE], None)
    assert (src.kind, src.vcs, src.commit, src.requested_revision) == \
        ("vcs", "git", "f" * 40, "v0.1")
    assert src.url == "https://github.com/org/lib.git"


def test_archive_source_records_hash_both_spellings():
    modern = classify(raw("w", "1", direct_url={
        "url": "file:///wheels/w-1-py3-none-any.whl",
        "archive_info": {"hashes": {"sha256": "ab" * 32}}}), [SITE], None)
    legacy = classify(raw("w", "1", direct_url={
        "url": "https://h/w-1.tar.gz", "archive_info": {"hash": "sha256=" + "cd" * 32}}),
        [SITE], None)
    assert (modern.kind, modern.path, modern.hash) == \
        ("archive", "/wheels/w-1-py3-none-any.whl", "sha256:" + "ab" * 32)
    assert legacy.hash == "sha256:" + "cd" * 32 and legacy.path is None


def test_directory_and_editable_sources():
    editable = classify(raw("e", "0.0.1", direct_url={
        "url": "file:///src/my%20pkg", "dir_info": {"editable": True}}), [SITE], None)
    plain = classify(raw("d", "1", direct_url={"url": "file:///src/d", "dir_info": {}}),
                     [SITE], None)
    assert (editable.kind, editable.path) == ("editable", "/src/my pkg")
    assert (plain.kind, plain.path) == ("directory", "/src/d")


def test_legacy_develop_egg_info_outside_site_packages_is_editable():
    src = classify(raw("old", "1.0", location="/src/old", kind="egg-info"), [SITE], None)
    assert (src.kind, src.path) == ("editable", "/src/old")


def test_conda_system_and_index():
    assert classify(raw("c", "1", installer="conda"), [SITE], None).kind == "conda"
    assert classify(raw("s", "1", location="/usr/lib/python3/dist-packages", installer=None),
                    [SITE], None).kind == "system"
    assert classify(raw("numpy", "2.0.0"), [SITE], None).kind == "index"


def test_cuda_local_tags_point_at_the_pytorch_index():
    assert index_url_for("torch", "2.3.1+cu121", None) == "https://download.pytorch.org/whl/cu121"
    assert index_url_for("torchvision", "0.18.1+cpu", None) == \
        "https://download.pytorch.org/whl/cpu"
    assert index_url_for("torch", "2.3.0+rocm6.0", None) == \
        "https://download.pytorch.org/whl/rocm6.0"
    assert index_url_for("torch", "2.3.1", "https://pypi.org/simple") == "https://pypi.org/simple"
    assert index_url_for("mylib", "1.0+cu121", None) is None


def test_duplicates_resolve_in_sys_path_order_and_losers_are_kept():
    raws = [raw("six", "1.16.0", location="/late", order=5),
            raw("six", "1.15.0", location="/early", order=2),
            raw("numpy", "1.0", order=3)]
    out = resolve(raws, [SITE])
    assert [(p.name, p.version, p.location) for p in out.packages] == \
        [("numpy", "1.0", SITE), ("six", "1.15.0", "/early")]
    assert [(s.name, s.version, s.location) for s in out.shadowed] == \
        [("six", "1.16.0", "/late")]
    assert "shadowed by six-1.15.0.dist-info in /early" in out.shadowed[0].reason


def test_stale_egg_info_loses_to_dist_info_in_the_same_directory():
    raws = [raw("Foo_Bar", "0.9", kind="egg-info"), raw("foo-bar", "1.0")]
    out = resolve(raws, [SITE])
    assert [(p.name, p.version) for p in out.packages] == [("foo-bar", "1.0")]
    assert out.shadowed[0].version == "0.9"


def test_unreadable_metadata_is_reported_not_dropped():
    broken = raw("x", "1")
    broken.update(name=None, version=None, dir="x-1.dist-info")
    out = resolve([broken], [SITE])
    assert out.packages == []
    assert out.problems and out.shadowed[0].reason == "unreadable metadata"


def _wheel(path, files: dict[str, bytes]):
    """A wheel at ``path`` whose RECORD lists ``files`` with their real hashes."""
    import base64
    import hashlib
    import zipfile

    def digest(data):
        raw_digest = hashlib.sha256(data).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw_digest).rstrip(b"=").decode()

    dist_info = path.name.split("-")[0] + "-" + path.name.split("-")[1] + ".dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        record = [f"{n},{digest(d)},{len(d)}" for n, d in files.items()]
        archive.writestr(f"{dist_info}/RECORD", "\n".join([*record, f"{dist_info}/RECORD,,"]))
    return path


def test_a_package_installed_from_a_distributions_wheel_is_named_a_rebuild(tmp_path):
    from dataclasses import replace

    from envlock.snapshot.packages import with_origins
    from envlock.snapshot.rebuilt import distribution_wheels, wheel_files_digest
    from tests.factories import package

    files = {"pip/__init__.py": b"debian's pip", "pip-23.0.1.dist-info/METADATA": b"Name: pip"}
    wheel = _wheel(tmp_path / "pip-23.0.1-py3-none-any.whl", files)
    _wheel(tmp_path / "setuptools-66.1.1-py3-none-any.whl", {"setuptools/x.py": b"other"})
    digest = wheel_files_digest(wheel)
    assert digest and digest.startswith("sha256:")
    pkgs = [replace(package("pip", "23.0.1"), files_digest=digest),
            replace(package("setuptools", "66.1.1"), files_digest="sha256:" + "0" * 64),
            replace(package("six", "1.16.0"), files_digest="sha256:" + "0" * 64)]
    origins = distribution_wheels(pkgs, [str(tmp_path), str(tmp_path / "absent")])
    assert origins == {"pip": str(wheel)}  # setuptools' files differ: not its rebuild
    marked = with_origins(pkgs, origins)
    assert marked[0].source.origin == str(wheel) and marked[0].source.describe() == \
        f"rebuild {wheel}"
    assert marked[1] is pkgs[1] and marked[2].source.origin is None
    assert distribution_wheels(pkgs, [str(tmp_path / "absent")]) == {}


def test_origin_is_written_only_where_it_applies_and_never_changes_the_environment():
    from dataclasses import replace

    from envlock.model.lockfile import dumps, loads
    from tests.factories import make_lock, package

    plain = package("pip", "23.0.1")
    rebuilt = replace(plain, source=replace(plain.source, origin="/usr/share/python-wheels/p.whl"))
    assert "origin" not in plain.to_dict()["source"]
    assert rebuilt.to_dict()["source"]["origin"] == "/usr/share/python-wheels/p.whl"
    assert rebuilt.env_key() == plain.env_key()
    lock = make_lock(packages=(rebuilt,))
    again = loads(dumps(lock))
    assert again.packages[0].source.origin == "/usr/share/python-wheels/p.whl"
    assert again.env_digest == make_lock(packages=(plain,)).env_digest
    assert "origin" not in dumps(make_lock(packages=(plain,)))
