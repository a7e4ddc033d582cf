"""Every name envlock writes into a tracking store or an image: MLflow tags, artifacts, labels.

These names are an interface: scripts, dashboards and older envlock releases read them from
runs captured months ago, so they never change once released. Code refers to them only through
this module (``tests/unit/test_runrecord.py`` fails on an ``"envlock.…"`` tag spelled out
anywhere else), and docs/lineage.md lists them for users.
"""

from __future__ import annotations

# ---- on a captured run (capture, import) --------------------------------------------------
ENV_DIGEST = "envlock.env_digest"  # the environment's digest: same env, same layer
LOCK_DIGEST = "envlock.lock_digest"  # the whole lock's digest
PYTHON = "envlock.python"  # the run's Python version
TORCH = "envlock.torch"  # PyTorch version with its build (+cu121), or "none"
CUDA = "envlock.cuda"  # CUDA runtime PyTorch was built for, or "none"
DRIVER = "envlock.driver"  # the GPU driver that ran it, or "none"
GIT_COMMIT = "envlock.git_commit"  # the commit the run's code was at, or "none"
CODE_KIND = "envlock.code_kind"  # git, directory or none
DIRTY = "envlock.dirty"  # "true" when the tree had uncommitted or untracked changes
COMMAND = "envlock.command"  # the recorded command line
VERSION = "envlock.version"  # the envlock release that captured it
TRACKING_BACKEND = "envlock.tracking_backend"  # local store or server (model/backend.py)
INPUTS = "envlock.inputs"  # the copied inputs' OCI artifact, pinned by digest
INPUTS_PINNED = "envlock.inputs_pinned"  # "N (c copy, r reference)"
INPUTS_READ = "envlock.inputs_read"  # how many files the run read under envlock.autolog()
BASE_IMAGE = "envlock.base_image"  # the base, pinned by digest
ENV_IMAGE_ID = "envlock.env_image_id"  # the shared environment image
IMAGE = "envlock.image"  # the run's image by digest: set only once it exists in the registry
SBOM = "envlock.sbom"  # the SBOM's OCI referrer
AUTOLOG_COMMAND = "envlock.autolog.command"  # the command envlock.autolog() saw
IMPORTED_FROM = "envlock.imported_from"  # the run id an `envlock import` copied
IMPORTED_FROM_URI = "envlock.imported_from_uri"  # ... and the store it came from
ARCHIVE_SHA256 = "envlock.archive_sha256"  # the imported archive's sha256
IMPORTED_PREFIX = "envlock.imported_"  # every tag of an import's own (never copied again)

# ---- on a replay run ----------------------------------------------------------------------
REPLAY_OF = "envlock.replay_of"  # the original run's id
REPLAY_ROOT = "envlock.replay_root"  # a relayed child's replay run
REPLAYED_ON = "envlock.replayed_on"  # kubernetes or slurm (a local replay has none)
VERDICT = "envlock.verdict"  # REPRODUCED / NOT REPRODUCED with the differences
EXIT_CODE = "envlock.exit_code"  # the experiment's exit code in the replay
FAILURE = "envlock.failure"  # why a replay failed around the experiment
EXPLANATION = "envlock.explanation"  # the most likely explanation, in one line
INPUTS_CHANGED = "envlock.inputs_changed"  # inputs replayed with --allow-changed-inputs
REPLAY_RUNS = "envlock.replay_runs"  # how many runs the replay logged (parent + children)
RELAY = "envlock.relay"  # what was relayed from the replay's private store
REPEAT = "envlock.repeat"  # the --repeat classification
REPEAT_REPLAYS = "envlock.repeat.replays"  # the repeated replays' run ids
REPLAY_HOST_PREFIX = "envlock.replay_host."  # cpu, gpu, ... of the replaying host
KUBERNETES_JOB = "envlock.kubernetes.job"  # NAMESPACE/NAME of the replay's Job
INPUTS_IMAGE = "envlock.inputs_image"  # a Job's inputs image (the run's + its inputs' layer)
SLURM_PREFIX = "envlock.slurm."  # job_id, task, node, partition, exit_reason

# ---- artifacts, under ARTIFACT_DIR/ on the run ----------------------------------------------
ARTIFACT_DIR = "envlock"  # the directory every artifact below lives in
LOCK_ARTIFACT = "envlock.lock.yaml"  # the lock (with Dockerfile, git.diff, untracked.txt)
SBOM_ARTIFACT = "sbom.cdx.json"  # the image's CycloneDX SBOM
REPLAY_HOST_ARTIFACT = "replay-host.yaml"  # the replaying host's snapshot
REPORT_ARTIFACT = "report.html"  # `envlock report`'s page
REPEAT_ARTIFACT = "repeat.json"  # every replay of a --repeat, per metric
INPUTS_READ_ARTIFACT = "inputs-read.json"  # the files a run read and wrote (envlock.autolog())
REPLAY_GIVEN_ARTIFACT = "replay-given.json"  # a Job's --command and --env, for its later verdict

# ---- labels on envlock's images ------------------------------------------------------
# (and the tags of the same names: version, env_digest, python, lock_digest, git_commit, dirty)
LABEL_VERSION = VERSION
LABEL_ENV_DIGEST = ENV_DIGEST
LABEL_PYTHON = PYTHON
LABEL_BYTECODE = "envlock.bytecode"  # cpython-X.Y.Z, or none when .pyc are left out
LABEL_LOCK_DIGEST = LOCK_DIGEST
LABEL_RUN_ID = "envlock.run_id"  # the run a code image was built for
LABEL_CODE_DIGEST = "envlock.code_digest"  # the code layer's digest
LABEL_GIT_COMMIT = GIT_COMMIT
LABEL_DIRTY = DIRTY
LABEL_STAGING = "envlock.staging"  # a container envlock created and removes

# ---- labels and annotations on Kubernetes objects ----------------------------------------
KUBE_PREFIX = "envlock.dev"  # /run-id, /replay-run-id, /image, /command, /registry, /inputs-image
