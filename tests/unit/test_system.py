from envlock.snapshot.system import container_kind, os_section, platform_tag, python_section

PY = {"implementation": "cpython", "version": "3.11.7", "executable": "/v/bin/python",
      "prefix": "/v", "venv": True, "soabi": "cpython-311-x86_64-linux-gnu",
      "machine": "x86_64", "libc": {"family": "glibc", "version": "2.36"},
      "path": ["", "/usr/lib/python311.zip", "/v/lib/python3.11/site-packages"]}


def test_platform_tag_from_glibc():
    assert platform_tag(PY) == "manylinux_2_36_x86_64"
    musl = {**PY, "libc": {"family": "musl", "version": None}, "machine": "aarch64"}
    assert platform_tag(musl) == "musllinux_aarch64"
    mac = {**PY, "libc": {"family": None}, "sysconfig_platform": "macosx-14.0-arm64"}
    assert platform_tag(mac) == "macosx_14_0_arm64"


def test_python_section_drops_the_script_directory():
    section = python_section(PY)
    assert section["sys_path"] == ["/usr/lib/python311.zip", "/v/lib/python3.11/site-packages"]
    assert section["venv"] is True and section["abi"] == "cpython-311-x86_64-linux-gnu"


def test_container_detection_order():
    assert container_kind({"dockerenv": True}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == \
        "kubernetes"
    assert container_kind({"containerenv": True}, {}) == "podman"
    assert container_kind({"cgroup": "0::/system.slice/containerd.service"}, {}) == "containerd"
    assert container_kind({"cgroup": "0::/"}, {}) is None


def test_os_section_reads_os_release():
    raw = {"system": "Linux", "kernel": "6.1.0", "hostname": "h",
           "os_release": {"ID": "ubuntu", "VERSION_ID": "22.04", "PRETTY_NAME": "Ubuntu 22.04"}}
    section = os_section(raw, PY, {})
    assert (section["distro"], section["distro_version"]) == ("ubuntu", "22.04")
    assert section["libc"] == {"family": "glibc", "version": "2.36"}
