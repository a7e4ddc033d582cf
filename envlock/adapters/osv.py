"""Where ``envlock audit`` reads advisories: OSV's query API (online; ``POST
/v1/querybatch`` then ``GET /v1/vulns/ID``) or OSV's PyPI data dump (offline: ``all.zip``
of ``<ID>.json`` records, or a directory of them, for air-gapped clusters).

The only place that reads advisories; what a record means (which versions it affects,
how severe it is) is decided in the pure ``model.osv``. Each source answers the same
question — the records that affect each (name, version) — or raises
``AdvisorySourceError`` saying why it could not be reached or read.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from envlock.errors import EnvlockError
from envlock.model import osv
from envlock.model.redact import strip_url_credentials

DEFAULT_URL = "https://api.osv.dev"
#: OSV's limit of queries per ``querybatch`` request.
BATCH = 1000
#: ``"name": "…"`` anywhere in a record: a cheap test of whether a record can concern one
#: of the locked packages before it is parsed (a superset: credits have names too).
_NAME = re.compile(rb'"name"\s*:\s*"([^"\\]+)"')

Packages = Sequence[tuple[str, str]]  # (normalized name, version)
Matches = dict[tuple[str, str], list[osv.Advisory]]


class AdvisorySourceError(EnvlockError):
    """An advisory source that cannot be reached or read (exit 2)."""


class OsvDump:
    """OSV's PyPI dump: a zip (``PyPI/all.zip``) or a directory of ``<ID>.json`` records
    (searched recursively, so a checkout of an advisory database in OSV JSON works too).

    The first audit against a dump reads every record; it leaves an index of which records
    name which packages in envlock's cache (``$ENVLOCK_CACHE/osv-index``, keyed by the
    zip's path, size and time, or by every file's), so that later audits against the same
    dump read only the records of the locked packages."""

    kind = "offline"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0

    def describe(self) -> str:
        return str(self.path)

    def lookup(self, packages: Packages) -> Matches:
        wanted: dict[str, list[str]] = {}
        for name, version in packages:
            wanted.setdefault(name, []).append(version)
        matches: Matches = {}
        for where, raw in self._relevant(set(wanted)):
            advisory = osv.parse(self._record(where, raw))
            for name in advisory.names & wanted.keys():
                for version in wanted[name]:
                    if advisory.affects(name, version):
                        matches.setdefault((name, version), []).append(advisory)
        if not self.records:
            raise AdvisorySourceError(f"{self.path} holds no OSV records (<ID>.json)",
                                      "pass OSV's PyPI dump (PyPI/all.zip) or a directory "
                                      "of its records")
        return matches

    def _relevant(self, names: set[str]) -> list[tuple[str, bytes]]:
        """The records that may concern ``names``: through the cached index, else by
        reading every record (and caching the index made on the way)."""
        if not self.path.exists():
            raise AdvisorySourceError(f"{self.path}: no such file or directory")
        with self._opened() as (members, read):
            cache = _index_file(self.path, members)
            index = _load_index(cache)
            if index is not None:
                self.records = index["records"]
                chosen = sorted({m for name in names for m in index["names"].get(name, ())})
                return [(self._where(m), read(m)) for m in chosen]
            built: dict[str, list[str]] = {}
            relevant = []
            normalized: dict[bytes, str] = {}  # the same names recur across records
            for member in members:
                raw = read(member)
                found = set()
                for name in _NAME.findall(raw):
                    if name not in normalized:
                        normalized[name] = osv.normalize(name.decode(errors="replace"))
                    found.add(normalized[name])
                for name in found:
                    built.setdefault(name, []).append(member)
                if found & names:
                    relevant.append((self._where(member), raw))
            self.records = len(members)
            _save_index(cache, {"records": len(members), "names": built})
            return relevant

    @contextlib.contextmanager
    def _opened(self) -> Iterator[tuple[list[str], Any]]:
        """The record names of the dump and a function reading one (errors translated)."""
        try:
            if self.path.is_dir():
                files = sorted(p.relative_to(self.path).as_posix()
                               for p in self.path.rglob("*.json"))
                yield files, lambda member: (self.path / member).read_bytes()
                return
            with zipfile.ZipFile(self.path) as archive:
                names = [i.filename for i in archive.infolist()
                         if i.filename.endswith(".json") and not i.is_dir()]
                yield names, archive.read
        except zipfile.BadZipFile as exc:
            raise AdvisorySourceError(f"{self.path} is neither a directory nor a zip of OSV "
                                      f"records ({exc})") from exc
        except OSError as exc:
            raise AdvisorySourceError(f"{self.path} cannot be read ({exc.strerror or exc})") \
                from exc

    def _where(self, member: str) -> str:
        return str(self.path / member) if self.path.is_dir() else f"{self.path}:{member}"

    @staticmethod
    def _record(where: str, raw: bytes) -> dict[str, Any]:
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise AdvisorySourceError(f"{where} is not an OSV record (bad JSON: {exc})") \
                from exc
        if not isinstance(record, dict) or "id" not in record:
            raise AdvisorySourceError(f"{where} is not an OSV record (no id)")
        return record


def _index_file(path: Path, members: list[str]) -> Path:
    """Where the index of a dump is cached: named by what identifies its content — the
    zip's path, size and modification time, or each record file's."""
    import hashlib

    root = path.resolve()
    stamp = hashlib.sha256(str(root).encode())
    files = [root / m for m in members] if root.is_dir() else [root]
    for file in files:
        info = file.stat()
        stamp.update(f"\0{file}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    from envlock.model.cachehome import cache_home

    return cache_home() / "osv-index" / f"{stamp.hexdigest()}.json"


def _load_index(cache: Path) -> dict[str, Any] | None:
    try:
        index = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(index, dict) and isinstance(index.get("names"), dict)
    return index if ok and isinstance(index.get("records"), int) else None


def _save_index(cache: Path, index: dict[str, Any]) -> None:
    from envlock.model.atomic import atomic_file

    with contextlib.suppress(OSError):  # no cache (a read-only home): the same answers
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as handle:
            handle.write(json.dumps(index, separators=(",", ":")).encode())


class OsvApi:
    """OSV's query API at ``url`` (https://api.osv.dev, or a mirror speaking the same API):
    one ``querybatch`` per 1000 packages (following ``next_page_token``), then each
    vulnerability's full record, eight at a time."""

    kind = "online"

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.records = 0
        self._local = threading.local()

    def describe(self) -> str:
        return strip_url_credentials(self.url) or self.url

    def lookup(self, packages: Packages) -> Matches:
        ids = self._query(packages)
        unique = sorted({i for found in ids for i in found})
        with ThreadPoolExecutor(max_workers=8) as pool:
            advisories = dict(zip(unique, pool.map(self._vuln, unique), strict=True))
        self.records = len(advisories)
        return {package: [advisories[i] for i in sorted(found)]
                for package, found in zip(packages, ids, strict=True) if found}

    def _query(self, packages: Packages) -> list[set[str]]:
        ids: list[set[str]] = [set() for _ in packages]
        pending: dict[int, str | None] = dict.fromkeys(range(len(packages)))
        while pending:
            batch = list(pending.items())[:BATCH]
            queries = [self._query_for(packages[i], token) for i, token in batch]
            answer = self._post("/v1/querybatch", {"queries": queries})
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != len(batch):
                raise AdvisorySourceError(f"{self.describe()}/v1/querybatch answered "
                                          "something that is not OSV's batch result")
            for (index, _), result in zip(batch, results, strict=True):
                ids[index] |= {str(v["id"]) for v in (result or {}).get("vulns") or ()}
                token = (result or {}).get("next_page_token")
                if token:
                    pending[index] = token
                else:
                    del pending[index]
        return ids

    @staticmethod
    def _query_for(package: tuple[str, str], token: str | None) -> dict[str, Any]:
        name, version = package
        query: dict[str, Any] = {"package": {"name": name, "ecosystem": osv.ECOSYSTEM},
                                 "version": _public(version)}
        if token:
            query["page_token"] = token
        return query

    def _vuln(self, vuln_id: str) -> osv.Advisory:
        record = self._request("GET", f"/v1/vulns/{vuln_id}")
        if not isinstance(record, dict) or "id" not in record:
            raise AdvisorySourceError(f"{self.describe()}/v1/vulns/{vuln_id} answered "
                                      "something that is not an OSV record")
        return osv.parse(record)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=body)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        where = f"{self.describe()}{path}"
        try:
            response = session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AdvisorySourceError(f"{where}: {_reason(exc)}") from None
        if response.status_code >= 400:
            raise AdvisorySourceError(f"{where} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise AdvisorySourceError(f"{where} answered something that is not JSON") from None


def _public(version: str) -> str:
    """``2.3.1+cu121`` -> ``2.3.1``: OSV knows releases, not local builds of them."""
    return version.split("+", 1)[0]


def _reason(exc: Exception) -> str:
    """A short reason for a failed request (the exception's innermost cause, no URL
    with credentials)."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "timed out"
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(getattr(inner, "reason", None) or inner) or type(inner).__name__
    return "cannot connect (" + re.sub(r"<[^>]*>: ?", "", text)[:160] + ")"


def sources(advisories: Iterable[Path], osv_url: str | None) -> list[OsvDump | OsvApi]:
    """The sources to read: every ``--advisories`` dump, then the API — at ``--osv-url``,
    or OSV's own when no dump was given."""
    chosen: list[OsvDump | OsvApi] = [OsvDump(Path(p)) for p in advisories]
    if osv_url or not chosen:
        chosen.append(OsvApi(osv_url or DEFAULT_URL))
    return chosen
