from hypothesis import given, settings
from hypothesis import strategies as st

from envlock.model.redact import (
    is_secret_file,
    is_secret_name,
    redact_argv,
    scrub_text,
    strip_url_credentials,
)


def test_strip_url_credentials_removes_user_and_token():
    url = "https://oauth2:ghp_abcdef123@github.com/org/repo.git"
    assert strip_url_credentials(url) == "https://github.com/org/repo.git"
    assert strip_url_credentials("https://user@host/x") == "https://host/x"


def test_strip_url_credentials_keeps_scp_and_plain_urls():
    assert strip_url_credentials("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert strip_url_credentials("https://pypi.org/simple") == "https://pypi.org/simple"
    assert strip_url_credentials(None) is None


def test_scrub_text_finds_urls_inside_text():
    text = "pip install --index-url https://u:p4ss@idx.example/simple pkg"
    assert "p4ss" not in scrub_text(text)
    assert "https://idx.example/simple" in scrub_text(text)


def test_secret_names():
    for name in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GOOGLE_CREDENTIALS",
                 "NCCL_AUTH_X", "api_key"):
        assert is_secret_name(name), name
    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "NCCL_DEBUG"):
        assert not is_secret_name(name), name


def test_redact_argv_masks_secret_options_in_both_forms():
    argv = ["python", "train.py", "--api-key=sk-123", "--token", "abc", "--lr", "0.1",
            "WANDB_API_KEY=zzz", "--data", "s3://user:pw@bucket/x"]
    out = redact_argv(argv)
    joined = " ".join(out)
    for secret in ("sk-123", "abc", "zzz", "pw@"):
        assert secret not in joined
    assert out[:2] == ["python", "train.py"]
    assert "--lr" in out and "0.1" in out
    assert "--token" in out and "***" in out


def test_secret_files():
    for path in (".env", "config/.env.production", ".netrc", "certs/server.pem", "id_rsa",
                 "home/.ssh/config", "deploy.key", ".git-credentials"):
        assert is_secret_file(path), path
    for path in ("train.py", "env.py", "README.md", "data/keys.csv"):
        assert not is_secret_file(path), path


GLOB_ALPHABET = "ab.*-_?[]!\n"


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet="ab.-_\n*", max_size=8), st.text(alphabet=GLOB_ALPHABET, max_size=8))
def test_glob_match_is_fnmatchcase(name, pattern):
    import fnmatch

    from envlock.model.redact import glob_match

    assert glob_match(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)


def test_glob_match_on_envlocks_own_patterns():
    import fnmatch

    from envlock.model.redact import SECRET_FILE_PATTERNS, glob_match
    from envlock.snapshot.runtime import DEFAULT_ALLOW

    names = [".env", ".env.local", "prod.env", "id_rsa.pub", "service-account-x.json",
             "OMP_NUM_THREADS", "TORCH_HOME", "TF_XLA_FLAGS", "TF_HOME", "key.pem.bak", "x"]
    for pattern in SECRET_FILE_PATTERNS + DEFAULT_ALLOW:
        for name in names:
            assert glob_match(name, pattern) == fnmatch.fnmatchcase(name, pattern)
