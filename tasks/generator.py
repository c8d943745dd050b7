"""Generator steps: train the embedded diffusion model, make hard negatives, judge them."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from prefect import get_run_logger, task

from models.classifier import Embedder, classify
from models.config import Settings
from models.dataset import load_rgb, read_manifest, subset
from models.engine import Engine
from models.generation import Edit, Generator, select_edits
from models.generator import save, train_generator, write_tokenizer
from tasks.caching import Outputs, cached_task

WEIGHTS = {
    "model_index": "model_index.json",
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
    "tokenizer": "tokenizer/tokenizer.json",
}


def prompt_words(prompts: list[str]) -> list[str]:
    """Words as CLIP's pre-tokenizer splits them (letters / digits apart from punctuation)."""
    return sorted({w for p in prompts for w in re.findall(r"[^\W_]+|[^\s\w]+|_", p.lower())})


def real_images(settings: Settings, split: Outputs, name: str = "train"):
    manifest = read_manifest(split["manifest"])
    return subset(manifest, settings.dataset.path, name, split.info["classes"])


@cached_task(name="train-generator")
def train_generator_model(settings: Settings, dataset_md5: str, split: Outputs, out_dir: Path) -> Outputs:
    """Train the embedded text-to-image model on the real train split; save a pipeline folder."""
    classes = split.info["classes"]
    paths, labels = real_images(settings, split)
    size = settings.dataset.image_size
    images = torch.stack([
        torch.from_numpy(np.asarray(load_rgb(p).resize((size, size)), dtype=np.float32) / 255).permute(2, 0, 1)
        for p in paths
    ])
    prompts = [settings.prompt(label) for label in classes]
    tokenizer_dir = out_dir.with_name(out_dir.name + ".tokenizer")
    tokenizer = write_tokenizer(tokenizer_dir, prompt_words(prompts))
    pipeline, stats = train_generator(images, torch.tensor(labels), prompts, tokenizer, settings.generator.embedded)
    card = {"dataset": settings.dataset.name, "dataset_md5": dataset_md5, "classes": classes, "prompts": prompts,
            "recipe": settings.generator.embedded.model_dump(), "images": len(paths), **stats}
    save(pipeline, out_dir, card, tokenizer_dir)
    get_run_logger().info(
        "embedded generator trained in %.0f s: VAE mse %.4f, UNet loss %.4f -> %s",
        stats["train_seconds"], stats["vae_mse"], stats["unet_loss"], out_dir,
    )
    return Outputs.of(card, **{role: out_dir / name for role, name in WEIGHTS.items()})


def make_engine(settings: Settings) -> Engine:
    g = settings.generator
    return Engine(settings.generator_model, g.device, g.dtype, g.steps, g.guidance)


@lru_cache(maxsize=1)  # keyed by the weights digest too, so retrained weights at the same path reload
def _shared_engine(model: str, device: str, dtype: str, steps: int, guidance: float, identity: str) -> Engine:
    return Engine(model, device, dtype, steps, guidance)


def target_means(embed: Embedder, settings: Settings, split: Outputs) -> dict[str, np.ndarray]:
    """Mean embedding of each class's real train images (GeNIe-Ada's target direction)."""
    classes = split.info["classes"]
    paths, labels = real_images(settings, split)
    z = np.concatenate([embed([load_rgb(p) for p in paths[i : i + 256]]) for i in range(0, len(paths), 256)])
    labels = np.asarray(labels)
    return {label: z[labels == i].mean(0) for i, label in enumerate(classes)}


def generator_for(settings: Settings, engine: Engine, out_dir: Path, split: Outputs,
                  classifier: Outputs | None) -> Generator:
    """A Generator into out_dir; with a classifier, its features serve GeNIe-Ada."""
    embed, means = ada_features(settings, split, classifier) if classifier is not None else (None, None)
    return Generator(engine, out_dir, settings.prompt, settings.generator.batch_size, settings.genie.ada_ratios,
                     embed, means)


@task(name="generate")
def generate(settings: Settings, edits: list[Edit], split: Outputs, classifier: Outputs | None, out_dir: Path) -> dict:
    """Make the edits not yet made (content keys), one folder per method."""
    engine = make_engine(settings)
    stats = generator_for(settings, engine, out_dir, split, classifier).run(edits)
    get_run_logger().info(
        "%d requested, %d already there, %d generated, %d dropped by the safety checker; %.1f img/s, "
        "%.0f UNet evaluations per image -> %s",
        stats["requested"], stats["existing"], stats["generated"], stats["dropped"],
        stats["images_per_second"], stats["unet_evals_per_image"], out_dir,
    )
    return stats


