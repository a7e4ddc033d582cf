#!/usr/bin/env bash
# The main job, on the embedded defaults: train the minimal example (MLflow's SQLite store),
# capture its environment into an image, replay it, verify it and check the venv as CI gates
# would, and show the lineage with every verdict.
# A registry is used only when ENVLOCK_REGISTRY is set; otherwise the image stays local.
# Usage: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
bash scripts/bootstrap.sh
infra_env=$(bash scripts/infra.sh up)          # Docker engine + a local Python base image
eval "$infra_env"                              # (apart, so a failing infra.sh stops us)
if [ -z "${ENVLOCK_TEST_BASE_IMAGE:-}" ]; then
  # Run again under registries on free ports (tests/registry.py): the base image pushed
  # there gets its digest (ENVLOCK_TEST_BASE_IMAGE); they stop when the script ends.
  exec .venv/bin/python -m tests.registry -- bash "$repo_root/scripts/quickstart.sh" "$@"
fi
envlock="$repo_root/.venv/bin/envlock"
export ENVLOCK_BASE_IMAGE="${ENVLOCK_BASE_IMAGE:-$ENVLOCK_TEST_BASE_IMAGE}"
system_python="${QUICKSTART_PYTHON:-/usr/bin/python3}"   # same Python as the base image

work="${ENVLOCK_QUICKSTART_DIR:-$(mktemp -d)/experiment}"
echo "== setting up the experiment in $work =="
mkdir -p "$work" && cd "$work"
cp "$repo_root/examples/minimal/train.py" .
printf 'mlflow.db\n.envlock/\n.venv/\nreports/\n' > .gitignore
if [ ! -d .git ]; then
  git init -q -b main && git add -A
  git -c user.name=quickstart -c user.email=quickstart@example.invalid commit -qm "experiment"
fi
[ -x .venv/bin/python ] || "$system_python" -m venv .venv
# The MLflow envlock reads the store with: a store written by a newer MLflow has a schema an
# older client refuses to open (the index can hold a mlflow-skinny newer than the mlflow
# whose dependencies it has).
mlflow_version=$("$repo_root/.venv/bin/python" -c \
  'import importlib.metadata as m; print(m.version("mlflow-skinny"))')
.venv/bin/python -m pip install -q --disable-pip-version-check "mlflow-skinny==$mlflow_version" \
  sqlalchemy alembic
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"

echo "== 1. train (logs to MLflow) =="
.venv/bin/python train.py

echo "== 2. envlock capture =="
push_args=(--no-push)
[ -n "${ENVLOCK_REGISTRY:-}" ] && push_args=()
"$envlock" capture --python .venv/bin/python --command "python train.py" "${push_args[@]}"
run_id=$(.venv/bin/python -c "from mlflow.tracking import MlflowClient as C; \
print(C().search_runs(['0'], max_results=1, order_by=['attributes.start_time DESC'])[0].info.run_id)" \
  2>/dev/null)

echo "== 3. envlock replay $run_id =="
"$envlock" replay "$run_id"

echo "== 4. envlock verify $run_id (the CI gate: exit 0 reproduced, 1 not) =="
"$envlock" verify "$run_id" --junit "$work/reports/verify.junit.xml" --markdown "$work/reports/verify.md"

echo "== 5. envlock check (the pull-request gate: this venv against the run's lock) =="
"$envlock" check --lock ".envlock/runs/$run_id/envlock.lock.yaml" --python .venv/bin/python \
  --junit "$work/reports/check.junit.xml"

echo "== 6. envlock lineage $run_id =="
"$envlock" lineage "$run_id"
echo "quickstart: OK (experiment, MLflow store and lockfiles in $work)"
