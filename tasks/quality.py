"""Judge the generator with a classifier trained only on real images (models.quality); log its figures."""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from models import quality
from models.config import GeneratorConfig
from models.dataset import read_manifest
from tasks.caching import Outputs
from tasks.editing import adapted_prompts, make_engine


@task(name="judge-generator")
def judge_generator(generator: GeneratorConfig, model: str, prompts: dict[str, str], dataset_root: Path,
                    split: Outputs, classifier: Outputs, out_dir: Path,
                    samples_per_class: int = 20, pairs: int = 100, ratios: tuple[float, ...] = (0.3, 0.5, 0.8),
                    adapters: tuple[tuple[str, str], ...] = ()) -> dict:
    """Label consistency judged by a classifier trained only on real images.

    txt2img: share of samples judged as the prompted class. GeNIe: for `pairs` random
    (source, target) pairs, share judged as the target (and as the source) at each r.
    """
    engine = make_engine(generator, model, adapters)
    prompts = adapted_prompts(engine, generator.prompt, prompts)
    metrics = quality.judge_generator(engine, prompts.__getitem__, generator.batch_size,
                                      generator.seed, read_manifest(split["manifest"]), dataset_root, split.info["classes"],
                                      classifier["checkpoint"], out_dir, samples_per_class, pairs, ratios)
    get_run_logger().info("generator quality: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return metrics
