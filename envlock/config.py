"""Project configuration: ``[tool.envlock]`` in ``pyproject.toml`` or ``envlock.yaml``.

Precedence, highest first: a command-line flag, the setting's environment variable
(e.g. ``ENVLOCK_REGISTRY``), the project's config file, the built-in default.
List settings given on the command line replace the config's list.

The file is found by walking up from the project directory (the current directory
unless a command says otherwise) to the repository root; in one directory
``envlock.yaml`` wins over ``pyproject.toml``. ``ENVLOCK_CONFIG`` names a file
explicitly. ``envlock config`` shows every effective value and where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import EnvlockError


class ConfigError(EnvlockError):
    """A config file that cannot be read or holds unknown or mistyped settings."""


@dataclass(frozen=True)
class Key:
    kind: type  # str, list or dict
    env: str | None
    help: str
    default: Any = None


#: Every setting, its type, its environment variable and what it does.
KEYS: dict[str, Key] = {
    "registry": Key(str, "ENVLOCK_REGISTRY", "push images to HOST[:PORT]/REPO"),
    "base_image": Key(str, "ENVLOCK_BASE_IMAGE", "base image for every Python version"),
    "base_images": Key(dict, None, "base image per Python version ('3.11' or '3.11.9')", {}),
    "tracking_uri": Key(str, "MLFLOW_TRACKING_URI", "MLflow tracking URI"),
    "tolerance": Key(str, None, "default metric tolerance: 1e-6, 0.5% or abs=…,rel=…"),
    "tolerances": Key(dict, None, "tolerance per metric name (such a metric always gates)",
                      {}),
    "ungated_metrics": Key(list, None, "metric name patterns shown but not gated by replay "
                           "and verify (besides the built-in time/throughput/machine rules)",
                           []),
    "gated_metrics": Key(list, None, "metric name patterns that always gate replay and "
                         "verify, even where a built-in rule would not", []),
    "env_allow": Key(list, None, "extra env var name patterns to record", []),
    "deny": Key(list, None, "extra path patterns kept out of the code layer", []),
    "code_max_size": Key(str, "ENVLOCK_CODE_MAX_SIZE", "size cap for packing a project "
                         "outside git (e.g. 512m, 1g)", "256m"),
    # Inputs (envlock.operations.inputs): what runs read, pinned at capture
    "inputs": Key(list, None, "files and directories every run reads (data, weights), "
                  "pinned at capture: project-relative or absolute paths", []),
    "inputs_copy_max": Key(str, "ENVLOCK_INPUTS_COPY_MAX", "copy inputs to the registry up "
                           "to this total (e.g. 1g, 5g; 0: reference only); larger ones are "
                           "referenced by hash", "1g"),
    # Signed provenance (envlock.operations.provenance): key files, never the keys.
    "signing_key": Key(str, "ENVLOCK_SIGNING_KEY", "private key file (envlock keys "
                       "generate): sign every pushed image's provenance and SBOM"),
    "verify_key": Key(str, "ENVLOCK_VERIFY_KEY", "public key file that image signatures "
                      "are checked against (replay, verify, import, provenance)"),
    "require_signed": Key(bool, "ENVLOCK_REQUIRE_SIGNED", "replay/verify only images whose "
                          "signed provenance names the run's lock", False),
    # replay and verify: the container (a flag wins; else these; else the lock / default)
    "network": Key(str, None, "replay container network: none, bridge, host, a name", "none"),
    "env": Key(list, None, "replay container environment, K=V each", []),
    "mounts": Key(list, None, "replay bind mounts, SRC:DST or SRC:DST:ro each", []),
    "command": Key(str, None, "replay this command instead of the captured one"),
    "shm_size": Key(str, None, "replay /dev/shm size (default: the original host's)"),
    "cpus": Key(str, None, "replay CPU limit, e.g. 4 or 1.5"),
    "memory": Key(str, None, "replay memory limit, e.g. 16g"),
    "gpus": Key(str, None, "replay GPUs: all, none, N or device=0,1"),
    "timeout": Key(str, None, "stop a replay after this long: seconds, 30m, 2h"),
    # replay/verify --on slurm (envlock.model.slurmjob.SlurmSettings; a flag wins per key)
    "slurm": Key(dict, None, "Slurm jobs: partition, account, time_limit, runtime (podman | "
                 "charliecloud), sbatch_options, insecure_registries, job_dir (shared by "
                 "the nodes), pending_limit, gpu_option (gres | gpus)", {}),
}

#: Settings that may be written as a number (TOML/YAML), read as their text.
_NUMBERS = ("code_max_size", "inputs_copy_max", "shm_size", "cpus", "memory", "gpus", "timeout")

#: Accepted spellings: TOML and YAML users write both.
_ALIASES = {k.replace("_", "-"): k for k in KEYS}


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "flag", "env NAME", the config file, or "default"


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, key: str, flag: Any = None) -> Setting:
        spec = KEYS[key]
        if flag not in (None, [], (), {}):
            return Setting(list(flag) if spec.kind is list else flag, "flag")
        if spec.env and os.environ.get(spec.env):
            return Setting(os.environ[spec.env], f"env {spec.env}")
        if key in self.values:
            return Setting(self.values[key], str(self.path))
        default = spec.default
        return Setting(type(default)(default) if default is not None else None, "default")

    def get(self, key: str, flag: Any = None) -> Any:
        return self.setting(key, flag).value

    def base_image_for(self, python_version: str, flag: str | None = None) -> str | None:
        """``--base-image``, else ``$ENVLOCK_BASE_IMAGE``, else ``base_images`` for this
        Python (full version first, then major.minor), else ``base_image``."""
        chosen = self.setting("base_image", flag)
        if chosen.source in ("flag", "env ENVLOCK_BASE_IMAGE"):
            return str(chosen.value)
        per_version = self.values.get("base_images", {})
        minor = ".".join(python_version.split(".")[:2])
        for version in (python_version, minor):
            if version in per_version:
                return str(per_version[version])
        return None if chosen.value is None else str(chosen.value)

    def code_rules(self, max_size: str | None = None, allow: tuple[str, ...] = ()) -> Any:
        """The rules for recording a project's code: the deny list, the size cap outside
        git (``--code-max-size`` > ``$ENVLOCK_CODE_MAX_SIZE`` > the file > 256m), and the
        files kept although their content looks like a secret (``--allow-file``)."""
        from envlock.snapshot.directory import Rules, parse_size

        return Rules(deny=tuple(self.get("deny")),
                     max_size=parse_size(self.get("code_max_size", max_size)), allow=allow)

    def file_setting(self, key: str) -> Path | None:
        """A file setting as a path: relative to the config file when it comes from there,
        else to the current directory; None when unset."""
        chosen = self.setting(key)
        if not chosen.value:
            return None
        path = Path(str(chosen.value)).expanduser()
        if not path.is_absolute() and self.path is not None and chosen.source == str(self.path):
            path = self.path.parent / path
        return path

    def enabled(self, key: str, flag: bool = False) -> bool:
        """A true/false setting: the flag when given, else the env var (1/true/yes),
        else the file, else the default."""
        if flag:
            return True
        value = self.setting(key).value
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    def apply_tracking_uri(self) -> None:
        """Make the config's tracking URI MLflow's default (the env var still wins)."""
        if "tracking_uri" in self.values and not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = str(self.values["tracking_uri"])

    def tolerances(self, flag: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The default tolerance (flag > config) and the per-metric ones."""
        from envlock.model.compare import Tolerance

        per_metric = {name: Tolerance.parse(str(spec))
                      for name, spec in self.get("tolerances").items()}
        return Tolerance.parse(self.get("tolerance", flag)), per_metric

    def metric_policy(self, tolerance: str | None = None, metrics: Any = (),
                      strict: bool = False) -> Any:
        """How replay and verify compare metrics: the tolerances (``--tolerance`` >
        config), ``--metric``, ``--strict``, and the config's gated/ungated patterns
        (envlock.model.compare.MetricPolicy)."""
        from envlock.model.compare import MetricPolicy

        default, per_metric = self.tolerances(tolerance)
        return MetricPolicy(tolerance=default, per_metric=per_metric,
                            metrics=tuple(metrics or ()),
                            ungated=tuple(self.get("ungated_metrics")),
                            gated=tuple(self.get("gated_metrics")), strict=strict)


