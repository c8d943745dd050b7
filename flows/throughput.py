"""`genie benchmark generate`: throughput figures for the engine (a benchmark, not a test)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow

from flows.stages import StepLog, ensure_generator, one_writer, prepare, train_baseline
from models import methods
from models.architectures import sd15_pipeline
from models.benchmarks.throughput import bench_methods, bench_reference, next_class_pairs
from models.config import Settings
from models.dataset import read_manifest
from models.embedded_ldm import prompt_words
from tasks.editing import ada_features, make_engine


@flow(name="genie-benchmark-generate")
@one_writer
def genie_benchmark_generate(settings: Settings, arch: str = "embedded", resolution: int = 512, images: int = 64,
                             reference: bool = True) -> list[dict]:
    """Each method on the same train images (target: the next class); with `reference`, batch-1 GeNIe too."""
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    classes = split.info["classes"]
    sources, targets = next_class_pairs(read_manifest(split["manifest"]), settings.dataset.path, classes, images)
    g = settings.generator
    with tempfile.TemporaryDirectory() as folder:
        if arch == "embedded":
            ensure_generator(settings, data, split, step_log)
            classifier = train_baseline(settings, data, split, step_log)
            engine = make_engine(g, settings.generator_model)
            embed, means = ada_features(settings.dataset.path, split, classifier)
            rows = bench_methods(engine, sources, targets, settings.prompt, settings.genie, embed, means, g.batch_size)
        else:
            words = prompt_words([settings.prompt(c) for c in classes])
            sd15_pipeline("full" if arch == "sd15" else "tiny", resolution, words, Path(folder) / "tok").save_pretrained(
                Path(folder) / "model")
            engine = make_engine(g, str(Path(folder) / "model"))
            rows = bench_methods(engine, sources, targets, settings.prompt, settings.genie, batch_size=g.batch_size)
        if reference:
            rows.append(bench_reference(engine, sources, targets, settings.prompt,
                                        methods.get("genie").default_ratio(settings.genie)))
    device = f"{engine.device.type} {str(engine.dtype).removeprefix('torch.')}"
    return [row | {"device": device} for row in rows]
