"""The MLflow model registry, for classifiers, generators and adapters alike: a version is registered once per digest
of its files (a re-run, a kill or data going back finds it again), reached through aliases, and tagged with its
lineage. The generator's versions are registered here, the classifier's in tasks/classifiers.py, the adapters' in
tasks/adapters.py; which classifier version is `champion` is tasks/champion.py's policy."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task

from models.digests import model_identity
from models.lifecycle import TrainedOn
from models.locks import partial_path
from tasks.caching import Outputs
from tasks.data import DataVersion
from tasks.tracking import log_params, open_run, read_spilled, spill_long

CHAMPION = "champion"  # the classifier users load
PREVIOUS = "previous-champion"
CURRENT = "current"  # the generator nights use


def find_version(name: str, tag: str, digest: str) -> ModelVersion | None:
    """The version of `name` registered for these files (`tag` holds their digest), if any."""
    try:
        found = MlflowClient().search_model_versions(f"name = '{name}' and tag.{tag} = '{digest}'")
    except MlflowException:  # no such model yet
        return None
    return found[0] if found else None


def at_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def alias_version(name: str, alias: str = CHAMPION) -> str | None:
    found = at_alias(name, alias)
    return None if found is None else str(found.version)


def register_version(name: str, source: str, run_id: str, tags: dict, model_id: str | None = None) -> str:
    """A new version of `name` (created on first use) from `source`, made by run `run_id`."""
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException:  # already there
        pass
    tags = {key: str(value) for key, value in tags.items()}
    return str(client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id).version)


def register_once(name: str, tag: str, digest: str, log) -> tuple[str, str, bool]:
    """The version of `name` for files of this digest (`tag` holds it): the one registered before (a re-run, a kill,
    data going back), else a new one from what `log()` logs (its artifact source, run id, tags and logged model id).
    Returns the version, its run and whether it is new."""
    found = find_version(name, tag, digest)
    if found is not None:
        return str(found.version), found.run_id, False
    source, run_id, tags, model_id = log()
    return register_version(name, source, run_id, {tag: digest, **tags}, model_id), run_id, True


def tag_version(name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        MlflowClient().set_model_version_tag(name, version, key, str(value))


@dataclass(frozen=True)
class RegisteredGenerator:
    version: str
    source: str  # the artifact folder of the pipeline
    digest: str  # model_identity of its files
    trained_on: TrainedOn


def current_generator(name: str) -> RegisteredGenerator | None:
    """`<dataset>-generator@current` and what it was trained on, or None."""
    found = at_alias(name, CURRENT)
    if found is None:
        return None
    tags = found.tags
    classes = read_spilled(found.run_id, "classes", tags["classes"], json.loads)
    trained_on = TrainedOn(tuple(classes), int(tags["train_images"]), tags["recipe"], float(tags["trained_at"]))
    return RegisteredGenerator(str(found.version), found.source, tags["weights_digest"], trained_on)


@task(name="register-generator")
def register_generator(name: str, dataset: str, prompt: str, data: DataVersion, model: Outputs, folder: Path,
                       trained_on: TrainedOn, reason: str) -> str:
    """Register the embedded generator in `folder` as a version of `name` once per weights digest, with its lineage,
    prompt template and training figures, and make it `current`."""

    def log():
        card = model.info
        run_id = open_run(dataset, "train-generator", data.md5,
                          {"pipeline": "train-generator", "retrain_reason": reason})
        with mlflow.start_run(run_id=run_id) as run:
            log_params(run_id, {f"embedded.{k}": v for k, v in card["recipe"].items()}
                       | {"prompt": prompt, "images": card["images"]})
            # the tag holds the class names as JSON, or (1,000 of them) a note naming the artifact that does
            classes = spill_long(run_id, {"classes": list(trained_on.classes)}, json.dumps)["classes"]
            mlflow.log_metrics({k: card[k] for k in ("vae_mse", "unet_loss", "train_seconds", "scaling_factor")})
            mlflow.log_artifacts(str(folder), "generator")
        tags = {"dataset_md5": data.md5, "classes": classes,
                "train_images": trained_on.train_images, "recipe": trained_on.recipe,
                "trained_at": trained_on.time, "retrain_reason": reason,
                "train_seconds": f"{card['train_seconds']:.0f}", "unet_loss": f"{card['unet_loss']:.4f}"}
        return f"{run.info.artifact_uri}/generator", run_id, tags, None

    version, _, _ = register_once(name, "weights_digest", model_identity(str(folder)), log)
    MlflowClient().set_registered_model_alias(name, CURRENT, version)
    get_run_logger().info("%s version %s is current (%s)", name, version, reason)
    return version


def restore_generator(source: str, digest: str, folder: Path) -> None:
    """Put a registered generator's files (from its artifact `source`) in `folder`, unless they are already there;
    files whose digest is not the registered one stop it."""
    if folder.is_dir() and model_identity(str(folder)) == digest:
        return
    partial = partial_path(folder)
    shutil.rmtree(partial, ignore_errors=True)
    downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(partial)))
    found = model_identity(str(downloaded))
    if found != digest:  # what the registry serves is not what it recorded: never used
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError(f"{source}: the downloaded generator's digest {found[:12]} is not its registered "
                         f"weights_digest {digest[:12]}; its artifacts were changed since, so it is not used")
    shutil.rmtree(folder, ignore_errors=True)
    downloaded.rename(folder)
    shutil.rmtree(partial, ignore_errors=True)


def tag_current_generator(name: str, metrics: dict[str, float]) -> None:
    """Attach quality figures (`genie quality`) to the current generator's version."""
    current = current_generator(name)
    if current is not None:
        tag_version(name, current.version, {f"quality.{key}": f"{value:.4f}" for key, value in metrics.items()})


def version_of(reference: str) -> ModelVersion:
    """The version `<name>@<alias>` or `<name>@<version>` names; a ValueError in one line if there is none."""
    name, _, which = reference.partition("@")
    if not name or not which:
        raise ValueError(f"{reference!r}: expected <model name>@<alias or version>, e.g. digits-classifier@champion")
    client = MlflowClient()
    try:
        return client.get_model_version(name, which) if which.isdigit() else client.get_model_version_by_alias(name, which)
    except MlflowException as err:
        raise ValueError(f"{reference}: {err.message.splitlines()[0]}") from None


def lineage(reference: str) -> dict:
    """What made `<name>@<alias>` or `<name>@<version>`: data, generator, selection, config, runs."""
    version = version_of(reference)
    name = version.name
    client = MlflowClient()
    pipeline_run = version.tags.get("pipeline_run_id")
    try:
        params = client.get_run(pipeline_run).data.params if pipeline_run else {}
    except MlflowException as err:
        raise ValueError(f"{reference}: its night's run {pipeline_run} is gone ({err.message.splitlines()[0]})") from None
    keys = ("role", "dataset_md5", "generated_md5", "generator", "generator_digest", "adapters", "selection_sha256",
            "selection_artifact", "git_commit", "checkpoint_sha256", "test_accuracy", "promotion", "promotion_reason",
            "weights_digest", "train_images", "recipe", "retrain_reason")
    return {
        "model": f"{name} version {version.version}",
        "aliases": list(version.aliases),
        **{key: version.tags[key] for key in keys if key in version.tags},
        "registering_run_id": version.run_id,
        "pipeline_run_id": pipeline_run,
        "config": params,
    }
