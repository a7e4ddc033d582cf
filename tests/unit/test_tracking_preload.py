"""MLflow imported ahead of a capture's need (``tracking.preload``), in a fresh interpreter:
the lean import leaves pandas out of MLflow, then pandas imports as usual. (A file store:
no SQLAlchemy store or alembic chain to load; captures in tests/integration preload with
real SQLite stores.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from envlock.adapters.tracking import preload
preload(lean=True)()
assert "mlflow" in sys.modules, "MLflow was not imported"
assert "pandas" not in sys.modules, "pandas was imported with MLflow"
from mlflow.tracking import MlflowClient
assert MlflowClient.__name__ == "MlflowClient"
import pandas  # hidden from MLflow's import only
print("ok", pandas.__name__)
"""


def test_the_lean_preload_leaves_pandas_out_of_mlflow(tmp_path: Path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=(tmp_path / "mlruns").as_uri(),
               ENVLOCK_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok pandas"
