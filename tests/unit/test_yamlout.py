"""envlock's YAML writer must read back exactly with PyYAML's safe loader."""

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from envlock.model import lockfile
from envlock.model.yamlout import dump, scalar
from tests.factories import make_lock

SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=40)
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), DOCS, max_size=5))
def test_any_document_round_trips(doc):
    assert yaml.safe_load(dump(doc)) == doc


def test_ambiguous_strings_are_quoted():
    for text in ("yes", "No", "null", "~", "1.0", "3.11.7", "0x1f", "", " pad", "a: b", "#c",
                 "- x", "[x]", "{x}", "@x", "`x`", "!x", "&x", "*x", "%x"):
        assert yaml.safe_load(f"k: {scalar(text)}") == {"k": text}, text
    assert scalar("six") == "six" and scalar("/usr/lib/python3") == "/usr/lib/python3"


def test_diffs_stay_readable_literal_blocks():
    diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+  new\n"
    text = dump({"git": {"diff": diff}})
    assert "diff: |2\n" in text and "    +  new\n" in text
    assert yaml.safe_load(text) == {"git": {"diff": diff}}


def test_lockfile_is_identical_to_what_pyyaml_reads():
    lock = make_lock()
    assert lockfile.loads(lockfile.dumps(lock)) == lock
