"""Edit steps: hard negatives made in cached shards, one engine per process, Ada's class means embedded once."""
from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task

from models.classifier import Embedder
from models.config import GeneratorConfig, GenieConfig, RuntimeConfig
from models.dataset import load_rgb, read_manifest, subset
from models.determinism import pin_runtime
from models.edit_folder import sync
from models.editing import Edit, EditRunner
from models.engine import Engine
from models.locks import partial_path
from models.methods.genie_ada import Ada, class_means
from tasks.caching import Outputs, cached_task
from tasks.keys import code_digest, digest


def _engine_args(g: GeneratorConfig) -> tuple:
    return g.device, g.dtype, g.steps, g.guidance, g.allow_pickle, g.compile


def make_engine(generator: GeneratorConfig, model: str, adapters: tuple[tuple[str, str], ...] = ()) -> Engine:
    return Engine(model, *_engine_args(generator), adapters=tuple(folder for folder, _ in adapters))


@lru_cache(maxsize=1)  # keyed by the weights' and adapters' digests too, so retrained weights at the same path reload
def _shared_engine(model: str, identity: str, adapters: tuple[tuple[str, str], ...], *engine_args) -> Engine:
    engine = Engine(model, *engine_args, adapters=tuple(folder for folder, _ in adapters))
    for line in engine.refused:  # that class keeps its plain prompt; the rest goes on
        get_run_logger().warning("%s; its class keeps its plain prompt", line)
    return engine


def adapted_prompts(engine: Engine, template: str, prompts: dict[str, str]) -> dict[str, str]:
    """Each class's prompt, naming the class by its learnt token where its adapter loaded."""
    return {label: template.format(name=engine.adapted[label]) if label in engine.adapted else prompt
            for label, prompt in prompts.items()}


def ada_features(dataset_root: Path, split: Outputs, extractor: Outputs):
    """Ada's feature extractor and class means: the means embedded once for a given extractor, split and code,
    then read from a file beside the checkpoint by every other process (each Dask worker); kept in memory."""
    root = Path(dataset_root)
    key = (extractor.digests["checkpoint"], split.digests["manifest"], split.info.get("dataset_md5"), root.as_posix(),
           code_digest(__name__))
    return _ada_features(extractor["checkpoint"], split["manifest"], tuple(split.info["classes"]), root, key)


@lru_cache(maxsize=1)  # one extractor per process at a time: a shard's, then the next night's
def _ada_features(checkpoint: Path, manifest: Path, classes: tuple[str, ...], dataset_root: Path, key: tuple):
    embed = Embedder(checkpoint, device="auto")  # the GPU where there is one
    saved = Path(checkpoint).parent / f"ada_means-{digest(*key)[:16]}.npz"
    try:
        with np.load(saved, allow_pickle=False) as file:
            return embed, dict(zip(file["classes"].tolist(), file["means"]))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):  # absent or unreadable: embed
        pass
    paths, labels = subset(read_manifest(manifest), dataset_root, "train", list(classes))
    means = class_means(embed, paths, labels, list(classes), load_rgb)
    partial = partial_path(saved)
    try:  # whole or absent for the other processes; a read-only model folder costs each its embedding
        with open(partial, "wb") as handle:  # a handle: given a path, numpy would add a suffix
            np.savez(handle, classes=np.array(list(means), dtype=str), means=np.array(list(means.values())))
        partial.replace(saved)
    except OSError:
        partial.unlink(missing_ok=True)
    return embed, means


@cached_task(name="generate-shard")
def generate_shard(generator: GeneratorConfig, genie: GenieConfig, model: str, prompts: dict[str, str],
                   edits: list[Edit], model_identity: str, dataset_root: Path, dataset_md5: str, split: Outputs,
                   extractor: Outputs | None, out_dir: Path, runtime: RuntimeConfig | None = None,
                   adapters: tuple[tuple[str, str], ...] = ()) -> Outputs:
    """One shard of a selection: the unit a task runner (threads, Dask workers) schedules.

    Keyed by its edits, the generator's weights digest and the dataset digest; within a worker process the engine
    and Ada's class means (with an extractor: a trained classifier) are loaded once for all its shards. `runtime`
    pins a worker's threads and kernels (each edit's noise comes from its own seed).
    """
    if runtime is not None:
        pin_runtime(runtime)
    engine = _shared_engine(model, model_identity, tuple(adapters), *_engine_args(generator))
    embed, means = ada_features(dataset_root, split, extractor) if extractor is not None else (None, None)
    prompts = adapted_prompts(engine, generator.prompt, prompts)
    runner = EditRunner(engine, out_dir, prompts.__getitem__, generator.batch_size,
                        Ada(tuple(genie.ada_ratios), embed, means or {}, genie.ada_mode, genie.ada_probe_steps))
    stats = runner.run(edits, progress=False)
    keys = [key if runner.made(key) else None for key in map(runner.key, edits)]
    made = {key: e for key, e in zip(keys, edits) if key}
    info = stats | {"keys": keys, "labels": {k: e.label for k, e in made.items()},
                    "sources": {k: e.source_class for k, e in made.items()}}
    return Outputs.of(info, **{key: runner.image(key) for key in made})


@task(name="sync-manifest")
def sync_manifest(out_dir: Path) -> None:
    """The folder's housekeeping after its writers (models.edit_folder.sync), also when every shard came from the
    cache: what dead writers left moved aside, missing parts rebuilt, small parts merged."""
    sync(out_dir)
