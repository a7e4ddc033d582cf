"""`envlock audit` on a real venv holding vulnerable releases from PyPI, locked with
`envlock lock`, against real OSV records (tests/fixtures/osv): offline from a directory
and from a zip, and online from a loopback server speaking OSV's API; and the gate of
`check --audit`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import run_envlock
from tests.integration.conftest import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "osv"
PINS = ("requests==2.25.1", "urllib3==1.26.4")
#: What the records say of those pins (merged by alias, shown under the GHSA ID, at the
#: worst rating of the merged records: GitHub rates GHSA-v845 MODERATE, its PYSEC twin
#: carries NVD's vector, 8.1 HIGH).
EXPECTED = {("requests", "GHSA-9wx4-h78v-vm56"): "medium",
            ("requests", "GHSA-j8r2-6x86-q33q"): "medium",
            ("urllib3", "GHSA-q2q7-5pp4-w6pg"): "high",
            ("urllib3", "GHSA-v845-jxx5-vc9f"): "high",
            ("urllib3", "PYSEC-2023-212"): "medium"}


@pytest.fixture(scope="module")
def vulnerable(tmp_path_factory) -> tuple[Path, Path]:
    """A venv with requests 2.25.1 and urllib3 1.26.4 from PyPI (and nothing else: pip runs
    from outside it), and its lock."""
    root = tmp_path_factory.mktemp("vulnerable")
    venv.EnvBuilder(with_pip=False).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                          "-q", "--disable-pip-version-check", "--no-deps", *PINS],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lock = root / "envlock.lock.yaml"
    run_envlock("lock", "--python", str(python), "-o", str(lock), "--no-gpu", "--no-git",
                cwd=root, check=True)
    return python, lock


def audit(lock: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_envlock("audit", str(lock), "--json", *args)
    payload = json.loads(result.stdout) if result.stdout.strip() else {}
    return result, payload


def found(payload: dict) -> dict[tuple[str, str], str]:
    return {(f["package"], f["id"]): f["severity"] for f in payload["result"]["findings"]}


def test_offline_from_a_directory_finds_each_vulnerability_once(vulnerable, tmp_path):
    _, lock = vulnerable
    junit, markdown = tmp_path / "audit.xml", tmp_path / "audit.md"
    result, payload = audit(lock, "--advisories", str(FIXTURES), "--junit", str(junit),
                            "--markdown", str(markdown))
    assert result.returncode == 1, result.stderr
    assert found(payload) == EXPECTED
    body = payload["result"]
    assert body["packages_audited"] == 2 and body["sources"][0]["records"] == 14
    merged = next(f for f in body["findings"] if f["id"] == "GHSA-j8r2-6x86-q33q")
    assert merged["aliases"] == ["CVE-2023-32681", "PYSEC-2023-74"]
    assert merged["fixed"] == ["2.31.0"]
    assert 'tests="2" failures="2"' in junit.read_text()
    assert "| urllib3 | 1.26.4 | GHSA-q2q7-5pp4-w6pg | high | 1.26.5 |" in markdown.read_text()
    human = run_envlock("audit", str(lock), "--advisories", str(FIXTURES))
    assert human.returncode == 1
    assert "5 known vulnerabilities in 2 packages (2 high, 3 medium); 5 fail (threshold: " \
           "any severity)" in human.stdout


def test_offline_from_osvs_zip_gives_the_same_findings(vulnerable, tmp_path):
    _, lock = vulnerable
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file in sorted(FIXTURES.glob("*.json")):
            zipped.write(file, file.name)
    result, payload = audit(lock, "--advisories", str(archive))
    assert result.returncode == 1 and found(payload) == EXPECTED


def test_fail_on_and_ignore_decide_the_exit_code(vulnerable):
    _, lock = vulnerable
    result, payload = audit(lock, "--advisories", str(FIXTURES), "--fail-on", "high")
    assert result.returncode == 1
    assert {f["id"] for f in payload["result"]["findings"] if f["fails"]} == \
        {"GHSA-q2q7-5pp4-w6pg", "GHSA-v845-jxx5-vc9f"}
    result, payload = audit(lock, "--advisories", str(FIXTURES), "--fail-on", "high",
                            "--ignore", "CVE-2021-33503", "--ignore", "PYSEC-2023-192")
    assert result.returncode == 0, result.stdout
    assert payload["ok"] is True


# ---------------------------------------------------------------- OSV's API, on loopback
@dataclass
class OsvServer:
    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail: int | None = None  # answer every request with this status


def _affects(record: dict, name: str, version: str) -> bool:
    """The server's own reading of a record (as OSV's does): the enumerated versions, or
    an ECOSYSTEM range's introduced/fixed pairs."""
    for entry in record["affected"]:
        if entry["package"]["name"].lower() != name:
            continue
        if version in entry.get("versions", []):
            return True
        for rng in entry.get("ranges", []):
            if rng["type"] != "ECOSYSTEM":
                continue
            bounds = [(Version(v), k) for e in rng["events"] for k, v in e.items()]
            for (start, kind), (end, _) in zip(sorted(bounds), sorted(bounds)[1:], strict=False):
                if kind == "introduced" and start <= Version(version) < end:
                    return True
    return False


