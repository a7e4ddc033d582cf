"""The tracking backend kind, and the hook that keeps MLflow's client-side run naming off
the global ``random`` in replays of server-logged runs (envlock.model.backend)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from envlock.model import backend


@pytest.mark.parametrize("uri, kind", [
    ("http://127.0.0.1:5000", "server"), ("https://mlflow.example.org", "server"),
    ("databricks", "server"), ("databricks://profile", "server"),
    ("sqlite:////tmp/mlflow.db", "sqlite"), ("postgresql+psycopg2://u@h/db", "sqlite"),
    ("file:///tmp/mlruns", "file"), ("/tmp/mlruns", "file"), ("mlruns", "file"),
    ("custom-plugin://x", "other"),
])
def test_kind(uri, kind):
    assert backend.kind(uri) == kind


def test_the_recorded_tag_wins_over_the_store_the_run_is_read_from():
    assert backend.server_named({backend.TAG: "server"}, "sqlite:///x.db")
    assert not backend.server_named({backend.TAG: "sqlite"}, "http://h:5000")
    assert backend.server_named({}, "http://h:5000")  # captured before the tag existed
    assert not backend.server_named({}, "sqlite:///x.db")


def test_the_files_go_into_the_images_site_packages():
    files = backend.server_naming_files("3.11.2", "/opt/v/lib/python{minor}/site-packages")
    assert set(files) == {"/opt/v/lib/python3.11/site-packages/_envlock_server_naming.py",
                          "/opt/v/lib/python3.11/site-packages/_envlock_server_naming.pth"}
    assert files["/opt/v/lib/python3.11/site-packages/_envlock_server_naming.pth"] == (
        "import _envlock_server_naming\n")


FAKE_NAME_UTILS = '''\
import random
def _generate_random_name():
    return "x-%d" % random.randint(0, 999)
'''

EXPERIMENT = '''\
import random
random.seed(7)
from mlflow.utils.name_utils import _generate_random_name
name = _generate_random_name()
print(name, random.random())
'''


def run_with(tmp_path, hook: bool) -> tuple[str, str]:
    """An interpreter whose site-packages hold a stand-in ``mlflow.utils.name_utils``
    (and the hook's two files when ``hook``), running a seeded 'experiment'."""
    site = tmp_path / ("hooked" if hook else "plain")
    pkg = site / "mlflow" / "utils"
    pkg.mkdir(parents=True)
    for init in (site / "mlflow" / "__init__.py", pkg / "__init__.py"):
        init.write_text("")
    (pkg / "name_utils.py").write_text(FAKE_NAME_UTILS)
    if hook:
        for target, text in backend.server_naming_files("3.11", str(site)).items():
            (site / target.rsplit("/", 1)[1]).write_text(text)
    code = (f"import site, sys; sys.path.insert(0, {str(site)!r}); "
            f"site.addsitedir({str(site)!r}); exec({EXPERIMENT!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    return out[0], out[1]


def test_the_hook_leaves_the_global_generator_where_a_server_would(tmp_path):
    import random

    random.seed(7)
    untouched = repr(random.random())  # what the experiment draws when a server names it
    plain_name, plain_draw = run_with(tmp_path, hook=False)
    hooked_name, hooked_draw = run_with(tmp_path, hook=True)
    assert plain_draw != untouched  # client-side naming shifts the experiment's numbers
    assert hooked_draw == untouched
    assert hooked_name.startswith("x-")  # the name is still made, from the same generator
    assert textwrap.dedent(backend.SERVER_NAMING).startswith('"""')
