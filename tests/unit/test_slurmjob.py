"""The Slurm batch script rendered from ReplaySpec, and Slurm's states mapped (issue #26)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from envlock.errors import UsageError
from envlock.model.replayspec import GpuRequest, Mount, ReplaySpec
from envlock.model.slurmjob import (
    SlurmJob,
    SlurmSettings,
    Task,
    batch_script,
    charliecloud_argv,
    is_insecure,
    job_state,
    min_driver,
    outcome,
    parse_scontrol,
    parse_settings,
    podman_argv,
    sbatch_options,
)

IMAGE = "127.0.0.1:5000/runs/exp@sha256:" + "a" * 64
EVIL = "python train.py --name 'x'; rm -rf / $(reboot) `id`"


def spec(**changes) -> ReplaySpec:
    return ReplaySpec(**{"run_id": "r1", "image": IMAGE, "command": EVIL,
                         "env": {"A": "b c $HOME"}, **changes})


def job(*specs: ReplaySpec, **settings) -> SlurmJob:
    return SlurmJob(tuple(Task(s, f"/shared/jobs/job-1/{i}") for i, s in enumerate(specs)),
                    parse_settings(settings), "/shared/jobs/job-1", concurrency=2)


def arrays(script: str, name: str) -> list[list[str]]:
    """Each task's NAME=(…) bash array, as bash itself splits it."""
    return [shlex.split(line.strip()[len(name) + 2:-1]) for line in script.splitlines()
            if line.strip().startswith(f"{name}=(")]


def test_the_script_is_valid_bash_and_user_strings_reach_podman_verbatim():
    script = batch_script(job(spec()))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    run = arrays(script, "RUN")[0]
    assert run[-3:] == ["/bin/sh", "-c", EVIL]  # one argument, unexpanded
    assert "--env=A=b c $HOME" in run
    assert run[run.index(IMAGE) - 1].startswith("--env=")


def test_podman_gets_the_same_hardening_resources_and_network_as_docker():
    pull, run = podman_argv(spec(cpus=1.5, memory=1 << 30, shm_size=1 << 28, timeout=30,
                                 mounts=(Mount("/data", "/in", True),)),
                            "/shared/t", SlurmSettings())
    for flag in ("--user=1000:1000", "--workdir=/workspace", "--cap-drop=ALL", "--read-only",
                 "--security-opt=no-new-privileges", "--tmpfs=/tmp:rw,nosuid,nodev,size=2g",
                 "--network=none", "--hostname=envlock-replay",
                 "--add-host=envlock-replay:127.0.0.1", "--cpus=1.5",
                 "--memory=1073741824b", "--shm-size=268435456b", "--timeout=30",
                 "--volume=/data:/in:ro", "--volume=/shared/t/mlruns:/envlock/mlruns",
                 "--env=MLFLOW_TRACKING_URI=file:///envlock/mlruns/store", "--pull=never"):
        assert flag in run
    assert pull == ["podman", "pull", "--quiet", "--tls-verify=false", IMAGE]


def test_tls_is_skipped_only_for_loopback_and_marked_registries():
    plain = SlurmSettings(insecure_registries=("reg.lab:5000",))
    assert is_insecure(IMAGE, SlurmSettings()) and is_insecure("localhost:5000/a@x", plain)
    assert is_insecure("reg.lab:5000/a@sha256:1", plain)
    assert not is_insecure("ghcr.io/acme/a@sha256:1", plain)
    assert not is_insecure("10.0.0.5:5000/a@sha256:1", plain)
    pull, _ = podman_argv(spec(image="ghcr.io/acme/a@sha256:" + "b" * 64), "/t", plain)
    assert "--tls-verify=false" not in pull


def test_sbatch_options_from_the_settings_and_the_spec():
    options = sbatch_options(job(spec(cpus=1.5, memory=3 << 30, timeout=90,
                                      gpus=GpuRequest(count=2)), spec(timeout=30),
                                 partition="gpu", account="lab", **{"sbatch-options":
                                                                    ["--qos=high"]}))
    assert options[:3] == ["--job-name=envlock-replay",
                           "--output=/shared/jobs/job-1/slurm-%j.out", "--no-requeue"]
    for option in ("--partition=gpu", "--account=lab", "--time=12", "--cpus-per-task=2",
                   "--mem=3072M", "--gres=gpu:2", "--array=0-1%2", "--qos=high"):
        assert option in options
    gpus = sbatch_options(job(spec(gpus=GpuRequest(count=1)), gpu_option="gpus"))
    assert "--gpus=1" in gpus and not any(o.startswith("--array") for o in gpus)
    limited = sbatch_options(job(spec(timeout=90), time_limit="2:00:00"))
    assert "--time=2:00:00" in limited


