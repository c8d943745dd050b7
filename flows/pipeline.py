"""The main job: version data -> split -> train baseline -> evaluate -> register."""
from __future__ import annotations

from datetime import datetime

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from models.config import Settings
from tasks.caching import Outputs, run_verified
from tasks.data import DataVersion, split_data, version_data
from tasks.evaluate import evaluate_classifier
from tasks.tracking import configure, log_dataset, log_evaluation, register_classifier, start_pipeline_run
from tasks.train import train_classifier


def prepare(settings: Settings, steps: dict[str, str]) -> tuple[DataVersion, Outputs]:
    data = version_data(settings.dataset)
    split = run_verified(split_data, steps, cfg=settings.dataset, dataset_md5=data.md5, out_dir=settings.workdir / "split")
    return data, split


def train_baseline(settings: Settings, data: DataVersion, split: Outputs, steps: dict[str, str]) -> Outputs:
    return run_verified(
        train_classifier,
        steps,
        cfg=settings.classifier,
        dataset_root=settings.dataset.path,
        dataset_md5=data.md5,
        split=split,
        image_size=settings.dataset.image_size,
        out_dir=settings.workdir / "baseline",
    )


@flow(name="genie-prepare")
def genie_prepare(settings: Settings) -> dict:
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    return {
        "dataset_md5": data.md5,
        "dvc_file": data.pointer,
        "manifest": split.files["manifest"],
        "steps": steps,
        **split.info,
    }


@flow(name="genie-run")
def genie_run(settings: Settings) -> dict:
    logger = get_run_logger()
    configure()
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    run_id = start_pipeline_run(settings, data, f"genie-run-{datetime.now():%Y%m%d-%H%M%S}")
    status = "FAILED"
    try:
        workdir = settings.workdir
        log_dataset(run_id, settings, data, split)
        model = train_baseline(settings, data, split, steps)
        evaluation = run_verified(
            evaluate_classifier,
            steps,
            model=model,
            split=split,
            dataset_root=settings.dataset.path,
            cfg=settings.evaluate,
            out_dir=workdir / "baseline" / "evaluation",
        )
        registered = register_classifier(run_id, settings, data, model, evaluation)
        log_evaluation(run_id, evaluation, registered, steps)
        status = "FINISHED"
    finally:
        MlflowClient().set_terminated(run_id, status)
    summary = {
        "run_id": run_id,
        "dataset_md5": data.md5,
        "test_accuracy": evaluation.info["metrics"]["accuracy"],
        "steps": steps,
        **{f"model_{k}": v for k, v in registered.items()},
    }
    logger.info(
        "%s version %s: test accuracy %.4f; champion is version %s (MLflow run %s)",
        registered["name"], registered["version"], summary["test_accuracy"], registered["champion"], run_id,
    )
    return summary
