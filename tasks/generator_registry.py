"""The embedded generator in the MLflow registry: `<dataset>-generator@current`, registered once per weights
digest with what it was trained on, restored into its folder when a night reuses it."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task

from models.config import Settings
from models.digests import model_identity
from models.lifecycle import TrainedOn
from models.locks import partial_path
from tasks.caching import Outputs
from tasks.data import DataVersion
from tasks.tracking import git_commit, log_params, read_spilled, spill_long

CURRENT = "current"


@dataclass(frozen=True)
class RegisteredGenerator:
    version: str
    source: str  # the artifact folder of the pipeline
    digest: str  # model_identity of its files
    trained_on: TrainedOn


def current_generator(name: str) -> RegisteredGenerator | None:
    """`<dataset>-generator@current` and what it was trained on, or None."""
    try:
        found = MlflowClient().get_model_version_by_alias(name, CURRENT)
    except MlflowException:
        return None
    tags = found.tags
    classes = read_spilled(found.run_id, "classes", tags["classes"], json.loads)
    trained_on = TrainedOn(tuple(classes), int(tags["train_images"]), tags["recipe"], float(tags["trained_at"]))
    return RegisteredGenerator(str(found.version), found.source, tags["weights_digest"], trained_on)


@task(name="register-generator")
def register_generator(settings: Settings, data: DataVersion, model: Outputs, folder: Path, trained_on: TrainedOn,
                       reason: str) -> str:
    """Register the embedded generator in `folder` once per weights digest, with its lineage and training
    figures, and make it `current`. A digest registered before (data back to an earlier version) is
    found again, not copied."""
    client, name = MlflowClient(), settings.registered_generator
    digest = model_identity(str(folder))
    try:
        found = client.search_model_versions(f"name = '{name}' and tag.weights_digest = '{digest}'")
    except MlflowException:
        found = []
    if found:
        version = str(found[0].version)
    else:
        card = model.info
        experiment = mlflow.set_experiment(settings.dataset.name)
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="train-generator") as run:
            mlflow.set_tags({"dataset_md5": data.md5, "pipeline": "train-generator", "git_commit": git_commit(),
                             "retrain_reason": reason})
            log_params(run.info.run_id, {f"embedded.{k}": v for k, v in card["recipe"].items()}
                       | {"prompt": settings.generator.prompt, "images": card["images"]})
            # the tag holds the class names as JSON, or (1,000 of them) a note naming the artifact that does
            classes = spill_long(run.info.run_id, {"classes": list(trained_on.classes)}, json.dumps)["classes"]
            mlflow.log_metrics({k: card[k] for k in ("vae_mse", "unet_loss", "train_seconds", "scaling_factor")})
            mlflow.log_artifacts(str(folder), "generator")
        try:
            client.create_registered_model(name)
        except MlflowException:  # already there
            pass
        tags = {"weights_digest": digest, "dataset_md5": data.md5, "classes": classes,
                "train_images": str(trained_on.train_images), "recipe": trained_on.recipe,
                "trained_at": str(trained_on.time), "retrain_reason": reason,
                "train_seconds": f"{card['train_seconds']:.0f}", "unet_loss": f"{card['unet_loss']:.4f}"}
        version = str(client.create_model_version(name, f"{run.info.artifact_uri}/generator", run_id=run.info.run_id,
                                                  tags=tags).version)
    client.set_registered_model_alias(name, CURRENT, version)
    get_run_logger().info("%s version %s is current (%s)", name, version, reason)
    return version


def restore_generator(current: RegisteredGenerator, folder: Path) -> None:
    """Put the current generator's files in `folder`, unless they are already there."""
    if folder.is_dir() and model_identity(str(folder)) == current.digest:
        return
    partial = partial_path(folder)
    shutil.rmtree(partial, ignore_errors=True)
    downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=current.source, dst_path=str(partial)))
    shutil.rmtree(folder, ignore_errors=True)
    downloaded.rename(folder)
    shutil.rmtree(partial, ignore_errors=True)


def tag_current_generator(name: str, metrics: dict[str, float]) -> None:
    """Attach quality figures (`genie quality`) to the current generator's version."""
    current = current_generator(name)
    if current is not None:
        for key, value in metrics.items():
            MlflowClient().set_model_version_tag(name, current.version, f"quality.{key}", f"{value:.4f}")
