"""Adapters sit below the operations: they depend on the model, the errors and each other,
never on the configuration, a probe, an operation or the CLI (what those decide is passed
in, as envlock.operations.connect passes the tracking URI and the server probe)."""

from pathlib import Path

import pytest

from tests.unit.test_layout import PACKAGE, imports

ABOVE = ("envlock.config", "envlock.operations", "envlock.cli", "envlock.snapshot",
         "envlock.api")


@pytest.mark.parametrize("module", sorted(p.relative_to(PACKAGE).as_posix()
                                          for p in (PACKAGE / "adapters").rglob("*.py")))
def test_adapters_never_reach_up_a_layer(module):
    bad = sorted(name for name in imports(PACKAGE / module)
                 if any(name == a or name.startswith(a + ".") for a in ABOVE))
    assert not bad, f"envlock/{module} is an adapter but imports {bad}"


def test_the_walk_covers_the_tracking_adapter():
    found = {Path(m).name for m in (PACKAGE / "adapters" / "tracking").rglob("*.py")}
    assert {"__init__.py", "relay.py", "schema.py"} <= found
