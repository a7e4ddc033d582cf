"""Config discovery, validation and precedence (flag > env var > file > default)."""

from __future__ import annotations

import pytest

from envlock import config
from envlock.config import ConfigError
from envlock.model.compare import MetricPolicy, Tolerance, compare


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("ENVLOCK_CONFIG", "ENVLOCK_REGISTRY", "ENVLOCK_BASE_IMAGE",
                 "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".git").mkdir()  # the repository root bounds the search
    return tmp_path


def test_pyproject_table_is_found_from_a_subdirectory(project):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.envlock]\nregistry = "ghcr.io/acme/runs"\n'
        'env-allow = ["MY_SEED*"]\n[tool.envlock.tolerances]\nloss = "1e-4"\n')
    (project / "src" / "pkg").mkdir(parents=True)
    cfg = config.load(project / "src" / "pkg")
    assert cfg.path == project / "pyproject.toml"
    assert cfg.setting("registry") == config.Setting("ghcr.io/acme/runs", str(cfg.path))
    assert cfg.get("env_allow") == ["MY_SEED*"]
    default, per_metric = cfg.tolerances()
    assert default == Tolerance() and per_metric == {"loss": Tolerance(absolute=1e-4)}


def test_envlock_yaml_wins_over_pyproject_in_the_same_directory(project):
    (project / "pyproject.toml").write_text('[tool.envlock]\nregistry = "a/b"\n')
    (project / "envlock.yaml").write_text("registry: c/d\ndeny: ['*.ckpt']\n")
    cfg = config.load(project)
    assert cfg.get("registry") == "c/d" and cfg.get("deny") == ["*.ckpt"]


def test_search_stops_at_the_repository_root(project):
    (project.parent / "envlock.yaml").write_text("registry: outside/repo\n")
    try:
        assert config.load(project).path is None
    finally:
        (project.parent / "envlock.yaml").unlink()


def test_a_pyproject_without_the_table_is_not_a_config(project):
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert config.load(project) == config.Config()


def test_precedence_flag_then_env_then_file_then_default(project, monkeypatch):
    (project / "envlock.yaml").write_text("registry: file/repo\ntolerance: 1e-3\n")
    cfg = config.load(project)
    assert cfg.setting("registry").source == str(project / "envlock.yaml")
    monkeypatch.setenv("ENVLOCK_REGISTRY", "env/repo")
    assert cfg.setting("registry") == config.Setting("env/repo", "env ENVLOCK_REGISTRY")
    assert cfg.setting("registry", "flag/repo") == config.Setting("flag/repo", "flag")
    assert cfg.tolerances("1%")[0] == Tolerance(relative=0.01)
    assert cfg.tolerances()[0] == Tolerance(absolute=1e-3)
    assert cfg.setting("deny") == config.Setting([], "default")
    assert cfg.get("env_allow", ["A*"]) == ["A*"]  # a flag list replaces the file's list


def test_base_image_per_python_version(project, monkeypatch):
    (project / "envlock.yaml").write_text(
        "base_image: fallback:1\nbase_images:\n  '3.11': py311:slim\n  3.12.4: py3124:slim\n")
    cfg = config.load(project)
    assert cfg.base_image_for("3.11.9") == "py311:slim"
    assert cfg.base_image_for("3.12.4") == "py3124:slim"
    assert cfg.base_image_for("3.10.1") == "fallback:1"
    assert cfg.base_image_for("3.11.9", "flag:img") == "flag:img"
    monkeypatch.setenv("ENVLOCK_BASE_IMAGE", "env:img")
    assert cfg.base_image_for("3.11.9") == "env:img"


def test_tracking_uri_from_the_file_unless_the_env_sets_one(project, monkeypatch):
    (project / "envlock.yaml").write_text("tracking_uri: http://mlflow.internal:5000\n")
    config.load(project).apply_tracking_uri()
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    config.load(project).apply_tracking_uri()
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"


@pytest.mark.parametrize("text, message", [
    ("regsitry: x\n", "unknown setting 'regsitry'"),
    ("deny: 3\n", "deny must be a list of strings, not int"),
    ("tolerances: [1, 2]\n", "tolerances must be a mapping of strings, not list"),
    ("tolerance: lots\n", "tolerance 'lots' is not understood"),
    ("- a\n- b\n", "the envlock settings must be a mapping"),
    ("registry: [unclosed\n", "not valid YAML at line"),
])
def test_bad_config_is_one_clear_line(project, text, message):
    (project / "envlock.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(project)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(project / "envlock.yaml") in str(err.value)


def test_bad_toml_and_missing_explicit_file(project, monkeypatch):
    (project / "pyproject.toml").write_text("[tool.envlock]\nregistry = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(project)
    monkeypatch.setenv("ENVLOCK_CONFIG", str(project / "nope.yaml"))
    with pytest.raises(ConfigError, match="ENVLOCK_CONFIG=.*no such file"):
        config.load(project)


def test_per_metric_tolerance_overrides_the_default():
    result = compare({"loss": 1.0, "acc": 0.5}, {"loss": 1.00005, "acc": 0.50005},
                     MetricPolicy(per_metric={"loss": Tolerance(absolute=1e-4)}))
    rows = {r.name: r for r in result.rows}
    assert rows["loss"].ok and not rows["acc"].ok
    assert result.to_dict()["metrics"][1]["tolerance"] == {"absolute": 1e-4, "relative": 0.0}
