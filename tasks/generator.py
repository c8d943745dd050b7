"""Train the embedded diffusion model (the default generator) on the real train split."""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from models.config import DatasetConfig, EmbeddedLdmConfig, RuntimeConfig
from models.dataset import generator_splits, read_manifest, subset
from tasks.caching import Outputs, cached_task


@cached_task(name="train-generator")
def train_generator_model(dataset: DatasetConfig, embedded: EmbeddedLdmConfig, prompts: dict[str, str],
                          dataset_md5: str, split: Outputs, out_dir: Path, runtime: RuntimeConfig | None = None) -> Outputs:
    """Train the embedded text-to-image model on the real train split (with a long tail, by default also on
    the train images it left out) with each class's prompt; save a pipeline folder."""
    from models.embedded_ldm import prompt_words, save_ldm, train_ldm, write_tokenizer  # diffusers: only here

    classes = split.info["classes"]
    paths, labels = subset(read_manifest(split["manifest"]), dataset.path, generator_splits(dataset), classes)
    prompts = [prompts[label] for label in classes]
    tokenizer_dir = out_dir.with_name(out_dir.name + ".tokenizer")
    tokenizer = write_tokenizer(tokenizer_dir, prompt_words(prompts))
    pipeline, stats = train_ldm(paths, labels, prompts, tokenizer, embedded, runtime=runtime,
                                image_size=dataset.image_size)
    card = {"dataset": dataset.name, "dataset_md5": dataset_md5, "classes": classes, "prompts": prompts,
            "recipe": embedded.model_dump(), "images": len(paths), **stats}
    save_ldm(pipeline, out_dir, card, tokenizer_dir)
    get_run_logger().info(
        "embedded generator trained in %.0f s: VAE mse %.4f, UNet loss %.4f -> %s",
        stats["train_seconds"], stats["vae_mse"], stats["unet_loss"], out_dir,
    )
    # every file of the pipeline folder, so that publishing it gives a complete, loadable copy
    return Outputs.of(card, **{p.relative_to(out_dir).as_posix(): p for p in sorted(out_dir.rglob("*")) if p.is_file()})
