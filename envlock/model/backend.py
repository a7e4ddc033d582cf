"""Which kind of tracking backend a run logged to, and what a replay needs to behave like it.

A replay logs to a private file store in the container (envlock.operations.replay). That
is the client-side code path of a local store, and one difference from a tracking server
shows in results: a local store names an unnamed run in the client, drawing from Python's
global ``random`` (MLflow's ``name_utils._generate_random_name``), while a server names it
on the server. An experiment that seeds the global ``random`` and then starts its run
draws different numbers afterwards in the two cases. So a run that logged to a server is
replayed with :data:`SERVER_NAMING`: a ``.pth`` hook mounted into the image's
site-packages that keeps the global generator's state across MLflow's naming, as a
server would. Runs that logged to a local store replay unchanged (their client drew too).
"""

from __future__ import annotations

from envlock.model import runrecord

#: The run tag that records the backend kind at capture.
TAG = runrecord.TRACKING_BACKEND
SERVER, SQLITE, FILE, OTHER = "server", "sqlite", "file", "other"


def kind(uri: str) -> str:
    """``server`` (http/https, databricks), ``sqlite`` (and other SQL stores), ``file``."""
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme in ("http", "https", "databricks") or uri == "databricks":
        return SERVER
    if scheme in ("sqlite", "postgresql", "mysql", "mssql") or scheme.startswith(
            ("postgresql+", "mysql+", "mssql+")):
        return SQLITE
    if scheme in ("", "file"):
        return FILE
    return OTHER


def server_named(tags: dict[str, str], current_uri: str) -> bool:
    """Did the original run's client leave run naming to a server? From the tag recorded
    at capture; runs captured before it was recorded: from the store they are read from."""
    recorded = tags.get(TAG)
    return (recorded or kind(current_uri)) == SERVER


#: The module the hook loads; it must run on any Python an image may hold (3.8+).
SERVER_NAMING = '''\
"""Mounted by envlock replay: the original run logged to a tracking server, which named it
without drawing from this process's global random; keep the global generator's state
across MLflow's client-side run naming, as the server would have."""
import functools
import importlib.abc
import importlib.machinery
import random
import sys

_TARGET = "mlflow.utils.name_utils"


def _keeping_state(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        state = random.getstate()
        try:
            return fn(*args, **kwargs)
        finally:
            random.setstate(state)
    return wrapper


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        for name in dir(module):
            if name.startswith("_generate") and callable(getattr(module, name)):
                setattr(module, name, _keeping_state(getattr(module, name)))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if _TARGET not in sys.modules:
    sys.meta_path.insert(0, _Finder())
'''

MODULE = "_envlock_server_naming"


def server_naming_files(python_version: str, site_packages: str) -> dict[str, str]:
    """The files to mount (container path -> text) for an image whose interpreter is
    ``python_version`` with its environment's packages in ``site_packages``
    (``{minor}`` in it is the ``3.X`` of the version)."""
    minor = ".".join(python_version.split(".")[:2])
    where = site_packages.format(minor=minor)
    return {f"{where}/{MODULE}.py": SERVER_NAMING,
            f"{where}/{MODULE}.pth": f"import {MODULE}\n"}
