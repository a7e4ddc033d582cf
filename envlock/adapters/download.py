"""Wheels fetched into a content-addressed cache shared by every capture on this host.

A wheel lives at ``$ENVLOCK_CACHE/wheels/sha256/<ab>/<hex>/<file name>``: its path is its
sha256, which the package index gave before anything was downloaded. A download

* streams into ``<file name>.part`` beside its final place, hashing the bytes as they
  are written; after a dropped connection it asks for the rest (an HTTP ``Range``
  request) instead of starting over, and so does the next capture when this one was
  killed midway (the part is hashed once more before it goes on);
* is accepted only when the bytes hash to the sha256 the index gave: a corrupted or
  swapped file is deleted and refused;
* becomes visible in one ``os.replace``, under a host-wide lock per digest
  (:mod:`envlock.adapters.locking`): two captures that need the same wheel download it
  once, the second waits and then finds it in place.

``file:`` URLs (a find-links folder of local wheels) are copied the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from envlock.adapters.locking import exclusive
from envlock.errors import EnvlockError
from envlock.model.wheelpick import Candidate

_CHUNK = 1 << 20
#: Network reads: what was read before a connection dropped is kept up to the last one.
_READ = 1 << 16
#: How often a dropped connection is resumed before the download counts as failed.
ATTEMPTS = 5


class DownloadError(EnvlockError):
    """A wheel could not be downloaded, or its bytes are not the ones the index named."""


@dataclass(frozen=True)
class Wanted:
    """One file to fetch: where from, and the sha256 its bytes must have."""

    url: str
    sha256: str
    filename: str


@dataclass(frozen=True)
class Fetched:
    path: Path
    downloaded: int  # bytes that came over the network this time
    reused: bool  # already in the cache: nothing downloaded


def cache_root() -> Path:
    """``$ENVLOCK_CACHE/wheels`` (default ``~/.cache/envlock/wheels``), read when called."""
    from envlock.model.cachehome import cache_home

    return cache_home() / "wheels"


class WheelCache:
    """The content-addressed wheels under ``root``; one HTTP session, safe across threads."""

    def __init__(self, root: Path | None = None, *, connections: int = 8,
                 timeout: float = 60.0) -> None:
        self.root = root or cache_root()
        self.timeout = timeout
        self._connections = connections
        self._local = threading.local()

    def path(self, sha256: str, filename: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256 / filename

    def get(self, want: Wanted) -> Path | None:
        final = self.path(want.sha256, want.filename)
        return final if final.is_file() else None

    def fetch(self, want: Wanted) -> Fetched:
        """The wheel, from the cache or downloaded into it (see the module's notes)."""
        found = self.get(want)
        if found is not None:
            return Fetched(found, 0, True)
        final = self.path(want.sha256, want.filename)
        with exclusive(f"wheel-{want.sha256}.lock"):
            if final.is_file():  # another capture fetched it while this one waited
                return Fetched(final, 0, True)
            final.parent.mkdir(parents=True, exist_ok=True)
            part = final.with_name(final.name + ".part")
            if want.url.startswith("file:"):
                count, actual = _copy_local(Path(unquote(urlsplit(want.url).path)), part)
            else:
                stream = _Stream(self._session(), want, part, self.timeout)
                count, actual = stream.run(), stream.digest.hexdigest()
            _check_hash(part, want, actual, count)
            os.replace(part, final)
        return Fetched(final, count, False)

    def index_files(self, index_url: str, project: str) -> list[Candidate]:
        """The files a simple index lists for ``project`` (PEP 691 JSON, else PEP 503
        HTML), each with the sha256 the index gives; [] when it lists none (404)."""
        from urllib.parse import urljoin

        from packaging.utils import canonicalize_name

        page = index_url.rstrip("/") + f"/{canonicalize_name(project)}/"
        try:
            response = self._session().get(page, timeout=(10, self.timeout), headers={
                "Accept": f"{_JSON}, text/html;q=0.1"})
        except OSError as exc:  # requests' errors are OSErrors
            raise DownloadError(f"{_safe(page)} did not answer ({type(exc).__name__})",
                                "check the network and the index URL") from exc
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            raise DownloadError(f"{_safe(page)} answered HTTP {response.status_code}",
                                "check the index URL and its credentials")
        if response.headers.get("Content-Type", "").startswith(_JSON):
            return [Candidate(f["filename"], urljoin(response.url, f["url"]),
                              (f.get("hashes") or {}).get("sha256"))
                    for f in response.json().get("files") or []]
        return _html_files(response.text, response.url)

    def _session(self) -> Any:
        """One ``requests`` session per thread (its connection pool is per host)."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._connections)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session


_JSON = "application/vnd.pypi.simple.v1+json"
_ANCHOR = re.compile(r"<a\s[^>]*?href=\"([^\"]+)\"[^>]*>([^<]*)</a>", re.IGNORECASE)


def _html_files(text: str, base: str) -> list[Candidate]:
    """PEP 503 anchors: the file name is the text, the sha256 the URL's fragment."""
    from html import unescape
    from urllib.parse import urldefrag, urljoin

    found = []
    for href, name in _ANCHOR.findall(text):
        url, fragment = urldefrag(urljoin(base, unescape(href)))
        sha = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None
        found.append(Candidate(unescape(name).strip(), url, sha))
    return found


def local_files(folder: Path, project: str, version: str) -> list[Candidate]:
    """The wheels of ``project`` ``version`` in a find-links folder, each hashed."""
    from packaging.utils import canonicalize_name

    escaped = re.sub(r"[-_.]+", "_", canonicalize_name(project))
    found = []
    for wheel in sorted(folder.glob("*.whl")):
        head = wheel.name.split("-")
        if len(head) > 2 and re.sub(r"[-_.]+", "_", head[0]).lower() == escaped and \
                head[1].replace("_", "-") == version.replace("_", "-"):
            found.append(Candidate(wheel.name, wheel.as_uri(), _sha256(wheel)))
    return found


def _copy_local(source: Path, part: Path) -> tuple[int, str]:
    """A local file copied into ``part``: (0 bytes over the network, its sha256)."""
    try:
        shutil.copyfile(source, part)
    except OSError as exc:
        raise DownloadError(f"cannot read {source}: {exc.strerror or exc}",
                            "check the find-links folder of the pip configuration") from exc
    return 0, _sha256(part)


def _check_hash(part: Path, want: Wanted, actual: str, count: int) -> None:
    """The part's sha256 (computed while streaming) must be the one the index gave."""
    if actual != want.sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{want.filename} from {_safe(want.url)} has sha256 "
                            f"{actual[:16]}…, the index gave {want.sha256[:16]}… "
                            f"({count} bytes downloaded): refused",
                            "a proxy or mirror served other bytes; try again, or check "
                            "the index")


