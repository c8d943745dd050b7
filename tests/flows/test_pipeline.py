"""The nightly pipeline end to end with the real Prefect, MLflow and DVC, on tiny budgets."""
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import genie_run
from models.config import Settings
from tasks.versioning import dvc_md5

TINY = {
    "classifier": {"epochs": 2},
    "finetune": {"epochs": 1},
    "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}},
    "select": {"per_target": 2, "shard_size": 8},
}
NAME = "digits-classifier"


def test_nightly_run_promotes_with_reasons_then_hits_the_cache(project: Path):
    settings = Settings.model_validate(TINY)
    first = genie_run(settings)
    assert set(first["step_log"].values()) == {"ran"}
    assert first["generated"]["generated"] == 20 and len(first["targets"]) == 10
    assert sum(k.startswith("generate-shard-") for k in first["step_log"]) == 3  # 20 edits in shards of 8

    assert yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["path"] == "data"  # DVC versions data/
    md5 = dvc_md5(project / "data/digits")  # the dataset's own identity
    generated = yaml.safe_load((project / "artifacts/digits/generated.dvc").read_text())["outs"][0]
    assert first["dataset_md5"] == md5 and first["generator"].startswith("train-generator: trained (no generator")
    client = MlflowClient()
    baseline = client.get_model_version(NAME, first["baseline_version"])
    assert baseline.tags["promotion"] == "first model registered"
    challenger = client.get_model_version(NAME, first["challenger_version"])
    assert challenger.tags["promotion"] in ("promoted", "rejected") and challenger.tags["promotion_reason"]
    assert challenger.tags["generated_md5"] == first["generated_md5"] and challenger.tags["dataset_md5"] == md5
    assert challenger.tags["generated_dvc_md5"] == generated["md5"]
    champion = client.get_model_version_by_alias(NAME, "champion").version
    assert str(champion) == (first["challenger_version"] if first["promoted"] else first["baseline_version"])
    assert challenger.tags["challenger_test_accuracy"] == f"{first['challenger_test_accuracy']:.4f}"

    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["classifier.epochs"] == "2"
    assert run.data.tags["git_commit"] == "none"  # the project folder is not a git repository
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == md5
    finetune_run = client.get_run(challenger.run_id)  # each registered model says what it was trained on
    assert {i.dataset.digest for i in finetune_run.inputs.dataset_inputs} == {md5, first["generated_md5"]}
    assert {i.dataset.digest for i in client.get_run(baseline.run_id).inputs.dataset_inputs} == {md5}
    generator = client.get_model_version_by_alias("digits-generator", "current")
    assert generator.tags["dataset_md5"] == md5 and generator.tags["train_images"] == "1079"
    logged = {a.path for folder in ("data", "selection") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"data/bad_files.csv", "selection/selection.csv", "selection/soft_confusion.csv"} <= logged

    second = genie_run(settings)
    assert second["step_log"].pop("train-generator") == "reused"
    assert second["generator"] == "train-generator: reused (train split +0.0%, below 20%)"
    assert set(second["step_log"].values()) == {"cached"}, [k for k, v in second["step_log"].items() if v == "ran"]
    assert (second["challenger_version"], second["generated"]["generated"]) == (first["challenger_version"], 0)
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2

    # a cache hit whose checkpoint is gone trains again
    [checkpoint] = (project / "artifacts/digits/.store/baseline").glob("*/model.pt")
    checkpoint.unlink()
    third = genie_run(settings, until="baseline")
    assert third["step_log"]["train-classifier"] == "ran" and "select-sources" not in third["step_log"]


@pytest.mark.nights
def test_promote_rollback_and_lineage_by_hand(project: Path):
    first = genie_run(Settings.model_validate(TINY))
    runner = CliRunner()
    other = first["baseline_version"] if first["promoted"] else first["challenger_version"]
    assert runner.invoke(app, ["promote", other]).exit_code == 0
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == other
    rolled = runner.invoke(app, ["rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) != other
    bad = runner.invoke(app, ["promote", "99"])
    assert bad.exit_code == 1 and bad.output.startswith(f"error: {NAME} version 99")

    traced = runner.invoke(app, ["lineage", f"{NAME}@{first['challenger_version']}"])
    assert traced.exit_code == 0, traced.output
    for key in ("dataset_md5", "generated_md5", "generator_digest", "selection_sha256", "git_commit",
                "pipeline_run_id", "registering_run_id", '"classifier.epochs": "2"'):
        assert key in traced.output
    assert "expected <model name>@<alias or version>" in runner.invoke(app, ["lineage", NAME]).output


@pytest.mark.nights
def test_a_copied_folders_gc_leaves_the_original_whole(project: Path, monkeypatch):
    """MLflow records absolute artifact paths: a copy of the folder (its store included) names the original's."""
    settings = Settings.model_validate(TINY)
    genie_run(settings)
    copy = project.parent / f"{project.name}-copy"
    shutil.copytree(project, copy, symlinks=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    refused = CliRunner().invoke(app, ["gc", "--set", "retention.keep_nights=1", "--set", "retention.grace_hours=0"])
    assert refused.exit_code == 1 and f"outside this store's folder {copy}" in refused.output, refused.output
    assert f"{project}/mlruns/" in refused.output and len(refused.output.strip().splitlines()) == 1

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    assert mlflow.pyfunc.load_model(f"models:/{NAME}@champion") is not None  # the original's champion loads
    assert genie_run(settings)["challenger_version"]  # and its next night runs


@pytest.mark.nights
def test_changed_config_reruns_only_what_depends_on_it(project: Path):
    genie_run(Settings.model_validate(TINY))
    changed = genie_run(Settings.model_validate(TINY | {"finetune": {"epochs": 1, "soft_label": 0.3}}))
    ran = {k for k, v in changed["step_log"].items() if v == "ran"}
    assert {"finetune-classifier", "evaluate-challenger"} <= ran <= {"finetune-classifier", "evaluate-challenger",
                                                                     "evaluate-champion"}