_MEANS: dict[tuple, tuple] = {}


def ada_features(settings: Settings, split: Outputs, classifier: Outputs):
    """Ada's feature extractor and class means, computed once per process for a given classifier."""
    key = (classifier.digests["checkpoint"], split.digests["manifest"], settings.dataset.path.as_posix())
    if key not in _MEANS:
        embed = Embedder(classifier["checkpoint"])
        _MEANS.clear()
        _MEANS[key] = (embed, target_means(embed, settings, split))
    return _MEANS[key]


@cached_task(name="generate-shard")
def generate_shard(settings: Settings, edits: list[Edit], model_identity: str, dataset_md5: str, split: Outputs,
                   classifier: Outputs | None, out_dir: Path) -> Outputs:
    """One shard of a selection: the unit a task runner (threads, Dask workers) schedules.

    Keyed by its edits, the generator's weights digest and the dataset digest; within a
    worker process the engine and Ada's class means are loaded once for all its shards.
    """
    g = settings.generator
    engine = _shared_engine(settings.generator_model, g.device, g.dtype, g.steps, g.guidance, model_identity)
    make = generator_for(settings, engine, out_dir, split, classifier)
    stats = make.run(edits, progress=False)
    keys = [key if (out_dir / f"{key}.png").exists() else None for key in map(make.key, edits)]
    made = {key: e for key, e in zip(keys, edits) if key}
    info = stats | {"keys": keys, "labels": {k: e.label for k, e in made.items()}, "sources": {k: e.source_class for k, e in made.items()}}
    return Outputs.of(info, **{key: out_dir / f"{key}.png" for key in made})


@task(name="judge-generator")
def judge_generator(settings: Settings, split: Outputs, classifier: Outputs, out_dir: Path,
                    samples_per_class: int = 20, pairs: int = 100, ratios: tuple[float, ...] = (0.3, 0.5, 0.8)) -> dict:
    """Label consistency judged by a classifier trained only on real images.

    txt2img: share of samples judged as the prompted class. GeNIe: for `pairs` random
    (source, target) pairs, share judged as the target (and as the source) at each r.
    """
    classes = split.info["classes"]
    manifest = read_manifest(split["manifest"])
    engine = make_engine(settings)

    def judged(made: Generator, edits: list[Edit]) -> tuple[np.ndarray, list[Edit]]:
        """The judge's labels for the edits that were kept (a safety checker may drop some)."""
        kept = [e for e in edits if (made.out_dir / f"{made.key(e)}.png").exists()]
        probabilities, names = classify(classifier["checkpoint"], [made.out_dir / f"{made.key(e)}.png" for e in kept])
        return np.asarray(names)[probabilities.argmax(1)], kept

    metrics: dict[str, float] = {}
    samples = Generator(engine, out_dir / "txt2img", settings.prompt, settings.generator.batch_size)
    edits = select_edits(manifest, settings.dataset.path, classes, "txt2img", samples_per_class, None,
                         settings.generator.seed)
    samples.run(edits, progress=False)
    labels, kept = judged(samples, edits)
    metrics["txt2img.label_accuracy"] = float((labels == [e.target for e in kept]).mean())

    rng = np.random.default_rng(settings.generator.seed)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    chosen = []
    for i in rng.choice(len(train), size=pairs, replace=len(train) < pairs):
        source = train.iloc[i]
        target = rng.choice([c for c in classes if c != source["label"]])
        chosen.append((str(Path(settings.dataset.path) / source["path"]), source["label"], str(target)))
    edits_folder = Generator(engine, out_dir / "genie", settings.prompt, settings.generator.batch_size)
    for r in ratios:
        edits = [Edit.make(s, sc, t, "genie", r, settings.generator.seed) for s, sc, t in chosen]
        edits_folder.run(edits, progress=False)
        labels, kept = judged(edits_folder, edits)
        metrics[f"genie.target_share.r{r}"] = float((labels == [e.target for e in kept]).mean())
        metrics[f"genie.source_share.r{r}"] = float((labels == [e.source_class for e in kept]).mean())
    get_run_logger().info("generator quality: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return metrics
