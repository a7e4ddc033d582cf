"""The audit's pure parts on real OSV records (tests/fixtures/osv): version matching,
severity, merging of aliased records, thresholds and reports; the offline dump reader;
and the gate stopping capture and build before anything happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from envlock.adapters.osv import AdvisorySourceError, OsvDump, sources
from envlock.model import audit as model
from envlock.model import lockfile, osv
from envlock.model.report import junit
from envlock.operations.audit import AuditFailed, AuditOptions, audit, gate
from tests.factories import make_lock, package

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "osv"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """envlock's cache (the dumps' indexes) in the test's own directory."""
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def record(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def advisory(name: str) -> osv.Advisory:
    return osv.parse(record(name))


# ---------------------------------------------------------------- matching
@pytest.mark.parametrize(("version", "affected"), [
    ("2.2.1", False), ("2.3.0", True), ("2.25.1", True), ("2.30.0", True), ("2.31.0", False),
    ("2.32.3", False), ("2.31.0rc1", True),
])
def test_an_ecosystem_range_opens_at_introduced_and_closes_at_fixed(version, affected):
    assert advisory("GHSA-j8r2-6x86-q33q").affects("requests", version) is affected


@pytest.mark.parametrize(("version", "affected"), [
    ("1.26.4", True), ("1.26.16", True), ("1.26.17", False), ("1.26.20", False),
    ("2.0.0", True), ("2.0.5", True), ("2.0.6", False), ("2.2.0", False),
])
def test_several_pairs_in_one_range_are_walked_in_version_order(version, affected):
    # PYSEC-2023-192 lists "introduced 2.0.0, fixed 2.0.6, introduced 0, fixed 1.26.17".
    assert advisory("PYSEC-2023-192").affects("urllib3", version) is affected


def test_the_enumerated_versions_count_beside_the_ranges():
    pysec = advisory("PYSEC-2023-74")
    assert pysec.affects("requests", "2.25.1") and not pysec.affects("requests", "2.31.0")
    only_listed = replace(pysec, affected=(replace(pysec.affected[0], ranges=()),))
    assert only_listed.affects("requests", "2.25.1")
    assert not only_listed.affects("requests", "2.2.1")


def test_last_affected_closes_after_that_version():
    entry = osv.Affected("pkg", ((("introduced", "1.0"), ("last_affected", "1.4.2")),),
                         frozenset())
    assert osv.affects(entry, "1.4.2") and not osv.affects(entry, "1.4.3")
    assert not osv.affects(entry, "0.9")


def test_a_local_build_is_its_release():
    ghsa = advisory("GHSA-cx63-2mw6-8hw5")  # setuptools < 70.0.0
    assert ghsa.affects("setuptools", "69.5.1+cpu")
    assert not ghsa.affects("setuptools", "70.0.0+cu121")
    assert advisory("PYSEC-2020-96").affects("pyyaml", "5.3+local")  # by its versions list


def test_names_are_compared_normalized():
    assert advisory("GHSA-8q59-q68h-6hv4").affects("PyYAML", "5.3")
    assert advisory("GHSA-8q59-q68h-6hv4").affects("pyyaml", "5.3")
    assert not advisory("GHSA-8q59-q68h-6hv4").affects("pyyaml", "5.4")


def test_a_withdrawn_record_affects_nothing():
    withdrawn = osv.parse({**record("GHSA-j8r2-6x86-q33q"), "withdrawn": "2024-01-01T00:00:00Z"})
    assert not withdrawn.affects("requests", "2.25.1")


# ---------------------------------------------------------------- severity
def test_severity_is_githubs_rating_with_the_cvss_score_beside_it():
    assert osv.severity(record("GHSA-j8r2-6x86-q33q")) == ("medium", 6.1)
    assert osv.severity(record("GHSA-8q59-q68h-6hv4")) == ("critical", 9.8)


def test_without_a_rating_the_highest_cvss_vector_decides():
    ghsa = record("GHSA-cx63-2mw6-8hw5")  # CVSS v3 8.8 and v4 vectors, rated HIGH
    del ghsa["database_specific"]
    level, score = osv.severity(ghsa)
    assert level == "high" and score == 8.8
    only_v4 = {"severity": [s for s in ghsa["severity"] if s["type"] == "CVSS_V4"]}
    assert osv.severity(only_v4)[0] == "high"
    v2 = {"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]}
    assert osv.severity(v2) == ("high", 7.5)


def test_a_record_without_severity_or_with_a_broken_vector_is_unknown():
    assert osv.severity(record("PYSEC-2023-74")) == (None, None)
    assert osv.severity({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/nonsense"}]}) \
        == (None, None)


# ---------------------------------------------------------------- findings
def matches(*pairs: tuple[str, str, list[str]]) -> dict:
    return {(name, version): [advisory(r) for r in records] for name, version, records in pairs}


def test_records_that_alias_each_other_are_one_finding():
    found = model.findings(matches(("requests", "2.25.1",
                                    ["GHSA-j8r2-6x86-q33q", "PYSEC-2023-74",
                                     "GHSA-9wx4-h78v-vm56"])))
    assert [f.id for f in found] == ["GHSA-9wx4-h78v-vm56", "GHSA-j8r2-6x86-q33q"]
    merged = found[1]
    assert merged.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert merged.severity == "medium" and merged.fixed == ("2.31.0",)
    assert merged.upgrade == "2.31.0"


def test_fixed_versions_of_every_branch_are_listed_and_the_upgrade_is_the_next_one():
    (finding,) = model.findings(matches(("urllib3", "1.26.4",
                                         ["GHSA-v845-jxx5-vc9f", "PYSEC-2023-192"])))
    assert finding.fixed == ("1.26.17", "2.0.6") and finding.upgrade == "1.26.17"


@pytest.mark.parametrize(("fail_on", "failing"), [
    ("any", {"GHSA-8q59-q68h-6hv4", "GHSA-j8r2-6x86-q33q", "PYSEC-2021-66"}),
    ("medium", {"GHSA-8q59-q68h-6hv4", "GHSA-j8r2-6x86-q33q", "PYSEC-2021-66"}),
    ("high", {"GHSA-8q59-q68h-6hv4", "PYSEC-2021-66"}),
    ("critical", {"GHSA-8q59-q68h-6hv4", "PYSEC-2021-66"}),
])
def test_fail_on_sets_the_threshold_and_unknown_severity_always_fails(fail_on, failing):
    found = model.findings(matches(("pyyaml", "5.3", ["GHSA-8q59-q68h-6hv4"]),
                                   ("requests", "2.25.1", ["GHSA-j8r2-6x86-q33q"]),
                                   ("jinja2", "2.11.2", ["PYSEC-2021-66"])), fail_on)
    assert {f.id for f in found if f.fails} == failing


def test_an_ignored_finding_is_shown_but_never_fails():
    found = model.findings(matches(("requests", "2.25.1", ["GHSA-j8r2-6x86-q33q",
                                                           "PYSEC-2023-74"])),
                           ignore=["cve-2023-32681"])
    assert found[0].ignored and not found[0].fails


def report(findings, fail_on="any") -> model.AuditReport:
    return model.AuditReport(target="envlock.lock.yaml", fail_on=fail_on,
                             audited=(("pyyaml", "5.3"), ("six", "1.16.0")),
                             not_audited=(("mlproj", "0.1.0", "editable"),),
                             findings=findings,
                             sources=(model.Source("osv", "offline", records=14),))


def test_one_junit_case_per_audited_package_failing_where_a_finding_fails():
    result = report(model.findings(matches(("pyyaml", "5.3", ["GHSA-8q59-q68h-6hv4",
                                                              "PYSEC-2021-142",
                                                              "PYSEC-2020-96"]))))
    cases = model.cases(result)
    assert [c.name for c in cases] == ["package pyyaml 5.3", "package six 1.16.0"]
    assert not cases[0].ok and "GHSA-8q59-q68h-6hv4 critical, fixed in 5.4" in cases[0].detail
    assert cases[1].ok and cases[1].detail == "no known vulnerabilities"
    xml = junit("envlock.audit", cases)
    assert 'tests="2" failures="1"' in xml
    text = model.report_markdown(result)
    assert "❌ envlock audit: 2 known vulnerabilities in 1 package (1 critical, 1 unknown)" in text
    assert "| pyyaml | 5.3 | GHSA-8q59-q68h-6hv4 | critical | 5.4 |" in text
    assert "mlproj 0.1.0 (editable)" in text


def test_a_clean_report_passes():
    result = report(())
    assert not result.failed and result.summary() == "no known vulnerabilities in 2 packages"
    assert all(c.ok for c in model.cases(result))


# ---------------------------------------------------------------- the offline dump
VULNERABLE = (("requests", "2.25.1"), ("urllib3", "1.26.4"), ("pyyaml", "5.3"),
              ("six", "1.16.0"))


def test_the_dump_is_read_from_a_directory_and_from_a_zip_alike(tmp_path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(FIXTURES.glob("*.json")):
            zipped.write(file, file.name)
    directory, zipped_dump = OsvDump(FIXTURES), OsvDump(archive)
    by_dir, by_zip = directory.lookup(VULNERABLE), zipped_dump.lookup(VULNERABLE)
    assert directory.records == zipped_dump.records == 14
    ids = {k: sorted(a.id for a in v) for k, v in by_dir.items()}
    assert ids == {k: sorted(a.id for a in v) for k, v in by_zip.items()}
    assert ids[("requests", "2.25.1")] == ["GHSA-9wx4-h78v-vm56", "GHSA-j8r2-6x86-q33q",
                                           "PYSEC-2023-74"]
    assert "GHSA-q2q7-5pp4-w6pg" in ids[("urllib3", "1.26.4")]
    assert ("six", "1.16.0") not in ids


def test_a_second_audit_of_the_same_dump_reads_only_the_locked_packages_records(
        tmp_path, cache, monkeypatch):
    dump = tmp_path / "dump"
    dump.mkdir()
    for file in FIXTURES.glob("*.json"):
        (dump / file.name).write_bytes(file.read_bytes())
    first = OsvDump(dump).lookup([("requests", "2.25.1")])
    assert len(list((cache / "osv-index").glob("*.json"))) == 1
    read: list[str] = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or
                        original(self))
    again = OsvDump(dump)
    second = again.lookup([("requests", "2.25.1")])
    assert sorted(read) == ["GHSA-9wx4-h78v-vm56.json", "GHSA-j8r2-6x86-q33q.json",
                            "PYSEC-2023-74.json"]
    assert again.records == 14
    assert {k: [a.id for a in v] for k, v in first.items()} == \
        {k: [a.id for a in v] for k, v in second.items()}
    (dump / "PYSEC-2023-74.json").unlink()  # the dump changed: the index is made again
    read.clear()
    assert len(OsvDump(dump).lookup([("requests", "2.25.1")])[("requests", "2.25.1")]) == 2
    assert len(read) == 13


@pytest.mark.parametrize("make", ["missing", "empty", "not-a-zip", "bad-json"])
def test_an_unreadable_dump_says_why(tmp_path, make):
    path = tmp_path / "dump"
    if make == "empty":
        path.mkdir()
    elif make == "not-a-zip":
        path.write_text("hello")
    elif make == "bad-json":
        path.mkdir()
        (path / "X-1.json").write_text('{"id": "X-1", "affected": [{"package": {"name": "six"')
    with pytest.raises(AdvisorySourceError) as raised:
        OsvDump(path).lookup([("six", "1.16.0")])
    assert str(path) in raised.value.message


def test_sources_are_the_dumps_then_the_api():
    assert [s.kind for s in sources([FIXTURES], None)] == ["offline"]
    assert [s.describe() for s in sources([], None)] == ["https://api.osv.dev"]
    both = sources([FIXTURES], "http://user:secret@127.0.0.1:9/osv/")
    assert [s.describe() for s in both] == [str(FIXTURES), "http://127.0.0.1:9/osv"]


def vulnerable_lock():
    return make_lock(packages=(package("requests", "2.25.1"), package("pyyaml", "5.3"),
                               package("six", "1.16.0"),
                               package("mlproj", "0.1.0", "editable", path="/src")))


def test_audit_reads_every_source_and_names_the_unreachable_ones():
    warned: list[str] = []
    result = audit(vulnerable_lock(), AuditOptions(advisories=(FIXTURES,),
                                                   osv_url="http://127.0.0.1:9"),
                   notify=warned.append)
    assert [s.error is None for s in result.sources] == [True, False]
    assert warned and "127.0.0.1:9" in warned[0]
    assert result.not_audited == (("mlproj", "0.1.0", "editable"),)
    assert {f.package for f in result.findings} == {"requests", "pyyaml"}


def test_no_reachable_source_is_exit_2_naming_each_one_tried(tmp_path):
    with pytest.raises(AdvisorySourceError) as raised:
        audit(vulnerable_lock(), AuditOptions(advisories=(tmp_path / "nothing",),
                                              osv_url="http://127.0.0.1:9"))
    message = raised.value.message
    assert raised.value.exit_code == 2 and message.startswith("no advisory source is reachable")
    assert str(tmp_path / "nothing") in message and "http://127.0.0.1:9" in message


def test_the_gate_raises_exit_1_with_the_findings_and_what_was_not_done():
    with pytest.raises(AuditFailed) as raised:
        gate(vulnerable_lock(), AuditOptions(advisories=(FIXTURES,), fail_on="high"),
             "envlock.lock.yaml", "nothing was built or pushed")
    error = raised.value
    assert error.exit_code == 1 and "pyyaml 5.3 GHSA-8q59-q68h-6hv4 (critical)" in error.message
    assert "requests" not in error.message  # medium: below --fail-on high
    assert error.message.endswith("nothing was built or pushed")
    assert "pyyaml>=5.4" in str(error.hint)
    passed = gate(vulnerable_lock(), AuditOptions(advisories=(FIXTURES,), fail_on="critical",
                                                  ignore=("GHSA-8q59-q68h-6hv4",
                                                          "CVE-2020-1747")),
                  "envlock.lock.yaml", "")
    assert not passed.failed


def test_an_unknown_fail_on_level_is_bad_input():
    with pytest.raises(Exception) as raised:
        AuditOptions(fail_on="severe")
    assert "any, low, medium, high, critical" in str(raised.value)


# ---------------------------------------------------------------- the gate on build/capture
def test_build_audit_stops_before_the_engine_is_ever_reached(tmp_path):
    """With DOCKER_HOST pointing at nothing, any engine call would fail with exit 2: the
    audit's exit 1 shows it ran first. Nothing is built, tagged or pushed."""
    lock_path = lockfile.write(vulnerable_lock(), tmp_path / "envlock.lock.yaml")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    env.pop("ENVLOCK_DEBUG", None)
    out = subprocess.run([sys.executable, "-m", "envlock", "build", str(lock_path),
                          "--registry", "127.0.0.1:9/team/proj", "--advisories", str(FIXTURES),
                          "--audit-fail-on", "high"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "audit failed: 2 known vulnerabilities: pyyaml 5.3 PYSEC-2020-96 (unknown " \
           "severity), pyyaml 5.3 GHSA-8q59-q68h-6hv4 (critical)" in out.stderr
    assert "nothing was built or pushed" in out.stderr
    assert "engine" not in out.stderr.lower()


def test_capture_audit_stops_before_anything_is_kept_built_or_recorded(tmp_path, monkeypatch):
    from envlock.operations.capture import CaptureRequest, capture
    from tests.fakes import FakeEngine, FakeTracker

    root = tmp_path / "p"
    root.mkdir()
    import importlib

    monkeypatch.setattr(importlib.import_module("envlock.snapshot"), "snapshot",
                        lambda **_: vulnerable_lock())
    tracker, engine = FakeTracker(), FakeEngine()
    run_id = tracker.add_run(name="train")
    before = list(tracker.calls)
    options = AuditOptions(advisories=(FIXTURES,))
    with pytest.raises(AuditFailed):
        capture(CaptureRequest(run_id, project=root, registry="reg.example:5000/p"),
                tracker=tracker, engine=engine,
                audit=lambda lock: gate(lock, options, "capture",
                                        "nothing was built, pushed or recorded"))
    assert not engine.calls and tracker.calls == before
    assert not tracker.runs[run_id].tags and not tracker.runs[run_id].artifacts
    assert not (root / ".envlock").exists()


@pytest.mark.parametrize("argv", [["--help"], ["audit", "--help"], ["build", "--help"],
                                  ["check", "--help"], ["capture", "--help"],
                                  ["export", "--help"], ["sbom", "--help"]])
def test_the_audit_and_scan_libraries_stay_off_cli_start_up(argv):
    """And every other heavy library: the shared options and connections included."""
    heavy = ("detect_secrets", "cvss", "requests", "docker", "mlflow", "kubernetes", "torch")
    code = ("import runpy, sys\nsys.argv = ['envlock', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('envlock', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "[]"
