"""The OS package databases of an image, parsed from real dpkg output (see
tests/fixtures/ospkgs/PROVENANCE.md)."""

from pathlib import Path

from envlock.model import ospkgs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ospkgs"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_dpkg_status_lists_installed_packages_with_source_arch_and_epoch():
    found = {p.name: p for p in ospkgs.parse_dpkg(fixture("dpkg-status-bookworm.excerpt").decode())}
    assert set(found) == {"bash", "libc6", "zlib1g", "hello"}  # netbase: config-files only
    assert (found["bash"].version, found["bash"].source, found["bash"].source_version) == \
        ("5.2.15-2+b8", "bash", "5.2.15-2")
    assert (found["libc6"].arch, found["libc6"].source, found["libc6"].source_version) == \
        ("amd64", "glibc", None)
    assert found["zlib1g"].version == "1:1.2.13.dfsg-1" and found["hello"].source is None
    assert {p.manager for p in found.values()} == {"dpkg"}


def test_a_distroless_status_d_entry_has_no_status_and_counts_as_installed():
    (tzdata,) = ospkgs.parse_dpkg(fixture("dpkg-status.d-tzdata").decode())
    assert (tzdata.name, tzdata.version, tzdata.arch) == ("tzdata", "2026f-0+deb12u1", "all")


def test_apk_installed_lists_name_version_arch_origin_and_license():
    found = {p.name: p for p in ospkgs.parse_apk(fixture("apk-installed").decode())}
    assert set(found) == {"musl", "busybox", "ssl_client"}
    assert (found["musl"].version, found["musl"].arch, found["musl"].license) == \
        ("1.2.4_git20230717-r4", "x86_64", "MIT")
    assert found["ssl_client"].source == "busybox" and found["busybox"].manager == "apk"


def test_os_release_names_the_distribution():
    release = ospkgs.parse_os_release(fixture("os-release-bookworm").decode())
    assert (release.id, release.version_id, release.distro) == ("debian", "12", "debian-12")
    assert release.pretty_name == "Debian GNU/Linux 12 (bookworm)"
    assert ospkgs.OsRelease(id="alpine", version_id=None).distro == "alpine"


def test_inventory_reads_every_database_once_sorted_and_skips_md5sums():
    files = {ospkgs.DPKG_STATUS: fixture("dpkg-status-bookworm.excerpt"),
             ospkgs.DPKG_STATUS_D + "tzdata": fixture("dpkg-status.d-tzdata"),
             ospkgs.DPKG_STATUS_D + "tzdata.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  x\n",
             ospkgs.DPKG_STATUS_D + "bash": fixture("dpkg-status-bookworm.excerpt"),
             "etc/os-release": b"",  # a symlink the reader could not follow
             "usr/lib/os-release": fixture("os-release-bookworm")}
    found = ospkgs.inventory(files)
    names = [p.name for p in found.packages]
    assert names == sorted(names) and names.count("bash") == 1 and "tzdata" in names
    assert found.release and found.release.id == "debian"
    assert found.databases == (ospkgs.DPKG_STATUS, ospkgs.DPKG_STATUS_D + "bash",
                               ospkgs.DPKG_STATUS_D + "tzdata")
    assert ospkgs.OsInventory.from_dict(found.to_dict()) == found


def test_an_image_without_a_package_database_has_an_empty_inventory():
    found = ospkgs.inventory({"etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    assert found.packages == () and found.databases == () and found.release is None