def _sha256(path: Path, digest: Any = None) -> str:
    digest = digest or hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return str(digest.hexdigest())


def _safe(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host, query="").geturl()


class _Stream:
    """One download into ``part``: hashed as written, resumed with ``Range`` after a
    dropped connection (and after an earlier process left a part behind)."""

    def __init__(self, session: Any, want: Wanted, part: Path, timeout: float) -> None:
        self.session, self.want, self.part, self.timeout = session, want, part, timeout
        self.digest = hashlib.sha256()
        self.have = part.stat().st_size if part.exists() else 0
        if self.have:
            _sha256(part, self.digest)  # what an interrupted download left
        self.downloaded = 0

    def run(self) -> int:
        import requests

        last: Exception | None = None
        for _ in range(ATTEMPTS):
            try:
                if self._attempt():
                    return self.downloaded
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last = exc
        raise DownloadError(f"downloading {self.want.filename} from {_safe(self.want.url)} "
                            f"failed {ATTEMPTS} times ({type(last).__name__}: "
                            f"{str(last)[:120]})",
                            "check the network; the next capture resumes where this one "
                            "stopped")

    def _attempt(self) -> bool:
        """One request; True when the file is complete."""
        headers = {"Range": f"bytes={self.have}-"} if self.have else {}
        with self.session.get(self.want.url, headers=headers, stream=True,
                              timeout=(10, self.timeout)) as response:
            if response.status_code == 416 and self.have:  # nothing left: it was complete
                return True
            if response.status_code >= 400:
                raise DownloadError(f"{self.want.filename}: {_safe(self.want.url)} answered "
                                    f"HTTP {response.status_code}",
                                    "check that the index still serves it")
            if response.status_code != 206 and self.have:  # range ignored: start over
                self.digest, self.have = hashlib.sha256(), 0
            total = _total(response, self.have)
            with self.part.open("ab" if response.status_code == 206 else "wb") as out:
                for chunk in response.iter_content(_READ):
                    out.write(chunk)
                    self.digest.update(chunk)
                    self.have += len(chunk)
                    self.downloaded += len(chunk)
        return total is None or self.have >= total  # short: the connection dropped


def _total(response: Any, have: int) -> int | None:
    """The whole file's size, from ``Content-Range`` (206) or ``Content-Length`` (200)."""
    if response.status_code == 206:
        total = str(response.headers.get("Content-Range", "")).rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = str(response.headers.get("Content-Length", ""))
    return int(length) if length.isdigit() and not response.headers.get(
        "Content-Encoding") else None
