"""Pure: which wheel of a locked version pip would install for the image's Python and
platform, picked from the files an index (or a find-links folder) lists.

The tags are pip's for ``--python-version X.Y --implementation cp --abi cpXY --platform …``
(``packaging.tags``: the CPython tags for that ABI, then the compatible ones, most specific
first); the wheel with the most specific tag wins, as in pip, and a later build number
breaks a tie. Nothing here reads the network: the adapters list the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    filename: str
    url: str
    sha256: str | None  # None: the listing gave no sha256 (then it is not picked)


def supported_tags(python_version: str, platforms: Sequence[str]) -> dict[str, int]:
    """Each tag the image accepts (``cp311-cp311-manylinux_2_17_x86_64``…) -> its rank
    (0: the most specific)."""
    from packaging import tags

    major, minor = (int(part) for part in python_version.split(".")[:2])
    abi = f"cp{major}{minor}"
    ordered = [*tags.cpython_tags((major, minor), [abi], list(platforms)),
               *tags.compatible_tags((major, minor), abi, list(platforms))]
    ranks: dict[str, int] = {}
    for rank, tag in enumerate(ordered):
        ranks.setdefault(str(tag), rank)
    return ranks


def best_wheel(candidates: Iterable[Candidate], name: str, version: str,
               ranks: dict[str, int]) -> Candidate | None:
    """The wheel of ``name`` ``version`` pip would pick among ``candidates`` (None when
    no wheel of that version fits the tags or none has a sha256)."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    try:
        wanted = Version(version)
    except InvalidVersion:
        return None
    best: tuple[int, int, Candidate] | None = None
    for candidate in candidates:
        if not candidate.filename.endswith(".whl") or not candidate.sha256:
            continue
        try:
            got, got_version, build, tags = parse_wheel_filename(candidate.filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if got != canonicalize_name(name) or got_version != wanted:
            continue
        rank = min((ranks[str(t)] for t in tags if str(t) in ranks), default=None)
        if rank is None:
            continue
        key = (rank, -(build[0] if build else 0), candidate)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best else None
