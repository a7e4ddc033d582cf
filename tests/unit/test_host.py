"""The host section (pure parsers over recorded /proc files and cgroup values), the
container-resource decisions, the CPU ISA pre-flight and the replay-host diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.cli.render import host_diff_text, host_line, lock_summary
from envlock.config import Config
from envlock.errors import UsageError
from envlock.model import compat, replayhost, resources
from envlock.model.diff import diff_locks
from envlock.model.replayspec import ContainerFlags
from envlock.operations import replayplan
from envlock.operations.replayplan import ReplayRequest
from envlock.snapshot import host
from tests.factories import make_lock

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded"
EPYC = (RECORDED / "proc-cpuinfo-epyc-zen4-vm.txt").read_text()
RPI5 = (RECORDED / "proc-cpuinfo-rpi5-aarch64.excerpt.txt").read_text()
MEMINFO = (RECORDED / "proc-meminfo-vm-24g.txt").read_text()
GIB = 1 << 30


def section(cores: int = 2, shm: int | None = 8 * GIB, isa: str = "x86-64-v4",
            flags: tuple[str, ...] = ("avx", "avx2", "avx512f", "fma")) -> dict:
    return {"cpu": {"model": "AMD EPYC", "vendor": "AuthenticAMD", "arch": "x86_64",
                    "logical_cores": cores, "usable_cores": cores, "isa_level": isa,
                    "flags": list(flags)},
            "memory": {"total_bytes": 24 * GIB, "limit_bytes": None},
            "shm": {"size_bytes": shm}}


# ------------------------------------------------------------------ parsing

def test_cpuinfo_of_a_recorded_x86_vm():
    cpu = host.parse_cpuinfo(EPYC)
    assert (cpu["model"], cpu["vendor"], cpu["processors"]) == ("AMD EPYC", "AuthenticAMD", 1)
    assert {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"} <= cpu["flags"]
    assert host.isa_level("x86_64", cpu["flags"]) == "x86-64-v4"


def test_cpuinfo_of_a_recorded_raspberry_pi_5():
    cpu = host.parse_cpuinfo(RPI5)
    assert cpu["vendor"] == "ARM" and cpu["model"] == "ARM part 0xd0b"
    assert cpu["physical_cores"] is None  # aarch64 has no core id lines
    assert host.isa_level("aarch64", cpu["flags"]) == "aarch64"
    assert host.isa_level("aarch64", cpu["flags"] | {"sve", "sve2"}) == "aarch64+sve2"


@pytest.mark.parametrize("drop, level", [
    ((), "x86-64-v4"), (("avx512vl",), "x86-64-v3"), (("avx2",), "x86-64-v2"),
    (("sse4_2",), "x86-64-v1"),
])
def test_isa_levels_need_every_flag_of_their_level(drop, level):
    flags = host.parse_cpuinfo(EPYC)["flags"] - set(drop)
    assert host.isa_level("x86_64", flags) == level
    assert host.isa_level("x86_64", flags | {"amx_tile"}) == level + "+amx"


def test_host_section_from_recorded_files():
    found = host.host_section(EPYC + "\n" + EPYC.replace(": 0", ": 1", 1), MEMINFO,
                              arch="x86_64", affinity=2, cpu_quota=None, memory_limit=None,
                              shm_bytes=25276502016)
    assert found["cpu"]["logical_cores"] == 2 and found["cpu"]["usable_cores"] == 2
    assert found["cpu"]["physical_cores"] == 1  # both blocks say core id 0 (the copy)
    assert found["cpu"]["flags"] == sorted(found["cpu"]["flags"])
    assert "avx512_bf16" in found["cpu"]["flags"] and "sse" not in found["cpu"]["flags"]
    assert found["memory"] == {"total_bytes": 24684084 * 1024, "limit_bytes": None}
    assert found["shm"] == {"size_bytes": 25276502016}


@pytest.mark.parametrize("args, quota", [
    ({"cpu_max": "max 100000\n"}, None), ({"cpu_max": "150000 100000\n"}, 1.5),
    ({"quota_us": "-1\n", "period_us": "100000\n"}, None),  # v1, recorded on this VM
    ({"quota_us": "400000", "period_us": "100000"}, 4.0), ({}, None),
])
def test_cgroup_cpu_quota_v1_and_v2(args, quota):
    assert host.parse_cpu_quota(**args) == quota


def test_cgroup_memory_limit_and_usable_cores():
    assert host.parse_memory_limit("9223372036854771712\n") is None  # v1 "no limit"
    assert host.parse_memory_limit("max\n") is None
    assert host.parse_memory_limit("17179869184\n") == 16 * GIB
    assert host.usable_cores(8, 1.5) == 2 and host.usable_cores(2, 4.0) == 2
    assert host.usable_cores(8, None) == 8


def test_probe_reads_this_machine():
    found = host.probe_host()
    assert found["cpu"]["usable_cores"] >= 1 and found["memory"]["total_bytes"] > 0
    assert found["cpu"]["isa_level"]


# ------------------------------------------------------------------ sizes and decisions

@pytest.mark.parametrize("text, size", [
    ("64m", 64 << 20), ("2g", 2 * GIB), ("1.5GiB", 3 * GIB // 2), ("268435456", 256 << 20),
    ("512MB", 512 << 20), ("1k", 1024),
])
def test_parse_size(text, size):
    assert resources.parse_size(text, "--shm-size") == size


@pytest.mark.parametrize("text", ["", "lots", "-1g", "0", "2x", "g"])
def test_bad_sizes_say_what_to_write(text):
    with pytest.raises(UsageError, match="--memory") as err:
        resources.parse_size(text, "--memory")
    assert "2g" in (err.value.hint or "")


@pytest.mark.parametrize("text", ["0", "-2", "four", "inf", "nan"])
def test_bad_cpus(text):
    with pytest.raises(UsageError, match="--cpus"):
        resources.parse_cpus(text)


def test_shm_comes_from_the_lock_else_this_host_else_the_flag():
    assert resources.decide(section(shm=8 * GIB), section(shm=GIB)).shm_size == 8 * GIB
    assert resources.decide(None, section(shm=GIB)).shm_size == GIB  # schema-1 lock
    assert resources.decide(section(shm=None), None).shm_size is None
    given = resources.decide(section(shm=8 * GIB), section(), shm_size=64 << 20)
    assert given.shm_size == 64 << 20 and "--shm-size" in given.notes[0]


def test_cpu_and_memory_limits():
    given = resources.decide(section(cores=4), section(cores=4), cpus=1.5, memory=16 * GIB)
    assert (given.nano_cpus, given.mem_limit, given.cpus) == (1_500_000_000, 16 * GIB, 1.5)
    assert given.to_dict()["mem_limit"] == 16 * GIB
    unset = resources.decide(section(), section())
    assert (unset.nano_cpus, unset.mem_limit) == (None, None)


def test_threads_follow_the_original_only_when_the_cpu_count_differs():
    assert resources.decide(section(cores=2), section(cores=2)).env == {}
    more = resources.decide(section(cores=2), section(cores=16))
    assert more.env["OMP_NUM_THREADS"] == "2" and set(more.env) == set(resources.THREAD_VARS)
    assert any("16 CPU(s) here, 2 on the original" in n for n in more.notes)
    flag = resources.decide(section(cores=8), section(cores=8), cpus=4)
    assert flag.env["MKL_NUM_THREADS"] == "8"  # --cpus is the replay's CPU count
    assert resources.decide(section(cores=8), section(cores=2), cpus=8).env == {}
    assert resources.decide(None, section(cores=2)).env == {}  # original unknown


def test_threads_never_override_the_recorded_or_given_env():
    given = resources.decide(section(cores=2), section(cores=16),
                             recorded_env={"OMP_NUM_THREADS": "1"},
                             given_env={"MKL_NUM_THREADS": "3"})
    assert "OMP_NUM_THREADS" not in given.env and "MKL_NUM_THREADS" not in given.env
    assert given.env["OPENBLAS_NUM_THREADS"] == "2"
    assert any("kept as recorded/given" in n for n in given.notes)


# ------------------------------------------------------------------ pre-flight

def test_cpu_isa_preflight_warns_never_refuses():
    assert compat.cpu_warnings(section(), section()) == ()
    assert compat.cpu_warnings(None, section()) == ()
    older = compat.cpu_warnings(section(), section(isa="x86-64-v3", flags=("avx", "avx2",
                                                                           "fma")))
    assert len(older) == 2 and "x86-64-v4 originally, x86-64-v3 here" in older[0]
    assert "lacks avx512f" in older[1]
    newer = compat.cpu_warnings(section(flags=("avx",)), section(flags=("avx", "amx_tile")))
    assert newer and "amx_tile" in newer[0]
    arm = dict(section(), cpu={**section()["cpu"], "arch": "aarch64"})
    assert "architecture differs" in compat.cpu_warnings(section(), arm)[0]


# ------------------------------------------------------------------ lock diff and show

def test_lock_diff_shows_host_but_it_is_not_drift():
    old, new = make_lock(host=section(cores=2)), make_lock(host=section(cores=16))
    found = diff_locks(old, new)
    assert [(c.category, c.field) for c in found.changes] == [("host", "cpu.usable_cores")]
    assert not found.env_changed
    assert diff_locks(make_lock(host=None), new).identical  # unknown is not a difference


def test_show_prints_the_host():
    text = lock_summary(make_lock(host=section()), "lock")
    assert "Host:" in text and "AMD EPYC (x86_64, x86-64-v4; avx2, avx512f)" in text
    assert "2/2 cores usable; memory 24 GiB; /dev/shm 8 GiB" in text
    assert host_line(None) == "unknown (not recorded)"


# ------------------------------------------------------------------ the replay host

def snap(**overrides: object) -> dict:
    lock = make_lock(host=section())
    fields: dict = {"host": section(), "gpu": lock.gpu,
                    "os_info": {k: lock.os[k] for k in ("system", "distro", "distro_version",
                                                        "kernel", "arch")},
                    "engine": {"engine": "docker", "version": "20.10.24"},
                    "resources": resources.decide(section(), section()).to_dict()}
    fields.update(overrides)
    return replayhost.snapshot(**fields)


def test_replay_host_tags():
    tags = replayhost.tags(snap())
    assert tags == {"envlock.replay_host.cpu": "AMD EPYC",
                    "envlock.replay_host.isa_level": "x86-64-v4",
                    "envlock.replay_host.cores": "2",
                    "envlock.replay_host.gpu": "1x NVIDIA A100-SXM4-80GB",
                    "envlock.replay_host.driver": "535.104.05",
                    "envlock.replay_host.os": "debian 12",
                    "envlock.replay_host.engine": "docker 20.10.24",
                    "envlock.replay_host.shm_size": str(8 * GIB)}
    bare = replayhost.tags(snap(gpu={"driver_version": None, "devices": []}, engine=None))
    assert bare["envlock.replay_host.gpu"] == "none"
    assert bare["envlock.replay_host.driver"] == "-" and bare["envlock.replay_host.engine"] == "-"


def test_host_diff_against_the_original_lock():
    lock = make_lock(host=section())
    same = replayhost.host_diff(lock, snap(), original_run_id="a", replay_run_id="b",
                                replay_tags={"envlock.verdict": "reproduced",
                                             "envlock.replay_of": "a"})
    assert same.identical and same.to_dict()["verdict"] == "reproduced"
    h100 = {"driver_version": "565.57.01", "cuda_driver_version": "12.7",
            "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                         "compute_capability": "9.0", "memory_mib": 81559}]}
    other = snap(host=section(cores=8, isa="x86-64-v3"), gpu=h100,
                 os_info={"system": "Linux", "distro": "ubuntu", "distro_version": "22.04",
                          "kernel": "5.15.0", "arch": "x86_64"})
    found = replayhost.host_diff(lock, other, original_run_id="a", replay_run_id="b",
                                 replay_tags={"envlock.verdict": "not reproduced"})
    fields = {(c.category, c.field) for c in found.changes}
    assert {("host", "cpu.isa_level"), ("host", "cpu.usable_cores"), ("gpu", "driver_version"),
            ("gpu", "devices"), ("os", "distro"), ("os", "kernel")} <= fields
    assert ("host", "shm.size_bytes") not in fields
    text = host_diff_text(found)
    assert "verdict: NOT REPRODUCED" in text and "host.cpu.isa_level" in text
    assert "x86-64-v4 → x86-64-v3" in text and "replay engine: docker 20.10.24" in text


def test_an_unknown_side_is_not_a_difference():
    found = replayhost.host_changes(make_lock(host=None), snap(gpu=None))
    assert found == ()


# ------------------------------------------------------------------ replay orchestration

class FakeEngine:
    """Records what the replay asks of the engine (the real one is in the integration test)."""

    def __init__(self, events: list) -> None:
        self.events = events

    def image(self, reference):
        from envlock.adapters.engine import ImageInfo

        return ImageInfo(id="sha256:" + "1" * 64, labels={}, repo_digests=(reference,), size=1)

    def version(self):
        return {"engine": "docker", "version": "20.10.24"}

    def run_experiment(self, args, **kwargs):
        self.events.append(("run", args))
        return 0


class FakeTracker:
    uri = "sqlite:///mlflow.db"

    def __init__(self, lock, events: list) -> None:
        self.lock, self.events, self.tags = lock, events, {}

    def run(self, run_id):
        from envlock.adapters.tracking import RunData

        return RunData(run_id=run_id, experiment_id="0", status="FINISHED", name="orig",
                       tags={"envlock.image": "reg/x@sha256:" + "1" * 64,
                             "envlock.lock_digest": self.lock.lock_digest})

    def download(self, run_id, name, dest):
        from envlock.model import lockfile

        return lockfile.write(self.lock, dest / name)

    def create_run(self, experiment_id, name, tags):
        return "replay1"

    def log_text(self, run_id, name, text):
        self.events.append(("artifact", name, text))

    def set_tags(self, run_id, tags):
        self.tags.update(tags)
        self.events.append(("tags", sorted(tags)))

    def finish(self, run_id, ok):
        self.events.append(("finish", ok))

    def copy_from_file_store(self, *args, **kwargs):
        raise Relayed  # what follows the container (relay, comparison) is not this test's

    relay_file_store = copy_from_file_store


class Relayed(Exception):
    pass


def test_replay_gives_the_container_the_decided_resources_after_recording_the_host():
    from envlock.operations.replay import replay

    events: list = []
    lock = make_lock(host=section(cores=2, shm=8 * GIB),
                     frameworks={}, gpu={"driver_version": None, "devices": []})
    notes: list = []
    tracker = FakeTracker(lock, events)
    request = ReplayRequest("orig", ContainerFlags(cpus="4", memory="2g",
                                                   env=("OPENBLAS_NUM_THREADS=1",)))
    spec, context = replayplan.local(request, tracker=tracker, config=Config(),
                                     host_gpu={"driver_version": None, "devices": []},
                                     host=section(cores=4, isa="x86-64-v3"),
                                     notify=lambda kind, text: notes.append((kind, text)))
    with pytest.raises(Relayed):
        replay(spec, engine=FakeEngine(events), tracker=tracker, context=context,
               output=lambda chunk: None)
    assert events[-1] == ("finish", False)  # never left RUNNING
    kinds = [e[0] for e in events]
    assert kinds.index("artifact") < kinds.index("run")  # recorded before the container runs
    assert events[kinds.index("artifact")][1] == "replay-host.yaml"
    run = events[kinds.index("run")][1]
    assert (run["shm_size"], run["nano_cpus"], run["mem_limit"]) == (8 * GIB, 4 * 10**9, 2 * GIB)
    env = run["environment"]
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert ("warning", "CPU ISA level differs (x86-64-v4 originally, x86-64-v3 here): math "
            "kernels and so numerics may change") in notes
    assert any(kind == "note" and "/dev/shm 8 GiB" in text for kind, text in notes)


def test_bad_resource_flags_fail_before_anything_happens():
    with pytest.raises(UsageError, match="--shm-size"):
        replayplan.local(ReplayRequest("orig", ContainerFlags(shm_size="huge")),
                         tracker=None, config=Config())  # type: ignore[arg-type]
