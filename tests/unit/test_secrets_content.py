"""Secrets found by content: the diff's hunks (pure), the scanner on files (real
detect-secrets), and what the probes and the code layer withhold."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from envlock.model.patch import split, withhold
from envlock.operations.code import pack
from envlock.snapshot.directory import Rules, probe_directory
from envlock.snapshot.secrets import Scan, allow_patterns, is_config, recorded_allow

# Made-up values of real formats (never valid credentials).
AWS_ID = "AKIAZ7Q3XK5N2MB4W6PD"
AWS_SECRET = "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"
GITHUB = "ghp_R4nd0mT0kenV4lu3F0rT3st1ngXyZ12345ab"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
TFVARS = (f'region = "eu-west-1"\naws_access_key_id = "{AWS_ID}"\n'
          f'aws_secret_access_key = "{AWS_SECRET}"\n')
VALUES = (AWS_ID, AWS_SECRET, GITHUB, HF)


# ---------------------------------------------------------------- diff hunks (pure)
def numbered(changes: dict[int, str], count: int = 40) -> list[str]:
    return [changes.get(i, f"line {i}") for i in range(1, count + 1)]


def unified(old: list[str], new: list[str], path: str = "config.yaml") -> bytes:
    import difflib

    body = "".join(difflib.unified_diff([f"{x}\n" for x in old], [f"{x}\n" for x in new],
                                        f"a/{path}", f"b/{path}"))
    return f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n{body}".encode()


def test_a_diff_splits_into_files_and_hunks_and_joins_back_exactly():
    diff = unified(numbered({}), numbered({3: "a", 20: "b", 35: "c"})) + \
        unified(["x"], ["y"], "dir/other.py")
    files = split(diff)
    assert [f.path for f in files] == ["config.yaml", "dir/other.py"]
    assert [h.label for h in files[0].hunks] == ["@@ -1,6 +1,6 @@", "@@ -17,7 +17,7 @@",
                                                "@@ -32,7 +32,7 @@"]
    assert b"".join(f.to_bytes() for f in files) == diff


def test_only_the_hunk_holding_the_secret_line_goes():
    diff = unified(numbered({}), numbered({3: "a", 20: "token: x", 35: "c"}))
    kept, outcome = withhold(diff, {"config.yaml": [20]})
    assert outcome == {"config.yaml": ["@@ -17,7 +17,7 @@"]}
    assert b"token: x" not in kept and b"+a\n" in kept and b"+c\n" in kept
    unchanged, nothing = withhold(diff, {"config.yaml": [10]})  # committed text, no hunk
    assert unchanged == diff and nothing == {}


def test_a_file_whose_every_hunk_goes_goes_whole_and_others_stay():
    diff = unified(["a"], ["token: x"]) + unified(["x"], ["y"], "train.py")
    kept, outcome = withhold(diff, {"config.yaml": [1]})
    assert outcome == {"config.yaml": None}
    assert [f.path for f in split(kept)] == ["train.py"]


def test_binary_changes_and_quoted_paths_are_withheld_whole():
    binary = (b"diff --git a/w.bin b/w.bin\nindex 1..2 100644\nGIT binary patch\n"
              b"literal 3\nKcmZ?wpY8wv\n\nliteral 3\nKcmZ?wpY8wv\n\n")
    quoted = (b'diff --git "a/caf\\303\\251.yaml" "b/caf\\303\\251.yaml"\n'
              b'index 1..2 100644\n--- "a/caf\\303\\251.yaml"\n+++ "b/caf\\303\\251.yaml"\n'
              b"@@ -1 +1 @@\n-a\n+token: x\n")
    assert [f.path for f in split(binary + quoted)] == ["w.bin", "café.yaml"]
    kept, outcome = withhold(binary + quoted, {"w.bin": [1], "café.yaml": [1]})
    assert kept == b"" and outcome == {"w.bin": None, "café.yaml": None}


def test_a_deleted_file_has_no_new_side():
    diff = (b"diff --git a/gone.py b/gone.py\ndeleted file mode 100644\nindex 1..0\n"
            b"--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n")
    assert split(diff)[0].path is None
    assert withhold(diff, {"gone.py": [1]}) == (diff, {})


# ---------------------------------------------------------------- the scanner
def scan_file(tmp_path: Path, rel: str, content: str | bytes, scan: Scan | None = None):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return (scan or Scan()).file(path, rel)


@pytest.mark.parametrize(("rel", "content", "kinds"), [
    ("terraform.tfvars", TFVARS, {"AWS Access Key"}),
    ("app.ini", "[auth]\nclient_secret = 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo'\n",
     {"Secret Keyword"}),
    ("config.yaml", f"model: resnet\nhub:\n  token: {GITHUB}\n", {"GitHub Token"}),
    ("train.py", f'HF_TOKEN = "{HF}"\n', {"Hugging Face Token"}),
    ("deploy/id", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
                  "-----END OPENSSH PRIVATE KEY-----\n", {"Private Key"}),
    ("settings.ini", "[db]\npassword = hunter2-but-longer\n", {"Secret Keyword"}),
])
def test_the_scanner_names_the_kind_of_secret_and_its_lines(tmp_path, rel, content, kinds):
    finding = scan_file(tmp_path, rel, content)
    assert finding is not None and kinds <= set(finding.kinds) and finding.lines
    assert not any(value in repr(finding) for value in VALUES)


@pytest.mark.parametrize(("rel", "content"), [
    ("train.py", 'password = "hunter2"  # keywords count in config files only\n'),
    ("train.py", 'SHA = "9f86d081884c7d659a2feaeae88e5b43b3a5e7b2c1f0e0d8c3a4b5f6e7d8c9a0"\n'),
    ("pins.yaml", "commit: 2432b6c57f614aff3c3ba2154ce09ee57c1ba354\n"),  # hex: not a secret
    ("runs/envlock.lock.yaml", "diff: bHIgPSAwLjEKZXBvY2hzID0gM2xyID0gMC4xCmVwb2NocyA9IDM=\n"),
])
def test_code_and_digests_are_not_secrets(tmp_path, rel, content):
    assert scan_file(tmp_path, rel, content) is None


def test_binaries_and_large_files_are_not_scanned_and_say_why(tmp_path):
    scan = Scan()
    assert scan_file(tmp_path, "model.pt", b"\0\1" + GITHUB.encode(), scan) is None
    assert scan_file(tmp_path, "latin1.txt", "café".encode("latin-1"), scan) is None
    assert scan_file(tmp_path, "big.json", '{"t": "' + "x" * (1 << 20) + GITHUB + '"}', scan) \
        is None
    assert scan.unscanned == [{"path": "model.pt", "reason": "binary"},
                              {"path": "latin1.txt", "reason": "binary (not UTF-8 text)"},
                              {"path": "big.json", "reason": "larger than 1 MiB"}]


def test_an_allowed_file_is_kept_and_recorded_as_allowed(tmp_path):
    scan = Scan(allow=("conf/*.yaml",))
    assert scan_file(tmp_path, "conf/hub.yaml", f"token: {GITHUB}\n", scan) is None
    assert scan.record() == {"withheld": [], "unscanned": [],
                             "allowed": [{"path": "conf/hub.yaml", "kind": "GitHub Token"}]}
    assert recorded_allow({"secret_scan": scan.record()}) == ("conf/hub.yaml",)


def test_allow_patterns_are_made_relative_to_the_project(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "hub.yaml").write_text("x")
    monkeypatch.chdir(tmp_path / "conf")
    assert allow_patterns(["hub.yaml", str(tmp_path / "a.env"), "./b.json", "*.tfvars"],
                          tmp_path) == ("conf/hub.yaml", "a.env", "b.json", "*.tfvars")


def test_config_files_are_known_by_suffix_and_dotenv_names():
    assert is_config("infra/terraform.tfvars") and is_config(".env.local")
    assert is_config("conf/App.YAML") and not is_config("train.py")
    assert not is_config("envlock.lock.yaml")


def test_detect_secrets_is_imported_only_when_a_file_needs_it(tmp_path):
    """A clean code file is cleared by the cached patterns alone (the cache is made on the
    first scan); a config file needs detect-secrets itself."""
    code = ("import sys\nfrom pathlib import Path\nfrom envlock.snapshot.secrets import Scan\n"
            "Scan().file(Path(sys.argv[1]), Path(sys.argv[1]).name)\n"
            "print('detect_secrets' in sys.modules)\n")
    (tmp_path / "train.py").write_text("print('training')\n")
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    env = {**os.environ, "ENVLOCK_CACHE": str(tmp_path / "cache")}

    def imported(name: str) -> str:
        return subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert imported("train.py") == "True"  # first run: fills the cache
    assert (tmp_path / "cache" / "secret-patterns.json").is_file()
    assert imported("train.py") == "False"
    assert imported("params.yaml") == "True"


# ---------------------------------------------------------------- directory and code layer
def test_a_directory_project_withholds_by_content_and_keeps_what_is_allowed(tmp_path):
    (tmp_path / "terraform.tfvars").write_text(TFVARS)
    (tmp_path / "config.yaml").write_text(f"hub_token: {GITHUB}\n")
    (tmp_path / "train.py").write_text("print('train')\n")
    code = probe_directory(tmp_path, Rules(allow=("config.yaml",)))
    assert [f["path"] for f in code["files"]] == ["config.yaml", "train.py"]
    assert code["withheld"] == ["terraform.tfvars"]
    scan = code["secret_scan"]
    assert [(e["path"], "AWS Access Key" in e["kind"]) for e in scan["withheld"]] == \
        [("terraform.tfvars", True)]
    assert scan["allowed"][0]["path"] == "config.yaml"


def test_the_code_layer_leaves_out_flagged_files_and_keeps_allowed_ones(tmp_path):
    (tmp_path / "terraform.tfvars").write_text(TFVARS)
    (tmp_path / "config.yaml").write_text(f"hub_token: {GITHUB}\n")
    (tmp_path / "train.py").write_text(f'TOKEN = "{HF}"\n')
    (tmp_path / "ok.py").write_text("print(1)\n")
    layer = pack(tmp_path, allow=("config.yaml",))
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as archive:
        names = sorted(archive.getnames())
    assert names == ["workspace", "workspace/config.yaml", "workspace/ok.py"]
    assert {e["path"] for e in layer.secret_scan["withheld"]} == {"terraform.tfvars", "train.py"}
    for value in (AWS_ID, AWS_SECRET, HF):
        assert value.encode() not in layer.tar


def test_a_text_found_clean_is_not_matched_again_and_an_edited_one_is(tmp_path, monkeypatch):
    from envlock.snapshot import secrets

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    secrets._saved.cache_clear()
    secrets._patterns.cache_clear()
    assert not secrets._suspect("print('training')\n")
    secrets._saved.cache_clear()
    secrets._patterns.cache_clear()
    with monkeypatch.context() as patched:  # a new process: the clean text costs no regex
        patched.setattr(secrets, "_patterns", lambda: pytest.fail("patterns compiled"))
        assert not secrets._suspect("print('training')\n")
    assert secrets._suspect(f"print('training')\ntoken = '{GITHUB}'\n")
    secrets._saved.cache_clear()
    secrets._patterns.cache_clear()
