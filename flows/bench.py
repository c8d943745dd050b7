"""`genie benchmark generate`: throughput figures for the engine (a benchmark, not a test)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow

from flows.steps import ensure_generator, prepare, train_baseline
from models.architectures import sd15_pipeline
from models.benchmark import bench_methods, bench_reference
from models.config import Settings
from models.dataset import read_manifest
from models.engine import Engine
from tasks.generator import ada_features, make_engine, prompt_words
from tasks.tracking import configure


@flow(name="genie-bench-generate")
def genie_bench_generate(settings: Settings, arch: str = "embedded", resolution: int = 512, images: int = 64,
                         reference: bool = True) -> list[dict]:
    configure()
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    classes = split.info["classes"]
    train = read_manifest(split["manifest"]).query("split == 'train'").head(images)
    sources = [Path(settings.dataset.path) / p for p in train["path"]]
    targets = [classes[(classes.index(label) + 1) % len(classes)] for label in train["label"]]
    g = settings.generator
    if arch == "embedded":
        ensure_generator(settings, data, split, steps)
        classifier = train_baseline(settings, data, split, steps)
        engine = make_engine(settings)
        embed, means = ada_features(settings, split, classifier)
        rows = bench_methods(engine, sources, targets, settings.prompt, embed, means, settings.genie.ada_ratios,
                             g.batch_size)
    else:
        with tempfile.TemporaryDirectory() as folder:
            words = prompt_words([settings.prompt(c) for c in classes])
            sd15_pipeline("full" if arch == "sd15" else "tiny", resolution, words, Path(folder) / "tok").save_pretrained(
                Path(folder) / "model")
            engine = Engine(str(Path(folder) / "model"), g.device, g.dtype, g.steps, g.guidance)
            rows = bench_methods(engine, sources, targets, settings.prompt, batch_size=g.batch_size,
                                 methods=("genie", "img2img", "txt2img"))
    if reference:
        rows.append(bench_reference(engine, sources, targets, settings.prompt, settings.genie.noise_ratio))
        batched = next(r for r in rows if r["method"] == "genie")["images_per_second"]
        rows[-1]["speed-up of batched genie"] = batched / rows[-1]["images_per_second"]
    for row in rows:
        row["device"] = f"{engine.device.type} {str(engine.dtype).removeprefix('torch.')}"
    return rows
