"""Pure helpers that keep secrets out of everything envlock records or prints."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

#: Substrings that mark an environment variable (or option) name as secret.
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH")

REDACTED = "***"

_OPTION = re.compile(r"^(--?[A-Za-z0-9_.-]+)=(.*)$", re.S)
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_URL_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s@]+)@")


def is_secret_name(name: str) -> bool:
    """True when a variable or option name looks like it holds a secret."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def strip_url_credentials(url: str | None) -> str | None:
    """Remove ``user:password@`` from URLs; scp-like ``git@host:path`` stays as is."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def scrub_text(text: str) -> str:
    """Remove credentials from any URL embedded in free text."""
    return _URL_IN_TEXT.sub(r"\1", text)


def redact_argv(argv: list[str]) -> list[str]:
    """Mask values of secret-looking options (``--token X``, ``--api-key=X``, ``TOKEN=X``)."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(REDACTED)
            mask_next = False
            continue
        option = _OPTION.match(arg) or _ASSIGN.match(arg)
        if option and is_secret_name(option.group(1)):
            out.append(f"{option.group(1)}={REDACTED}")
        elif arg.startswith("-") and is_secret_name(arg.lstrip("-")):
            out.append(arg)
            mask_next = True
        else:
            out.append(scrub_text(arg))
    return out


#: Files never recorded in a diff or copied into an image: they hold credentials.
SECRET_FILE_PATTERNS = (
    ".env", ".env.*", "*.env", ".netrc", "_netrc", ".pypirc", ".git-credentials", ".npmrc",
    ".dockercfg", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*",
    "id_dsa*", "id_ecdsa*", "id_ed25519*", "credentials", "credentials.json", "*.credentials",
    "service-account*.json", ".htpasswd",
)


def is_secret_file(path: str, extra: tuple[str, ...] = ()) -> bool:
    """True when a file's name (any path component for dirs like .ssh) marks it as secret."""
    parts = path.replace("\\", "/").split("/")
    if ".ssh" in parts[:-1] or ".aws" in parts[:-1] or ".docker" in parts[:-1]:
        return True
    name = parts[-1]
    return any(glob_match(name, pattern) for pattern in SECRET_FILE_PATTERNS + extra)


def glob_match(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)``. Patterns whose only wildcard is ``*`` (all
    of envlock's own) are matched with string operations: fnmatch compiles a regular
    expression per pattern, ~1.5 ms of every ``envlock lock`` for these lists."""
    if "?" in pattern or "[" in pattern:
        import fnmatch

        return fnmatch.fnmatchcase(name, pattern)
    if "*" not in pattern:
        return name == pattern
    first, *middle, last = pattern.split("*")
    end = len(name) - len(last)
    if end < len(first) or not name.startswith(first) or not name.endswith(last):
        return False
    at = len(first)
    for part in middle:  # each piece at its leftmost place after the previous one
        at = name.find(part, at, end)
        if at < 0:
            return False
        at += len(part)
    return True