@pytest.mark.parametrize("settings, message", [
    ({"partition": "gpu\n#SBATCH --uid=0"}, "is not a Slurm name"),
    ({"account": "a b"}, "is not a Slurm name"),
    ({"time_limit": "forever"}, "is not a Slurm time"),
    ({"runtime": "docker"}, "is not known"),
    ({"sbatch_options": ["--x=1;rm"]}, "is not understood"),
    ({"sbatch_options": ["--array=0-9"]}, "one envlock sets itself"),
    ({"colour": "red"}, "unknown Slurm setting"),
])
def test_what_cannot_be_an_sbatch_option_is_refused(settings, message):
    with pytest.raises(UsageError, match=message):
        parse_settings(settings)


def test_gpus_are_a_count_and_the_driver_preflight_runs_in_the_job():
    script = batch_script(SlurmJob((Task(spec(gpus=GpuRequest(count=1)), "/s/0", "525.60.13"),),
                                   SlurmSettings(), "/s"))
    assert "GPUS=1" in script and "MIN_DRIVER=525.60.13" in script
    assert "nvidia-smi --query-gpu=driver_version" in script
    assert "--device=nvidia.com/gpu=all" in arrays(script, "RUN")[0]
    with pytest.raises(UsageError, match="does not work with --on slurm"):
        batch_script(job(spec(gpus=GpuRequest(count=-1))))
    assert min_driver({"frameworks": {"torch": {"cuda": "12.1"}}}) is not None
    assert min_driver({"frameworks": {}}) is None


def test_charliecloud_pulls_and_runs_with_only_the_specs_environment():
    script = batch_script(job(spec(network="none"), runtime="charliecloud"))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    pull, run = arrays(script, "PULL")[0], arrays(script, "RUN")[0]
    # --tls-no-verify is ch-image's global option, and requests lets REQUESTS_CA_BUNDLE
    # override it: both are dropped only for the loopback registry
    assert pull == ["env", "-u", "REQUESTS_CA_BUNDLE", "-u", "CURL_CA_BUNDLE", "ch-image",
                    "--no-cache", "--tls-no-verify", "pull", IMAGE, "envlock-" + "a" * 16]
    assert run[:4] == ["unshare", "--user", "--map-current-user", "--net"]  # --network none
    ch_run = run[run.index("ch-run"):]
    assert ch_run[1:7] == ["--uid=1000", "--gid=1000", "--private-tmp", "--unset-env=*",
                           "--set-env", "--env-no-expand"]
    assert "--bind=/shared/jobs/job-1/0/work:/workspace" in ch_run
    assert "--set-env=A=b c $HOME" in ch_run  # literal, as with Podman
    assert run[-4:] == ["--", "/bin/sh", "-c", EVIL]
    assert "CH_NAME=envlock-" + "a" * 16 in script and "WORKDIR=/workspace" in script
    assert arrays(script, "POINTS") == [["/envlock/mlruns"]]  # made in the storage copy
    with pytest.raises(UsageError, match="Charliecloud"):
        batch_script(job(spec(network="bridge"), runtime="charliecloud"))


def test_charliecloud_keeps_tls_checks_timeout_and_the_host_network_as_asked():
    remote = "registry.lab:5000/runs/exp@sha256:" + "b" * 64
    pull, run = charliecloud_argv(spec(image=remote, network="host", timeout=90, user=4242),
                                  "/shared/t", SlurmSettings())
    assert pull == ["ch-image", "--no-cache", "pull", remote, "envlock-" + "b" * 16]
    assert run[:4] == ["timeout", "--kill-after=10", "90", "ch-run"]  # no unshare: host
    assert "--uid=4242" in run and "--gid=4242" in run
    listed = charliecloud_argv(spec(image=remote), "/t",
                               SlurmSettings(insecure_registries=("registry.lab:5000",)))[0]
    assert "--tls-no-verify" in listed
    with pytest.raises(UsageError, match="read-write only"):  # ch-run has no read-only bind
        charliecloud_argv(spec(inputs=(Mount("/blobs/1", "/workspace/data.csv", True),)),
                          "/t", SlurmSettings())
    rw = charliecloud_argv(spec(mounts=(Mount("/scratch", "/workspace/out"),)), "/t",
                           SlurmSettings())[1]
    assert "--bind=/scratch:/workspace/out" in rw


