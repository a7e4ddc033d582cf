"""Secrets found by content in the files that go into the code layer, with detect-secrets.

Names alone do not catch secrets (a ``terraform.tfvars`` with an AWS key pair, a
``config.yaml`` holding a token), so every file the code layer would carry — changed and
untracked files of a git project, every file of a project outside git, and again every
file packed into the layer — is scanned with detect-secrets' Python API:

* its standard detectors on every text file: private keys, AWS, GitHub and GitLab tokens,
  OpenAI keys, Slack, Stripe, JWTs, PyPI/npm tokens, Azure storage keys, credentials in
  URLs, …, plus a Hugging Face token detector (``_secret_plugins.py``);
* on configuration files only (``.tfvars``, ``.yaml``, ``.json``, ``.toml``, ``.ini``,
  ``.env``, …), where they are credentials rather than code: high-entropy base64 strings
  and secret-looking keywords (``password: …``, ``api_key = …``).

Left out, measured or judged noisy: public IP addresses (not credentials), hex entropy
(commit hashes and checksums fill configs), and the IBM Cloud / Cloudant / SoftLayer
keyword detectors (their look-behind patterns took 60% of the scan time).

Cost: detect-secrets reads a code file only when one of its detectors' own patterns
matches the file's text (one regex pass, ~10 MB/s); binaries (a NUL byte in the first
8 KiB, or not UTF-8) and files over 1 MiB are not scanned, each recorded with the reason.
detect-secrets (0.15-0.3 s to import, most of it ``requests``) is imported only when a
configuration file is scanned or a code file matched: the patterns of that first pass are
kept in envlock's cache (``$ENVLOCK_CACHE``, default ``~/.cache/envlock``), keyed by the
detect-secrets version and the plugins, so that a lock of an edited ``train.py`` stays
fast. detect-secrets is never allowed to verify a secret over the network. A finding
keeps the file, the kinds of secret and the line numbers — never the value.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

MAX_BYTES = 1 << 20
#: Where high-entropy strings and secret keywords mean credentials.
CONFIG_SUFFIXES = frozenset({".tfvars", ".tf", ".hcl", ".yaml", ".yml", ".json", ".toml",
                             ".ini", ".cfg", ".conf", ".cnf", ".env", ".properties",
                             ".config"})
#: Findings that count in configuration files only.
CONFIG_ONLY = frozenset({"Base64 High Entropy String", "Secret Keyword"})
#: detect-secrets' standard plugins that run (see the module docs for those left out).
PLUGINS = ("ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector",
           "BasicAuthDetector", "DiscordBotTokenDetector", "GitHubTokenDetector",
           "GitLabTokenDetector", "JwtTokenDetector", "MailchimpDetector", "NpmDetector",
           "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector",
           "SlackDetector", "SquareOAuthDetector", "StripeDetector",
           "TelegramBotTokenDetector", "TwilioKeyDetector", "Base64HighEntropyString",
           "KeywordDetector")
CUSTOM = Path(__file__).with_name("_secret_plugins.py")
HINT = "keep a false positive with --allow-file PATH"


def is_config(rel: str) -> bool:
    """A configuration file: by suffix, or a dotenv-style name (``.env.local``). envlock's
    own lockfiles are not: they are written scrubbed, and hold digests."""
    name = rel.rsplit("/", 1)[-1].lower()
    if name.endswith(".lock.yaml"):
        return False
    return os.path.splitext(name)[1] in CONFIG_SUFFIXES or name.startswith(".env")


@dataclass(frozen=True)
class Finding:
    path: str
    kinds: tuple[str, ...]
    lines: tuple[int, ...]

    @property
    def kind(self) -> str:
        return ", ".join(self.kinds)


def allow_patterns(patterns: Iterable[str], root: Path) -> tuple[str, ...]:
    """``--allow-file`` values as paths relative to the project ``root``: an absolute path,
    or one that exists relative to the current directory, is made relative to ``root``;
    anything else is kept as a pattern (``fnmatch``) on project-relative paths."""
    out = []
    for pattern in patterns:
        text = pattern.replace("\\", "/")
        candidate = Path(text)
        if candidate.is_absolute() or candidate.exists():
            with contextlib.suppress(ValueError):  # outside the project: a pattern then
                text = candidate.resolve().relative_to(root.resolve()).as_posix()
        out.append(text[2:] if text.startswith("./") else text)
    return tuple(dict.fromkeys(out))


@dataclass
class Scan:
    """One scan over a project's files. ``allow``: project-relative paths or patterns whose
    findings are kept (recorded as allowed). Records what was withheld, allowed and not
    scanned, for the lock and the build's result."""

    allow: tuple[str, ...] = ()
    withheld: list[dict[str, Any]] = field(default_factory=list)
    allowed: list[dict[str, str]] = field(default_factory=list)
    unscanned: list[dict[str, str]] = field(default_factory=list)

    def file(self, path: Path, rel: str, data: bytes | None = None) -> Finding | None:
        """Scan one file (``data``: its bytes, when already read). The finding when the
        file holds secrets and is not allowed; None otherwise."""
        text = self._text(path, rel, data)
        if text is None:
            return None
        config = is_config(rel)
        if not config and not _suspect(text):
            return None
        found = _named(_detect(path, config), config)
        if not found:
            return None
        finding = Finding(rel, tuple(sorted({k for k, _ in found})),
                          tuple(sorted({line for _, line in found})))
        if self.allowed_file(rel):
            self.allowed.append({"path": rel, "kind": finding.kind})
            return None
        return finding

    def allowed_file(self, rel: str) -> bool:
        return any(rel == p or fnmatch.fnmatchcase(rel, p) for p in self.allow)

    def withhold(self, finding: Finding, hunks: list[str] | None = None) -> None:
        entry: dict[str, Any] = {"path": finding.path, "kind": finding.kind}
        if hunks:
            entry["hunks"] = hunks
        self.withheld.append(entry)

    def record(self) -> dict[str, Any] | None:
        """The lock's ``secret_scan`` entry; None when there is nothing to say."""
        if not (self.withheld or self.allowed or self.unscanned):
            return None
        return {"withheld": sorted(self.withheld, key=lambda e: e["path"]),
                "allowed": sorted(self.allowed, key=lambda e: e["path"]),
                "unscanned": sorted(self.unscanned, key=lambda e: e["path"])}

    def _text(self, path: Path, rel: str, data: bytes | None) -> str | None:
        """The file's text, or None (recorded as not scanned, with the reason)."""
        try:
            if data is None and path.stat().st_size <= MAX_BYTES:
                data = path.read_bytes()
        except OSError as exc:
            return self._skip(rel, f"unreadable ({exc.strerror})")
        if data is None or len(data) > MAX_BYTES:
            return self._skip(rel, "larger than 1 MiB")
        if b"\0" in data[:8192]:
            return self._skip(rel, "binary")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return self._skip(rel, "binary (not UTF-8 text)")

    def _skip(self, rel: str, reason: str) -> str | None:
        self.unscanned.append({"path": rel, "reason": reason})
        return None


