"""Edit steps: hard negatives made in cached shards, one engine per process, Ada's class means."""
from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from prefect import task

from models.classifier import Embedder
from models.config import RuntimeConfig, Settings
from models.dataset import load_rgb, read_manifest, subset
from models.determinism import pin_runtime
from models.edit_folder import sync
from models.editing import Edit, EditRunner
from models.engine import Engine
from models.locks import partial_path
from tasks.caching import Outputs, cached_task, code_digest, digest


def make_engine(settings: Settings) -> Engine:
    g = settings.generator
    return Engine(settings.generator_model, g.device, g.dtype, g.steps, g.guidance, g.allow_pickle, g.compile)


@lru_cache(maxsize=1)  # keyed by the weights digest too, so retrained weights at the same path reload
def _shared_engine(model: str, device: str, dtype: str, steps: int, guidance: float, allow_pickle: bool,
                   compile: bool, identity: str) -> Engine:
    return Engine(model, device, dtype, steps, guidance, allow_pickle, compile)


def target_means(embed: Embedder, settings: Settings, split: Outputs) -> dict[str, np.ndarray]:
    """Mean embedding of each class's real train images (GeNIe-Ada's target direction).

    Embedded 256 images at a time into per-class sums and counts: memory does not grow with the data."""
    classes = split.info["classes"]
    paths, labels = subset(read_manifest(split["manifest"]), settings.dataset.path, "train", classes)
    labels = np.asarray(labels, dtype=int)
    sums = None
    for i in range(0, len(paths), 256):
        z = embed([load_rgb(p) for p in paths[i : i + 256]])
        sums = np.zeros((len(classes), z.shape[1])) if sums is None else sums
        np.add.at(sums, labels[i : i + 256], z)  # float64 sums: the float32 means np.mean gave, to rounding
    if sums is None:
        return {}
    counts = np.bincount(labels, minlength=len(classes))
    return {label: (sums[i] / counts[i]).astype(z.dtype) for i, label in enumerate(classes)}


_MEANS: dict[tuple, tuple] = {}


def ada_features(settings: Settings, split: Outputs, extractor: Outputs):
    """Ada's feature extractor and class means: the means embedded once for a given extractor, split and code,
    then read from a file beside the checkpoint by every other process (each Dask worker); kept in memory."""
    key = (extractor.digests["checkpoint"], split.digests["manifest"], split.info.get("dataset_md5"),
           settings.dataset.path.as_posix(), code_digest(__name__))
    if key not in _MEANS:
        embed = Embedder(extractor["checkpoint"], device="auto")  # the GPU where there is one
        saved = Path(extractor["checkpoint"]).parent / f"ada_means-{digest(*key)[:16]}.npz"
        try:
            with np.load(saved, allow_pickle=False) as file:
                means = dict(zip(file["classes"].tolist(), file["means"]))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):  # absent or unreadable: embed
            means = target_means(embed, settings, split)
            partial = partial_path(saved)
            try:  # whole or absent for the other processes; a read-only model folder costs each its embedding
                with open(partial, "wb") as handle:  # a handle: given a path, numpy would add a suffix
                    np.savez(handle, classes=np.array(list(means), dtype=str), means=np.array(list(means.values())))
                partial.replace(saved)
            except OSError:
                partial.unlink(missing_ok=True)
        _MEANS.clear()
        _MEANS[key] = (embed, means)
    return _MEANS[key]


def edit_runner(settings: Settings, engine: Engine, out_dir: Path, split: Outputs,
                extractor: Outputs | None) -> EditRunner:
    """An EditRunner into out_dir; with an extractor (a trained classifier), its features serve GeNIe-Ada."""
    embed, means = ada_features(settings, split, extractor) if extractor is not None else (None, None)
    return EditRunner(engine, out_dir, settings.prompt, settings.generator.batch_size, settings.genie.ada_ratios,
                      embed, means, settings.genie.ada_mode, settings.genie.ada_probe_steps)


@cached_task(name="generate-shard")
def generate_shard(settings: Settings, edits: list[Edit], model_identity: str, dataset_md5: str, split: Outputs,
                   extractor: Outputs | None, out_dir: Path, runtime: RuntimeConfig | None = None) -> Outputs:
    """One shard of a selection: the unit a task runner (threads, Dask workers) schedules.

    Keyed by its edits, the generator's weights digest and the dataset digest; within a
    worker process the engine and Ada's class means are loaded once for all its shards. `runtime` pins a
    worker's threads and kernels (each edit's noise comes from its own seed).
    """
    if runtime is not None:
        pin_runtime(runtime)
    g = settings.generator
    engine = _shared_engine(settings.generator_model, g.device, g.dtype, g.steps, g.guidance, g.allow_pickle,
                            g.compile, model_identity)
    runner = edit_runner(settings, engine, out_dir, split, extractor)
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
