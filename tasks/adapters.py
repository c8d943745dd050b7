"""A class taught to the generator from its own train images (models/adapters.py), cached by the base generator's
weights digest, the class's images and the recipe: a later night, or a new class beside it, reuses it."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import torch
from prefect import get_run_logger, task

from models.adapters import CARD
from models.config import AdapterConfig, RuntimeConfig
from models.digests import model_identity
from tasks.caching import Outputs, cached_task
from tasks.data import DataVersion
from tasks.registry import register_once
from tasks.tracking import open_run


@cached_task(name="adapt-class")
def adapt_class(kind: str, adapter: AdapterConfig, prompt: str, model: str, model_identity: str, class_label: str,
                display_name: str, images: list[str], images_md5: str, out_dir: Path,
                runtime: RuntimeConfig | None = None, allow_pickle: bool = False) -> Outputs:
    """Train and save one class's adapter on the base generator `model` (in float32, on the GPU when there is one)."""
    from models.adapters import save_adapter, train_adapter
    from models.engine import load_img2img, pick_device  # diffusers: only when an adapter is made

    pipeline = load_img2img(model, pick_device()[0], torch.float32, allow_pickle)
    trained = train_adapter(pipeline, [Path(p) for p in images], class_label, display_name, prompt, kind, adapter,
                            runtime)
    # the card names what the adapter was made from; its seconds stay out, so the same inputs give the same bytes
    save_adapter(trained, out_dir, {"base_model": model, "base_digest": model_identity, "images_md5": images_md5,
                                    "recipe": adapter.model_dump(mode="json"), "prompt": prompt})
    get_run_logger().info("class %s taught to the generator (%s, %d images, %d steps) in %.0f s: loss %.4f", class_label,
                          kind, len(images), adapter.steps, trained.stats["train_seconds"], trained.stats["loss"])
    return Outputs.of({"label": class_label, "token": trained.token, "kind": kind, **trained.stats},
                      **{p.name: p for p in sorted(out_dir.iterdir()) if p.is_file()})


@task(name="register-adapter")
def register_adapter(name: str, dataset: str, data: DataVersion, folder: Path, info: dict) -> str:
    """A class's adapter (models/adapters.py) as a version of `name` (`<dataset>-adapters`), once per digest of its
    files, tagged with its class, kind, token and what it was made from: the base generator's digest and the class's
    images."""
    card = json.loads((folder / CARD).read_text())

    def log():
        run_id = open_run(dataset, f"adapt-{card['label']}", data.md5,
                          {"pipeline": "adapt-class", "class": card["label"]})
        with mlflow.start_run(run_id=run_id) as run:
            mlflow.log_metrics({key: info[key] for key in ("loss", "train_seconds", "images")})
            mlflow.log_artifacts(str(folder), "adapter")
        tags = {"class": card["label"], "kind": card["kind"], "token": card["token"],
                "base_digest": card["base_digest"], "images_md5": card["images_md5"], "dataset_md5": data.md5}
        return f"{run.info.artifact_uri}/adapter", run_id, tags, None

    version, _, new = register_once(name, "adapter_digest", model_identity(str(folder)), log)
    if new:
        get_run_logger().info("%s version %s: class %s (%s)", name, version, card["label"], card["kind"])
    return version
