"""The wheel pip would pick for the image, from an index's listing (pure)."""

from __future__ import annotations

from envlock.model.wheelpick import Candidate, best_wheel, supported_tags

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def _c(filename: str, sha: str | None = "ab" * 32) -> Candidate:
    return Candidate(filename, f"https://files.example/{filename}", sha)


def test_the_most_specific_tag_for_the_images_python_and_platform_wins():
    ranks = supported_tags("3.11.2", PLATFORMS)
    files = [_c("numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.whl"),
             _c("numpy-2.1.3-cp311-cp311-macosx_11_0_arm64.whl"),
             _c("numpy-2.1.3-cp311-abi3-manylinux_2_17_x86_64.whl"),
             _c("numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
             _c("numpy-2.1.3-py3-none-any.whl"),
             _c("numpy-2.1.2-cp311-cp311-manylinux_2_28_x86_64.whl"),
             _c("numpy-2.1.3.tar.gz")]
    picked = best_wheel(files, "numpy", "2.1.3", ranks)
    assert picked is not None and picked.filename == \
        "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert best_wheel(files[4:5], "numpy", "2.1.3", ranks).filename.endswith("-none-any.whl")


def test_local_versions_names_and_missing_hashes():
    ranks = supported_tags("3.11", PLATFORMS)
    files = [_c("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"),
             _c("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", sha=None)]
    assert best_wheel(files, "torch", "2.13.0+cpu", ranks).filename.startswith("torch-2.13.0+cpu")
    assert best_wheel(files, "torch", "2.13.0", ranks) is None  # no sha256: pip's path instead
    assert best_wheel([_c("Foo_Bar-1.0-py3-none-any.whl")], "foo-bar", "1.0", ranks) is not None
    assert best_wheel(files, "torch", "not a version", ranks) is None
