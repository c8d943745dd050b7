"""The registry's shared rules on a real MLflow store: one version per digest, aliases, lineage read back."""
import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from models.lifecycle import TrainedOn
from tasks import registry
from tasks.registry import CURRENT, current_generator, find_version, lineage, register_version
from tasks.tracking import open_run


def test_a_version_is_found_by_the_digest_it_was_registered_with(project):
    assert find_version("digits-generator", "weights_digest", "abc") is None  # no such model yet
    run_id = open_run("digits", "train-generator", "d" * 32)
    first = register_version("digits-generator", "file:///nowhere", run_id, {"weights_digest": "abc", "n": 3})
    second = register_version("digits-generator", "file:///nowhere", run_id, {"weights_digest": "def"})
    assert (first, second) == ("1", "2")
    assert find_version("digits-generator", "weights_digest", "abc").version == 1
    assert find_version("digits-generator", "weights_digest", "def").version == 2
    assert find_version("digits-generator", "weights_digest", "xyz") is None
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["dataset_md5"] == "d" * 32 and "git_commit" in run.data.tags


def test_the_current_generator_reads_back_what_it_was_trained_on(project):
    assert current_generator("digits-generator") is None and registry.alias_version("digits-generator", CURRENT) is None
    run_id = open_run("digits", "train-generator", "d" * 32)
    trained_on = TrainedOn(("0", "1"), 120, "recipe-digest", 1700000000.0)
    tags = {"weights_digest": "abc", "classes": json.dumps(list(trained_on.classes)), "recipe": trained_on.recipe,
            "train_images": trained_on.train_images, "trained_at": trained_on.time, "retrain_reason": "first"}
    version = register_version("digits-generator", "file:///nowhere", run_id, tags)
    MlflowClient().set_registered_model_alias("digits-generator", CURRENT, version)
    registry.tag_version("digits-generator", version, {"quality.txt2img": 0.97})
    current = current_generator("digits-generator")
    assert current.version == version and current.digest == "abc" and current.trained_on == trained_on
    assert current.source == "file:///nowhere"
    traced = lineage(f"digits-generator@{CURRENT}")
    assert traced["weights_digest"] == "abc" and traced["retrain_reason"] == "first"
    assert traced["aliases"] == [CURRENT] and traced["registering_run_id"] == run_id
    assert MlflowClient().get_model_version("digits-generator", version).tags["quality.txt2img"] == "0.97"


def test_a_run_under_a_parent_sits_in_its_experiment(project):
    parent = open_run("digits", "genie-run", "d" * 32)
    child = open_run("ignored", "baseline", "d" * 32, {"role": "baseline"}, parent=parent)
    run = MlflowClient().get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["role"] == "baseline"
    assert run.info.experiment_id == mlflow.get_experiment_by_name("digits").experiment_id
    assert mlflow.get_experiment_by_name("ignored") is None


def test_lineage_names_what_is_wrong_with_a_reference(project):
    with pytest.raises(ValueError, match="expected <model name>@<alias or version>"):
        lineage("digits-classifier")
    with pytest.raises(ValueError, match="digits-classifier@champion"):
        lineage("digits-classifier@champion")


def test_a_generator_whose_files_changed_after_registration_is_not_restored(project, tmp_path):
    from models.digests import model_identity
    from tasks.registry import restore_generator

    files = tmp_path / "generator"
    (files / "unet").mkdir(parents=True)
    (files / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"registered weights")
    run_id = open_run("digits", "train-generator", "d" * 32)
    MlflowClient().log_artifacts(run_id, str(files), "generator")
    source = f"{MlflowClient().get_run(run_id).info.artifact_uri}/generator"
    digest = model_identity(str(files))
    restore_generator(source, digest, tmp_path / "here")
    assert model_identity(str(tmp_path / "here")) == digest

    stored = Path(source.removeprefix("file://")) / "unet" / "diffusion_pytorch_model.safetensors"
    stored.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="the downloaded generator's digest .* is not its registered weights_digest"):
        restore_generator(source, digest, tmp_path / "there")
    assert not (tmp_path / "there").exists()
