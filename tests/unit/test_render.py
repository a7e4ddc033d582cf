"""The published recipe is exactly what the builder commits: every instruction of the
environment and code images, ENTRYPOINT and CMD included."""

from envlock.image import render
from tests.factories import make_lock
from tests.recipe_config import config, stages


def recipe(command="python train.py --epochs 2"):
    lock = make_lock(runtime={"env": {"OMP_NUM_THREADS": "4"}, "command": command})
    return render.render(lock, "base@sha256:" + "0" * 64, "reg/proj", "run-1", run_id="r1")


def test_each_stage_of_the_dockerfile_holds_exactly_the_committed_instructions():
    built = recipe()
    text = stages(render.dockerfile(built))
    assert [line for line in text["env"] if not line.startswith(("USER root", "COPY", "RUN"))
            ] == list(built.env_changes)
    assert [line for line in text["code"] if not line.startswith("COPY")] == \
        list(built.code_changes)


def test_the_recipe_states_the_entrypoint_and_the_locked_command():
    conf = config([*recipe().env_changes, *recipe().code_changes])
    assert conf["Entrypoint"] == []
    assert conf["Cmd"] == ["/bin/sh", "-c", "python train.py --epochs 2"]
    assert conf["Env"]["OMP_NUM_THREADS"] == "4" and conf["User"] == "1000:1000"
    assert conf["WorkingDir"] == "/workspace" and conf["Labels"]["envlock.run_id"] == "r1"


def test_without_a_command_the_image_runs_python():
    assert config([*recipe(None).env_changes, *recipe(None).code_changes])["Cmd"] == ["python"]
