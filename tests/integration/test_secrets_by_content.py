"""Secrets found by content in a real git repository: a `terraform.tfvars` holding an AWS
key pair (untracked) and a `config.yaml` whose uncommitted edit adds a GitHub token are
withheld from the lock's diff and untracked list and from the code layer, named by file
and kind; a file allowed with --allow-file is kept; a token in a committed file is left
out of the code layer at build time. The values appear in no lock, output or layer."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from envlock.model import lockfile
from envlock.operations.code import code_context
from tests.conftest import git, init_repo, run_envlock
from tests.integration.conftest import SYSTEM_PYTHON

# Made-up values of real formats (never valid credentials).
AWS_ID = "AKIAZ7Q3XK5N2MB4W6PD"
AWS_SECRET = "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"
GITHUB = "ghp_R4nd0mT0kenV4lu3F0rT3st1ngXyZ12345ab"
COMMITTED = "ghp_C0mm1tt3dT0k3nV4lu3F0rT3st1ngXyZ9876"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
WITHHELD = (AWS_ID, AWS_SECRET, GITHUB)

CONFIG = "".join(f"setting_{i}: {i}\n" for i in range(1, 31))


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> tuple[Path, Path]:
    """The repository with its secrets, and a venv with no packages (a fast image)."""
    root = init_repo(tmp_path_factory.mktemp("secrets") / "exp", {
        "train.py": "print('train')\n", "config.yaml": CONFIG,
        "deploy.yaml": f"registry_token: {COMMITTED}\n", ".gitignore": ".venv/\n"})
    lines = CONFIG.splitlines(keepends=True)
    lines[2] = "setting_3: 300\n"  # an edit far from the secret: its hunk stays
    lines[21] = f"hub_token: {GITHUB}\n"
    (root / "config.yaml").write_text("".join(lines))
    (root / "terraform.tfvars").write_text(
        f'region = "eu-west-1"\naws_access_key_id = "{AWS_ID}"\n'
        f'aws_secret_access_key = "{AWS_SECRET}"\n')
    (root / "allowed.yaml").write_text(f"hf_token: {HF}  # a test fixture, kept on purpose\n")
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(root / ".venv")],
                   check=True)
    return root, root / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def locked(exp) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root, python = exp
    lock = root.parent / "envlock.lock.yaml"
    result = run_envlock("lock", "--python", str(python), "--no-gpu", "-o", str(lock),
                         "--allow-file", "allowed.yaml", cwd=root, check=True)
    return lock, result


def test_the_lock_withholds_by_content_and_names_file_and_kind(locked):
    lock_path, result = locked
    section = lockfile.load(lock_path).git
    assert section is not None
    scan = section["secret_scan"]
    withheld = {e["path"]: e for e in scan["withheld"]}
    assert set(withheld) == {"config.yaml", "terraform.tfvars"}
    assert "AWS Access Key" in withheld["terraform.tfvars"]["kind"]
    assert "GitHub Token" in withheld["config.yaml"]["kind"]
    assert len(withheld["config.yaml"]["hunks"]) == 1  # only the hunk with the token
    assert section["withheld"] == ["terraform.tfvars"]  # config.yaml keeps its other edit
    assert "+setting_3: 300" in section["diff"] and "hub_token" not in section["diff"]
    assert [u["path"] for u in section["untracked"]] == ["allowed.yaml"]
    assert [(e["path"], "Hugging Face Token" in e["kind"]) for e in scan["allowed"]] == \
        [("allowed.yaml", True)]
    assert "terraform.tfvars (AWS Access Key" in result.stderr
    assert "config.yaml (GitHub Token" in result.stderr and "1 hunk of the diff" in result.stderr
    assert "--allow-file" in result.stderr


def test_no_withheld_value_reaches_the_lock_or_any_output(locked):
    lock_path, result = locked
    text = lock_path.read_text() + result.stdout + result.stderr
    for value in (*WITHHELD, HF):  # the allowed file is kept, but by hash only
        assert value not in text


def test_the_locked_diff_still_applies_without_the_withheld_hunk(exp, locked):
    root, _ = exp
    layer = code_context(lockfile.load(locked[0]), root)
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as archive:
        files = {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers()
                 if m.isfile()}
    assert sorted(files) == ["workspace/.gitignore", "workspace/allowed.yaml",
                             "workspace/config.yaml", "workspace/train.py"]
    assert "setting_3: 300" in files["workspace/config.yaml"]
    assert "setting_22: 22" in files["workspace/config.yaml"]  # the committed line
    assert HF in files["workspace/allowed.yaml"]
    for value in (*WITHHELD, COMMITTED):
        assert value.encode() not in layer.tar
    assert [e["path"] for e in layer.secret_scan["withheld"]] == ["deploy.yaml"]


def test_the_image_holds_no_secret_and_build_names_what_it_left_out(exp, locked, infra,
                                                                    docker_client,
                                                                    created_images):
    root, _ = exp
    result = run_envlock("build", str(locked[0]), "--base-image", infra.base_image,
                         "--no-push", "--run-id", "secrets-1", "--json", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads(result.stdout)["result"]
    created_images.update({built["image"], built["env_image"]})
    assert [(e["path"], e["kind"]) for e in built["secrets_withheld"]] == \
        [("deploy.yaml", "GitHub Token")]
    assert "deploy.yaml out of the code layer" in result.stderr
    listing = docker_client.containers.run(
        built["image"], ["sh", "-c", "ls -a /workspace; cat /workspace/*.yaml"], remove=True,
        network_disabled=True).decode()
    assert "allowed.yaml" in listing and "deploy.yaml" not in listing
    assert "terraform.tfvars" not in listing and HF in listing
    for value in (*WITHHELD, COMMITTED):
        assert value not in listing and value not in result.stdout + result.stderr


def test_check_keeps_what_the_lock_allowed_and_sees_no_git_drift(exp, locked):
    root, python = exp
    result = run_envlock("check", "--lock", str(locked[0]), "--python", str(python), "--json",
                         cwd=root)
    assert result.returncode == 0, result.stderr
    changes = json.loads(result.stdout)["result"]["diff"]["changes"]
    assert not [c for c in changes if c["category"] in ("git", "code")]
    git(root, "status")  # the repository is untouched
