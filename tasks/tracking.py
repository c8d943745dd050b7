"""MLflow: one parent run per pipeline run, the dataset as a logged input, the registry."""
from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task

from models.classifier import load_checkpoint
from models.dataset import read_manifest
from models.config import Settings
from tasks.caching import Outputs
from tasks.data import DataVersion

CHAMPION = "champion"


def configure(root: Path = Path(".")) -> str:
    """Default to a SQLite store in the project; MLFLOW_TRACKING_URI overrides it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    return uri


def git_commit(root: Path = Path(".")) -> str:
    probe = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if probe.returncode != 0:
        return "none"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True)
    return probe.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def start_pipeline_run(settings: Settings, data: DataVersion, run_name: str) -> str:
    """Create the parent run: flattened config, git commit, dataset digest."""
    experiment = mlflow.set_experiment(settings.dataset.name)
    commit = git_commit()
    run = MlflowClient().create_run(
        experiment.experiment_id,
        run_name=run_name,
        tags={"mlflow.source.git.commit": commit, "git_commit": commit, "dataset_md5": data.md5, "pipeline": "genie-run"},
    )
    client = MlflowClient()
    for key, value in settings.flat().items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


@task(name="record-run")
def record_run(settings: Settings, data: DataVersion, name: str, params: dict, metrics: dict,
               artifacts: list[Path] = (), tags: dict | None = None) -> str:
    """A run of its own in the dataset's experiment (generator training, quality checks)."""
    experiment = mlflow.set_experiment(settings.dataset.name)
    commit = git_commit()
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=name) as run:
        mlflow.set_tags({"git_commit": commit, "mlflow.source.git.commit": commit, "dataset_md5": data.md5,
                         "pipeline": name, **(tags or {})})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path))
    return run.info.run_id


@task(name="log-dataset")
def log_dataset(run_id: str, settings: Settings, data: DataVersion, split: Outputs) -> None:
    """The split manifest as an MLflow dataset input, digested by DVC's md5; the bad-file report."""
    manifest = read_manifest(split["manifest"])
    with warnings.catch_warnings():  # a local folder matches two equivalent MLflow source kinds
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            manifest, source=data.path, targets="label", name=settings.dataset.name, digest=data.md5
        )
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="training", tags={"dvc_md5": data.md5, "dvc_file": data.pointer})
        mlflow.log_artifact(str(split["manifest"]), "data")
        mlflow.log_artifact(str(split["report"]), "data")
        mlflow.log_metrics({"data.skipped": split.info["skipped"], "data.converted": split.info["converted"]})


def _version_of(client: MlflowClient, name: str, checkpoint_sha: str):
    try:
        found = client.search_model_versions(f"name = '{name}' and tag.checkpoint_sha256 = '{checkpoint_sha}'")
    except MlflowException:
        return None
    return found[0] if found else None


@task(name="register-classifier")
def register_classifier(
    run_id: str, settings: Settings, data: DataVersion, model: Outputs, evaluation: Outputs
) -> dict:
    """Log and register the model once per checkpoint; the first version becomes the champion.

    Registration is keyed by the checkpoint's digest, so a cached re-run finds the
    version it registered before instead of adding a copy.
    """
    logger = get_run_logger()
    client = MlflowClient()
    name = settings.registered_model
    version = _version_of(client, name, model.digests["checkpoint"])
    metrics = evaluation.info["metrics"]
    if version is None:
        parent = client.get_run(run_id)
        child = client.create_run(
            parent.info.experiment_id, run_name="baseline", tags={"mlflow.parentRunId": run_id, "dataset_md5": data.md5}
        )
        network, meta = load_checkpoint(model["checkpoint"])
        example = np.zeros((1, 3, meta["image_size"], meta["image_size"]), dtype=np.float32)
        with mlflow.start_run(run_id=child.info.run_id):
            for row in model.info["history"]:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            mlflow.log_metrics({f"test.{k}": v for k, v in metrics.items()})
            mlflow.log_params(settings.classifier.model_dump(mode="json") | {"classes": ",".join(meta["classes"])})
            mlflow.log_artifact(str(evaluation["confusion_plot"]), "evaluation")
            info = mlflow.pytorch.log_model(
                network,
                name="model",
                input_example=example,
                pip_requirements=_requirements(),
                serialization_format="pickle",
                registered_model_name=name,
            )
        version = client.get_model_version(name, info.registered_model_version)
        for key, value in {
            "checkpoint_sha256": model.digests["checkpoint"],
            "dataset_md5": data.md5,
            "test_accuracy": f"{metrics['accuracy']:.4f}",
            "classes": ",".join(meta["classes"]),
        }.items():
            client.set_model_version_tag(name, version.version, key, value)
        logger.info("registered %s version %s", name, version.version)
    else:
        logger.info("model unchanged: %s version %s already registered", name, version.version)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        champion = version.version
        logger.info("%s version %s is the first champion", name, champion)
    return {"name": name, "version": version.version, "champion": champion, "run_id": version.run_id}


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("torch", "timm", "numpy")]


@task(name="log-evaluation")
def log_evaluation(run_id: str, evaluation: Outputs, registered: dict, steps: dict[str, str]) -> None:
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test.{k}": v for k, v in evaluation.info["metrics"].items()})
        for role in ("metrics", "confusion", "confusion_plot"):
            mlflow.log_artifact(str(evaluation[role]), "evaluation")
        mlflow.set_tags({"model_version": registered["version"], "champion_version": registered["champion"]})
        mlflow.set_tags({f"step.{name}": how for name, how in steps.items()})
