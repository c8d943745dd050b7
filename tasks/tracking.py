"""MLflow runs: one parent run per pipeline run, runs of their own for other work, params that fit MLflow, the
dataset as a logged input. The store comes from MLFLOW_TRACKING_URI (flows/environment.py sets its default)."""
from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any, Callable

import mlflow
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from prefect import task

from models.dataset import read_manifest
from tasks.caching import Outputs
from tasks.data import DataVersion


def git_commit(root: Path = Path(".")) -> str:
    probe = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if probe.returncode != 0:
        return "none"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True)
    return probe.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


CONFIG = "config/settings.json"  # a pipeline run's whole configuration (Settings.model_validate reads it back)

# A longer param or tag value (a list of 1,000 class names) goes whole to an artifact: MLflow cuts params at
# 6,000 characters without a word, and no one reads such a value in its UI anyway.
LONG = 500
PARAMS_PER_BATCH = 100  # MLflow's most per log_batch call


def spilled(key: str) -> str:
    """The artifact a long value of `key` is written to."""
    return f"params/{key}.json"


def spill_long(run_id: str, values: dict[str, Any], text: Callable[[Any], str] = str) -> dict[str, str]:
    """Values as the text of MLflow params or tags (`text`: str, as MLflow writes a param). A text longer than
    LONG characters is replaced by a note, the value written whole as JSON to the run's `spilled(key)`."""
    texts = {}
    for key, value in values.items():
        texts[key] = text(value)
        if len(texts[key]) > LONG:
            MlflowClient().log_dict(run_id, value, spilled(key))
            size = f"{len(value)} items" if isinstance(value, (list, tuple, dict)) else f"{len(texts[key])} characters"
            texts[key] = f"<{size}: see artifact {spilled(key)}>"
    return texts


def read_spilled(run_id: str, key: str, text: str, parse: Callable[[str], Any] = str) -> Any:
    """A value as `spill_long` left it: parsed from its text, or read whole from the artifact its note names."""
    if text.startswith("<") and text.endswith(f"see artifact {spilled(key)}>"):
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{spilled(key)}")
    return parse(text)


def log_params(run_id: str, params: dict[str, Any]) -> None:
    """All params in batches of as many as MLflow takes at once, long values spilled to artifacts."""
    texts = [Param(key, value) for key, value in spill_long(run_id, params).items()]
    for start in range(0, len(texts), PARAMS_PER_BATCH):
        MlflowClient().log_batch(run_id, params=texts[start : start + PARAMS_PER_BATCH])


def experiment_id_of(name: str) -> str:
    """The experiment called `name`, created on first use."""
    found = MlflowClient().get_experiment_by_name(name)
    return found.experiment_id if found else MlflowClient().create_experiment(name)


def open_run(experiment: str, name: str, dataset_md5: str, tags: dict | None = None, parent: str | None = None) -> str:
    """The one way a run starts: in the dataset's experiment (under `parent`, where given), tagged with the code's
    commit and the data's digest. It stays open until set_terminated or a `with mlflow.start_run(run_id=...)`."""
    client = MlflowClient()
    if parent is not None:
        experiment_id = client.get_run(parent).info.experiment_id
        tags = {"mlflow.parentRunId": parent, **(tags or {})}
    else:
        experiment_id = experiment_id_of(experiment)
    commit = git_commit()
    tags = {"mlflow.source.git.commit": commit, "git_commit": commit, "dataset_md5": dataset_md5, **(tags or {})}
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def start_pipeline_run(dataset: str, data: DataVersion, run_name: str, params: dict, config: dict,
                       machine: str) -> str:
    """Create the parent run in the experiment of `dataset`: the flattened configuration as params and whole
    (`config`) as an artifact, the machine, git commit, dataset digest."""
    run_id = open_run(dataset, run_name, data.md5, {"pipeline": "genie-run", "machine": machine})
    log_params(run_id, params)
    # the configuration whole, typed, as the night read it: params are strings, this loads back as Settings
    MlflowClient().log_dict(run_id, config, CONFIG)
    return run_id


@task(name="record-run")
def record_run(dataset: str, data: DataVersion, name: str, params: dict, metrics: dict,
               artifacts: list[Path] = (), tags: dict | None = None) -> str:
    """A run of its own in the experiment of `dataset` (quality checks, benchmarks)."""
    run_id = open_run(dataset, name, data.md5, {"pipeline": name, **(tags or {})})
    with mlflow.start_run(run_id=run_id):
        log_params(run_id, params)
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path))
    return run_id


@task(name="log-dataset")
def log_dataset(run_id: str, dataset: str, data: DataVersion, split: Outputs) -> None:
    """The split manifest as an MLflow dataset input, digested by DVC's md5; the bad-file report."""
    manifest = read_manifest(split["manifest"])
    with warnings.catch_warnings():  # a local folder matches two equivalent MLflow source kinds
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            manifest, source=data.path, targets="label", name=dataset, digest=data.md5
        )
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="training", tags={"dvc_md5": data.md5, "dvc_file": data.pointer})
        mlflow.log_artifact(str(split["manifest"]), "data")
        mlflow.log_artifact(str(split["report"]), "data")
        mlflow.log_metrics({"data.images": len(manifest), "data.skipped": split.info["skipped"],
                            "data.converted": split.info["converted"]})


@task(name="log-evaluation")
def log_evaluation(run_id: str, evaluation: Outputs, prefix: str = "test", folder: str = "evaluation") -> None:
    """Overall and group accuracy as metrics, per-class figures as one table (per_class.csv): a metric per
    class would be thousands of keys at 1,000 classes."""
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"{prefix}.{k}": v for k, v in evaluation.info["metrics"].items()})
        for role in ("metrics", "per_class", "confusion", "confusion_plot"):
            mlflow.log_artifact(str(evaluation[role]), folder)


@task(name="log-files")
def log_files(run_id: str, paths: list[Path], folder: str, tags: dict | None = None, metrics: dict | None = None) -> None:
    with mlflow.start_run(run_id=run_id):
        for path in paths:
            mlflow.log_artifact(str(path), folder)
        mlflow.set_tags(tags or {})
        mlflow.log_metrics(metrics or {})
