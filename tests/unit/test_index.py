from envlock.snapshot.index import index_section


def test_pip_config_and_env_with_credentials_stripped(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://u:secret@corp.example/simple\n"
                    "extra-index-url = https://download.pytorch.org/whl/cu121\n"
                    "find-links = /wheels\n")
    section = index_section({"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path)}, None)
    assert section == {"index_url": "https://corp.example/simple",
                       "extra_index_urls": ["https://download.pytorch.org/whl/cu121"],
                       "find_links": ["/wheels"], "no_index": False}


def test_environment_overrides_config(tmp_path):
    env = {"PIP_CONFIG_FILE": str(tmp_path / "none.conf"), "HOME": str(tmp_path),
           "PIP_INDEX_URL": "https://tok@mirror/simple", "PIP_NO_INDEX": "1"}
    section = index_section(env, None)
    assert section["index_url"] == "https://mirror/simple" and section["no_index"] is True


def test_default_is_pypi(tmp_path):
    section = index_section({"HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path)}, None)
    assert section["index_url"] == "https://pypi.org/simple"
