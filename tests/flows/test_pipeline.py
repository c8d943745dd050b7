"""The main job end to end with the real Prefect, MLflow and DVC, in a fresh project folder."""
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from flows.pipeline import genie_run
from models.config import Settings

FAST = {"classifier": {"epochs": 2}}
STEPS = ("split-data", "train-classifier", "evaluate-classifier")


def test_run_registers_a_champion_then_hits_the_cache(project: Path):
    settings = Settings.model_validate(FAST)
    first = genie_run(settings)
    assert first["steps"] == {step: "ran" for step in STEPS}
    assert first["test_accuracy"] > 0.5

    md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert first["dataset_md5"] == md5 and (project / ".dvc").is_dir()
    client = MlflowClient()
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    assert str(champion.version) == str(first["model_version"]) == "1"
    assert champion.tags["dataset_md5"] == md5

    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["classifier.epochs"] == "2"
    assert run.data.tags["git_commit"] == "none"  # the project folder is not a git repository
    assert run.data.metrics["test.accuracy"] == first["test_accuracy"]
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == md5
    logged = {a.path for folder in ("data", "evaluation") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"data/bad_files.csv", "data/split.csv", "evaluation/confusion.png", "evaluation/confusion.csv"} <= logged

    second = genie_run(settings)
    assert second["steps"] == {step: "cached" for step in STEPS}
    assert second["model_version"] == first["model_version"]
    assert len(client.search_model_versions("name = 'digits-classifier'")) == 1
    assert client.get_run(second["run_id"]).data.tags["step.train-classifier"] == "cached"

    # a cache hit whose checkpoint is gone trains again; later steps are keyed on its content
    (project / "artifacts/digits/baseline/model.pt").unlink()
    third = genie_run(settings)
    assert third["steps"]["train-classifier"] == "ran"
    assert (project / "artifacts/digits/baseline/model.pt").is_file()


def test_changed_config_trains_again(project: Path):
    genie_run(Settings.model_validate(FAST))
    changed = genie_run(Settings.model_validate({"classifier": {"epochs": 2, "seed": 1}}))
    assert changed["steps"] == {"split-data": "cached", "train-classifier": "ran", "evaluate-classifier": "ran"}