@pytest.fixture(scope="module")
def osv_server() -> Iterator[OsvServer]:
    """A loopback OSV API over the fixture records: ``POST /v1/querybatch`` (two vulns per
    page, with ``next_page_token``) and ``GET /v1/vulns/ID``."""
    records = {p.stem: json.loads(p.read_text()) for p in FIXTURES.glob("*.json")}
    server_state = OsvServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            server_state.requests.append(("GET", self.path))
            if server_state.fail:
                return self.reply(server_state.fail, {"message": "unavailable"})
            vuln = self.path.removeprefix("/v1/vulns/")
            if vuln in records:
                return self.reply(200, records[vuln])
            return self.reply(404, {"code": 5, "message": "Bug not found."})

        def do_POST(self) -> None:  # noqa: N802
            server_state.requests.append(("POST", self.path))
            if server_state.fail:
                return self.reply(server_state.fail, {"message": "unavailable"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            results = []
            for query in body["queries"]:
                name, version = query["package"]["name"], query["version"]
                ids = sorted(i for i, r in records.items() if _affects(r, name, version))
                start = int(query.get("page_token") or 0)
                page = {"vulns": [{"id": i, "modified": records[i]["modified"]}
                                  for i in ids[start:start + 2]]}
                if start + 2 < len(ids):
                    page["next_page_token"] = str(start + 2)
                results.append(page if page["vulns"] else {})
            return self.reply(200, {"results": results})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


def test_online_through_osvs_query_api(vulnerable, osv_server):
    _, lock = vulnerable
    osv_server.requests.clear()
    result, payload = audit(lock, "--osv-url", osv_server.url)
    assert result.returncode == 1, result.stderr
    # The server lists every record it matches (a GHSA and its PYSEC twin alike): envlock
    # fetched each, followed the pages and merged the twins as offline.
    assert found(payload) == EXPECTED
    posts = [path for method, path in osv_server.requests if method == "POST"]
    assert posts == ["/v1/querybatch"] * 3  # urllib3's 5 records came in pages of two
    gets = sorted(path for method, path in osv_server.requests if method == "GET")
    assert len(gets) == len(set(gets)) == 8
    assert payload["result"]["sources"] == [{"source": osv_server.url, "kind": "online",
                                             "records": 8, "error": None}]


def test_an_api_that_fails_or_is_not_there_is_exit_2_naming_what_was_tried(vulnerable,
                                                                           osv_server):
    _, lock = vulnerable
    closed = f"http://127.0.0.1:{free_port()}"
    result, payload = audit(lock, "--osv-url", closed)
    assert result.returncode == 2
    assert f"no advisory source is reachable: tried {closed}" in result.stderr
    assert payload["error"]["type"] == "AdvisorySourceError"
    osv_server.fail = 503
    try:
        result, _ = audit(lock, "--osv-url", osv_server.url)
    finally:
        osv_server.fail = None
    assert result.returncode == 2
    assert f"{osv_server.url}/v1/querybatch answered HTTP 503" in result.stderr
    # One source reachable is enough: the unreachable one is named in a warning.
    result, payload = audit(lock, "--osv-url", closed, "--advisories", str(FIXTURES))
    assert result.returncode == 1 and found(payload) == EXPECTED
    assert f"advisory source unreachable: {closed}" in result.stderr


# ---------------------------------------------------------------- the gate on check
def test_check_audit_adds_one_case_per_package_and_fails_on_findings(vulnerable, tmp_path):
    python, lock = vulnerable
    junit = tmp_path / "check.xml"
    result = run_envlock("check", "--lock", str(lock), "--python", str(python), "--audit",
                         "--advisories", str(FIXTURES), "--junit", str(junit), "--json")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)["result"]
    assert payload["drifted"] is False and payload["audit"]["failed"] is True
    report = junit.read_text()
    assert 'name="package urllib3 1.26.4"' in report and "GHSA-q2q7-5pp4-w6pg" in report
    passing = run_envlock("check", "--lock", str(lock), "--python", str(python),
                          "--advisories", str(FIXTURES), "--audit-fail-on", "high",
                          "--audit-ignore", "GHSA-q2q7-5pp4-w6pg", "--audit-ignore",
                          "CVE-2023-43804")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "3 known vulnerabilities in 2 packages (3 medium); 0 fail (threshold: high or " \
           "worse); 2 ignored" in passing.stdout