def _named(found: list[tuple[str, int]], config: bool) -> list[tuple[str, int]]:
    """The findings that count, each line named by its most specific kind: entropy and
    keywords count in configuration files only, and not on a line a token detector named."""
    specific = {line for kind, line in found if kind not in CONFIG_ONLY}
    return [(kind, line) for kind, line in found
            if kind not in CONFIG_ONLY or (config and line not in specific)]


def recorded_allow(section: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The files a lock's git/code section kept with ``--allow-file``: a later probe or
    pack of the same code keeps them too."""
    scan = (section or {}).get("secret_scan") or {}
    return tuple(entry["path"] for entry in scan.get("allowed") or ())


def _suspect(text: str) -> bool:
    """Whether one of the detectors' patterns matches ``text``. A text found clean before
    (its sha256 is kept beside the patterns, under the same key) is not matched again, so
    a lock of an unchanged edited file compiles no pattern at all (~10 ms of a lock)."""
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    if digest in _saved().get("clean", ()):
        return False
    found = any(pattern.search(text) for pattern in _patterns())
    if not found:
        _save(clean=[*_saved().get("clean", ())[-(_CLEAN_KEPT - 1):], digest])
    return found


#: Texts remembered as clean (the latest ones).
_CLEAN_KEPT = 512


@lru_cache(maxsize=1)
def _saved() -> dict[str, Any]:
    """The cache file (patterns, clean texts) when it was made for this detect-secrets
    and these plugins; else empty."""
    try:
        saved = json.loads(_cache_file().read_text(encoding="utf-8"))
        if isinstance(saved, dict) and saved.get("key") == _cache_key():
            return saved
    except (OSError, ValueError):
        pass
    return {}


def _save(**changes: Any) -> None:
    saved = {**_saved(), **changes, "key": _cache_key()}
    with contextlib.suppress(OSError):  # a read-only home: no cache, same result
        from envlock.model.atomic import atomic_file

        cache = _cache_file()
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as handle:
            handle.write(json.dumps(saved).encode())
    _saved.cache_clear()


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], ...]:
    """The regular expressions of the detectors that run on every file (detect-secrets'
    own), for the one pass that decides whether a file is handed to detect-secrets: from
    the cache when it was made for this detect-secrets and these plugins."""
    try:
        return tuple(re.compile(text, flags) for text, flags in _saved()["patterns"])
    except (KeyError, ValueError, TypeError, re.error):
        pass
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.settings import get_plugins

    _configure()
    patterns = tuple(pattern for plugin in get_plugins()
                     if isinstance(plugin, RegexBasedDetector) for pattern in plugin.denylist)
    _save(patterns=[[p.pattern, p.flags] for p in patterns])
    return patterns


def _cache_file() -> Path:
    from envlock.model.cachehome import cache_home

    return cache_home() / "secret-patterns.json"


def _cache_key() -> str:
    """detect-secrets' version, the plugins and envlock's own plugin file, without
    importing detect-secrets."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("detect_secrets")
    version = Path(spec.origin).with_name("__version__.py").read_bytes() \
        if spec and spec.origin else b"?"
    return hashlib.sha256(version + repr(PLUGINS).encode() + CUSTOM.read_bytes()).hexdigest()


def _detect(path: Path, config: bool) -> list[tuple[str, int]]:
    """(kind, line number) of each secret detect-secrets finds in the file; entropy and
    keyword detectors run on configuration files only."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import get_plugins, get_settings

    _configure()
    settings = get_settings()
    wanted = _PLUGINS if config else _TOKEN_PLUGINS
    if settings.plugins != wanted:
        settings.plugins = {name: dict(options) for name, options in wanted.items()}
        get_plugins.cache_clear()
    return [(secret.type, int(secret.line_number)) for secret in scan_file(str(path))]


#: detect-secrets' plugin settings: every plugin, and the token (regex) detectors alone.
_PLUGINS: dict[str, dict[str, str]] = {
    **{name: {} for name in PLUGINS},
    "HuggingFaceTokenDetector": {"path": f"file://{CUSTOM}"}}
_TOKEN_PLUGINS = {name: options for name, options in _PLUGINS.items()
                  if name not in ("Base64HighEntropyString", "KeywordDetector")}


@lru_cache(maxsize=1)
def _configure() -> None:
    """detect-secrets' process-wide settings: envlock's plugins, its default filters, and
    never the filter that verifies a secret by sending it to its service."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import get_settings

    settings = get_settings()
    settings.clear()
    settings.configure_plugins([{"name": name, **options}
                                for name, options in _PLUGINS.items()])
    settings.disable_filters(
        "detect_secrets.filters.common.is_ignored_due_to_verification_policies")
    get_mapping_from_secret_type_to_class.cache_clear()
