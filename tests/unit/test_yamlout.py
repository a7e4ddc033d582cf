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


@settings(max_examples=200, deadline=None)
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


def test_unprintable_is_exactly_the_complement_of_what_yaml_accepts_verbatim():
    import re

    from envlock.model.yamlout import _UNPRINTABLE

    accepted = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                          "\U00010000-\U0010ffff]")
    edges = {0x10ffff}
    for low, high in ((0x9, 0xa), (0x20, 0x7e), (0xa0, 0x2027), (0x202a, 0xd7ff),
                      (0xe000, 0xfefe), (0xff00, 0xfffd), (0x10000, 0x10ffff)):
        edges |= {low - 1, low, low + 1, high - 1, high, high + 1}
    for code in sorted(c for c in edges if 0 <= c <= 0x10ffff):
        char = chr(code)
        assert bool(_UNPRINTABLE.match(char)) != bool(accepted.match(char)), hex(code)