def test_podman_mounts_the_runs_pinned_inputs_read_only_after_the_workspace():
    run = podman_argv(spec(inputs=(Mount("/blobs/2", "/workspace/b.csv", True),
                                   Mount("/blobs/1", "/workspace/a.csv", True))),
                      "/t", SlurmSettings())[1]
    volumes = [a for a in run if a.startswith("--volume=")]
    assert volumes[0] == "--volume=/workspace"
    assert volumes[-2:] == ["--volume=/blobs/1:/workspace/a.csv:ro",
                            "--volume=/blobs/2:/workspace/b.csv:ro"]


def test_a_job_folder_sbatch_cannot_read_is_refused():
    with pytest.raises(UsageError, match="absolute path"):
        batch_script(SlurmJob((Task(spec(), "/a b/0"),), SlurmSettings(), "/a b"))


@pytest.mark.parametrize("state, status, kind, code", [
    (("COMPLETED", "None", "0:0"), "exit 0", "exit", 0),
    (("FAILED", "NonZeroExitCode", "3:0"), "exit 3", "exit", 3),
    (("TIMEOUT", "TimeLimit", "0:15"), None, "cluster failure", None),
    (("PREEMPTED", "", "0:15"), "exit 143", "cluster failure", None),
    (("NODE_FAIL", "", ""), None, "cluster failure", None),
    (("FAILED", "", "124:0"), "timeout", "timeout", 124),
    (("FAILED", "", "3:0"), "pull-failed: manifest unknown", "pull failed", None),
    (("FAILED", "", "3:0"), "preflight-failed: driver too old", "preflight failed", None),
    (("CANCELLED by 0", "", "0:15"), "cancelled", "cancelled", None),
    (("OUT_OF_MEMORY", "", "0:125"), None, "out of memory", None),
])
def test_slurm_states_and_the_status_line_map_to_an_outcome(state, status, kind, code):
    found = outcome(job_state(*state), status)
    assert (found.kind, found.exit_code) == (kind, code)
    assert found.retryable == (kind in ("cluster failure", "timeout"))


def test_job_states_from_sacct_and_scontrol_rows():
    assert job_state("CANCELLED by 1000").state == "CANCELLED"
    assert job_state("PENDING", "Priority").phase == "pending"
    assert job_state("RUNNING").phase == "running"
    assert job_state("TIMEOUT").reason_text == "time limit"
    assert job_state("FAILED", exit_code="0:9").exit_code == 137
    row = parse_scontrol("JobId=7 ArrayJobId=7 ArrayTaskId=0-3%2 JobState=PENDING "
                         "Reason=JobArrayTaskLimit Dependency=(null) ExitCode=0:0 "
                         "NodeList=(null) Partition=debug Command=/a b/job.sbatch")
    assert row["ArrayTaskId"] == "0-3%2" and row["Reason"] == "JobArrayTaskLimit"
    assert row["Partition"] == "debug" and row["Command"] == "/a b/job.sbatch"


def test_a_charliecloud_task_pulls_an_image_once_and_runs_on_a_copy_of_its_workspace(tmp_path):
    """The script itself, with stand-ins for ch-image, ch-run and unshare on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    stubs = {
        "ch-image": 'echo pull >>"$LOG"; img="$CH_IMAGE_STORAGE/img/${@: -1}"\n'
                    'mkdir -p "$img/workspace" && echo code >"$img/workspace/train.py"',
        "unshare": 'while [ "$1" != ch-run ]; do shift; done; exec "$@"',
        "ch-run": 'echo "run $*" >>"$LOG"; echo trained',
    }
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    script = tmp_path / "job.sh"
    task = tmp_path / "task"
    mounts = (Mount("/scratch", "/workspace/out"), Mount("/scratch", "/data"))
    script.write_text(batch_script(SlurmJob((Task(spec(mounts=mounts), str(task)),),
                                            SlurmSettings(runtime="charliecloud"), "/jobs")))
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "USER": "u",
           "CH_IMAGE_STORAGE": str(tmp_path / "ch"), "SLURM_JOB_ID": "7"}
    for _ in range(2):
        subprocess.run(["bash", str(script)], env=env, check=True, timeout=60)
    calls = (tmp_path / "log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["pull", "run", "run"]  # pulled once
    assert (task / "status").read_text() == "exit 0\n" and "trained" in (
        task / "output.log").read_text()
    assert (task / "work" / "train.py").read_text() == "code\n"  # the writable copy
    image = tmp_path / "ch" / "img" / ("envlock-" + "a" * 16)
    # the mount points: in the workspace's copy, or in the storage's copy of the image
    assert (image / "envlock" / "mlruns").is_dir() and (image / "data").is_dir()
    assert (task / "work" / "out").is_dir() and not (image / "workspace" / "out").exists()
