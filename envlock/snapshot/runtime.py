"""Pure: the runtime knobs that change numerics, never a secret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envlock.model.redact import glob_match, is_secret_name, scrub_text

#: Variables recorded by default; shell-style patterns, extendable by the user.
DEFAULT_ALLOW = (
    "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", "CUBLASLT_*", "PYTHONHASHSEED",
    "OMP_NUM_THREADS", "OMP_*", "MKL_*", "OPENBLAS_*", "KMP_*", "NCCL_*", "TORCH_*",
    "PYTORCH_*", "CUDA_*", "CUDNN_*", "NVIDIA_TF32_OVERRIDE", "XLA_*", "JAX_*",
    # TensorFlow's numerics knobs by name: a TF_* pattern would also catch Terraform.
    "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS",
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "TOKENIZERS_PARALLELISM",
)


def runtime_env(environ: Mapping[str, str], extra_allow: Iterable[str] = ()) -> dict[str, str]:
    """Allow-listed variables, sorted; names that look secret are never recorded."""
    patterns = tuple(DEFAULT_ALLOW) + tuple(extra_allow)
    picked = {}
    for name in sorted(environ):
        if is_secret_name(name):
            continue
        if any(glob_match(name, pattern) for pattern in patterns):
            picked[name] = scrub_text(environ[name])
    return picked


def secret_names(environ: Mapping[str, str], extra_allow: Iterable[str] = ()) -> list[str]:
    """Allow-listed names that were withheld because they look secret (for a notice)."""
    patterns = tuple(DEFAULT_ALLOW) + tuple(extra_allow)
    return sorted(n for n in environ if is_secret_name(n)
                  and any(glob_match(n, p) for p in patterns))
