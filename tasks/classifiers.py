"""The classifier's versions: each checkpoint logged as a pyfunc model (weights in safetensors, no pickle) and
registered once, in a run nested under the night's, with the data it learnt from."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task

from models.classifier import load_checkpoint
from models.config import ClassifierConfig
from tasks.caching import Outputs
from tasks.data import DataVersion
from tasks.registry import register_once
from tasks.tracking import log_params, open_run, spill_long

SERVING = Path(__file__).resolve().parent.parent / "models" / "serving.py"


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("torch", "timm", "numpy", "pandas", "pillow",
                                                              "safetensors", "mlflow")]


def log_classifier(checkpoint: Path, folder: Path):
    """Log the classifier as a pyfunc model from code: weights in safetensors, a JSON card, models/serving.py.
    Loading it runs that file and reads tensors; nothing is unpickled."""
    from safetensors.torch import save_file

    network, meta = load_checkpoint(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "weights.safetensors")
    card = {key: meta[key] for key in ("model", "classes", "image_size")}
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    return mlflow.pyfunc.log_model(name="model", python_model=str(SERVING), pip_requirements=_requirements(),
                                   artifacts={"weights": str(folder / "weights.safetensors"),
                                              "card": str(folder / "card.json")})


@task(name="register-classifier")
def register_classifier(run_id: str, name: str, dataset: str, recipe: ClassifierConfig, data: DataVersion,
                        model: Outputs, evaluation: Outputs, role: str = "baseline", lineage: dict | None = None,
                        inputs: dict[str, tuple[pd.DataFrame, str, str]] | None = None) -> dict:
    """Log and register the model as a version of `name` once per checkpoint, in a run nested under the pipeline run
    (in the experiment of `dataset`), with the data it was trained on (`inputs`: name -> rows, source, digest) as
    MLflow dataset inputs and its `recipe` as params."""
    metrics = evaluation.info["metrics"]

    def log():
        child = open_run(dataset, role, data.md5, {"role": role}, parent=run_id)
        with mlflow.start_run(run_id=child):
            for label, (frame, source, digest) in (inputs or {}).items():  # what it was trained on: name -> rows
                with warnings.catch_warnings():  # a local folder matches two equivalent MLflow source kinds
                    warnings.simplefilter("ignore", UserWarning)
                    rows = mlflow.data.from_pandas(frame, source=source, name=label, digest=digest)
                mlflow.log_input(rows, context="training", tags={"digest": digest})
            for row in model.info["history"]:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            mlflow.log_metrics({f"test.{k}": v for k, v in metrics.items()})
            # the same text as param and as the version's tag: the names, or a note naming the artifact that has them
            classes_text = spill_long(child, {"classes": evaluation.info["classes"]}, ",".join)
            log_params(child, recipe.model_dump(mode="json") | classes_text)
            for output in ("confusion_plot", "per_class"):
                mlflow.log_artifact(str(evaluation[output]), "evaluation")
            mlflow.log_artifact(str(model["checkpoint"]), "checkpoint")
            info = log_classifier(model["checkpoint"], Path(model["checkpoint"]).parent / "pyfunc")
        parent = MlflowClient().get_run(run_id).data.tags
        tags = {"dataset_md5": data.md5, "role": role,
                "data_dvc_file": data.pointer, "data_dvc_md5": data.pointer_md5,
                "test_accuracy": f"{metrics['accuracy']:.4f}", **classes_text,
                "pipeline_run_id": run_id, "git_commit": parent.get("git_commit", "none"), **(lineage or {})}
        return info.model_uri, child, tags, info.model_id

    version, child, new = register_once(name, "checkpoint_sha256", model.digests["checkpoint"], log)
    if new:
        get_run_logger().info("registered %s version %s (%s)", name, version, role)
    else:
        get_run_logger().info("model unchanged: %s version %s already registered", name, version)
    return {"name": name, "version": version, "run_id": child, "new": new}