def find(start: Path | None = None) -> Path | None:
    """The config file that applies to ``start`` (default: the current directory)."""
    explicit = os.environ.get("ENVLOCK_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"ENVLOCK_CONFIG={explicit}: no such file",
                              "point it at an envlock.yaml or pyproject.toml, or unset it")
        return path
    directory = (start or Path.cwd()).resolve()
    if directory.is_file():
        directory = directory.parent
    for candidate in (directory, *directory.parents):
        if (candidate / "envlock.yaml").is_file():
            return candidate / "envlock.yaml"
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "[tool.envlock" in pyproject.read_text(errors="replace"):
            return pyproject
        if (candidate / ".git").exists():
            break  # the repository root bounds the search
    return None


def load(start: Path | None = None) -> Config:
    path = find(start)
    if path is None:
        return Config()
    return Config(path, parse(path))


def parse(path: Path) -> dict[str, Any]:
    """Validated settings of one file; unknown keys and wrong types are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    if path.name == "pyproject.toml":
        import sys

        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib

        try:
            raw = tomllib.loads(text).get("tool", {}).get("envlock", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    else:
        import yaml

        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the envlock settings must be a mapping",
                          "write key: value pairs, e.g. registry: ghcr.io/acme/runs")
    return validate(raw, path)


def validate(raw: Mapping[str, Any], path: Path | str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = _ALIASES.get(name, name)
        spec = KEYS.get(key)
        if spec is None:
            raise ConfigError(f"{path}: unknown setting {name!r}",
                              f"known settings: {', '.join(KEYS)}")
        if key == "slurm":
            values[key] = _check_slurm(value, path)
            continue
        if spec.kind is list and isinstance(value, str):
            value = [value]
        if key in _NUMBERS and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # bytes, CPUs, seconds
        if not _well_typed(value, spec.kind):
            raise ConfigError(f"{path}: {name} must be {_KIND_NAMES[spec.kind]}, "
                              f"not {type(value).__name__}", f"{name}: {spec.help}")
        if isinstance(value, dict):
            value = {str(k): str(v) for k, v in value.items()}
        values[key] = value
    if "code_max_size" in values:
        from envlock.snapshot.directory import parse_size

        try:
            parse_size(values["code_max_size"])
        except EnvlockError as exc:
            raise ConfigError(f"{path}: code_max_size {values['code_max_size']!r} is not "
                              "understood", "write a size such as 512m, 1g or 1.5GiB") from exc
    _check_replay(values, path)
    if "tolerance" in values or "tolerances" in values:
        from envlock.model.compare import Tolerance

        for spec_text in [values.get("tolerance"), *values.get("tolerances", {}).values()]:
            if spec_text is not None:
                try:
                    Tolerance.parse(str(spec_text))
                except EnvlockError as exc:
                    raise ConfigError(f"{path}: tolerance {spec_text!r} is not understood",
                                      "use e.g. 1e-6, 0.5%, or abs=1e-6,rel=1e-3") from exc
    return values


def _check_replay(values: Mapping[str, Any], path: Path | str) -> None:
    """The replay container's settings, parsed as their flags are."""
    from envlock.model import replayspec, resources

    checks: dict[str, Callable[[Any], object]] = {
              "network": replayspec.parse_network, "mounts": replayspec.parse_mounts,
              "timeout": replayspec.parse_timeout, "gpus": replayspec.parse_gpus,
              "cpus": resources.parse_cpus,
              "env": lambda v: replayspec.parse_pairs(v, "env", "="),
              "shm_size": lambda v: resources.parse_size(v, "shm_size"),
              "memory": lambda v: resources.parse_size(v, "memory")}
    from envlock.model.redact import is_secret_name

    for item in values.get("env", []):
        if is_secret_name(item.partition("=")[0]):
            raise ConfigError(f"{path}: env {item.partition('=')[0]}=… looks like a secret; "
                              "a config file is shared and committed",
                              "pass it with --env on the command line instead")
    for key, check in checks.items():
        if key in values:
            try:
                check(values[key])
            except EnvlockError as exc:
                raise ConfigError(f"{path}: {key}: {exc.message}", exc.hint) from exc


def _check_slurm(value: Any, path: Path | str) -> dict[str, Any]:
    """The ``slurm`` table, checked as its flags are; kept as written."""
    from envlock.model.slurmjob import parse_settings

    if not isinstance(value, dict):
        raise ConfigError(f"{path}: slurm must be a table", "e.g. [tool.envlock.slurm] "
                          "partition = \"gpu\"")
    try:
        parse_settings(value, f"{path}: slurm")
    except EnvlockError as exc:
        raise ConfigError(exc.message, exc.hint) from exc
    return dict(value)


_KIND_NAMES: dict[type, str] = {str: "a string", list: "a list of strings",
                                dict: "a mapping of strings", bool: "true or false"}


def _well_typed(value: Any, kind: type) -> bool:
    if kind is dict:
        return isinstance(value, dict) and all(isinstance(v, str | int | float)
                                               for v in value.values())
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)
