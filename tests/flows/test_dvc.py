"""`genie run` and `dvc repro` agree: the flow records its outputs in dvc.lock, DVC finds nothing to redo."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.pipeline import STAGE_PARAMS, STAGE_TASKS, STAGES, genie_run
from models.config import Settings
from models.params import load_settings
from tasks.keys import module_closure

REPO = Path(__file__).resolve().parents[2]
TINY = ["classifier.epochs=2", "finetune.epochs=1", "generator.steps=4", "generator.embedded.vae_steps=4",
        "generator.embedded.unet_steps=4", "select.per_target=2"]


def dvc(*args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.mark.nights  # a whole night, then dvc repro: make test-nights
def test_genie_run_and_dvc_repro_agree(project: Path):
    for name in ("dvc.yaml", "models", "tasks"):
        (project / name).symlink_to(REPO / name)
    settings = load_settings(REPO / "params.yaml", TINY)
    (project / "params.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    summary = genie_run(settings)

    lock = {stage: data for stage, data in yaml.safe_load((project / "dvc.lock").read_text())["stages"].items()}
    assert set(lock) == set(STAGES)
    generated = next(o for o in lock["generate"]["outs"] if o["path"] == "artifacts/digits/generated")
    assert generated["md5"] == summary["generated_dvc_md5"]
    assert "Data and pipelines are up to date" in dvc("status")
    dag = dvc("dag")
    assert all(stage in dag for stage in STAGES)

    # DVC re-running a stage goes through the same flow and lands on the same bytes
    model = project / "artifacts/digits/finetuned/model.pt"
    before = model.read_bytes()
    dvc("repro", "--force", "--single-item", "finetune")
    assert model.read_bytes() == before
    assert "Data and pipelines are up to date" in dvc("status")


def test_each_stage_lists_the_code_it_runs_and_the_params_it_reads():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    sections = set(Settings.model_fields)
    for name, stage in stages.items():
        code = {path for module in STAGE_TASKS[name] for path in module_closure(module)}
        folders = [d for d in stage["deps"] if (REPO / d).is_dir()]  # a registry package: all its modules
        listed = {d for d in stage["deps"] if d.endswith(".py")}
        listed |= {p.relative_to(REPO).as_posix() for d in folders for p in (REPO / d).glob("*.py")}
        assert listed == code, name
        assert all((REPO / path).is_file() for path in code)
        assert tuple(stage["params"]) == STAGE_PARAMS[name] and {p.split(".")[0] for p in stage["params"]} <= sections
    # the generator's code does not reach the classifier's, nor the other way round
    assert "models/classifier.py" not in module_closure("tasks.generator")
    assert "models/embedded_ldm.py" not in module_closure("tasks.train")
