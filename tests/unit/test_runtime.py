from envlock.snapshot.runtime import runtime_env, secret_names

ENV = {
    "CUDA_VISIBLE_DEVICES": "0,1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "NCCL_DEBUG": "INFO",
    "TORCH_CUDNN_V8_API_ENABLED": "1", "NCCL_IB_AUTH_TOKEN": "s3cr3t", "TORCH_HUB_TOKEN": "t0k",
    "HOME": "/root", "PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "aws", "MY_SEED": "7",
    "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "TF_DETERMINISTIC_OPS": "1",
}


def test_default_allow_list_records_numerics_knobs_only():
    env = runtime_env(ENV)
    assert env == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "CUDA_VISIBLE_DEVICES": "0,1", "MKL_NUM_THREADS": "4",
        "NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "4", "PYTHONHASHSEED": "0",
        "TF_DETERMINISTIC_OPS": "1", "TORCH_CUDNN_V8_API_ENABLED": "1",
    }
    assert list(env) == sorted(env)


def test_user_patterns_extend_but_never_admit_secrets():
    env = runtime_env(ENV, extra_allow=["MY_*", "AWS_*"])
    assert env["MY_SEED"] == "7"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "s3cr3t" not in str(env) and "t0k" not in str(env)


def test_withheld_names_are_reported_without_values():
    assert secret_names(ENV) == ["NCCL_IB_AUTH_TOKEN", "TORCH_HUB_TOKEN"]
