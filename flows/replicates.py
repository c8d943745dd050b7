"""The benchmarks' replicates: once per generator seed, the data prepared and the replicate's own
embedded generator trained before its benchmark runs."""
from __future__ import annotations

from pathlib import Path

from flows.stages import StepLog, generator_inputs, prepare
from models.benchmarks.results import replicate
from models.config import Settings
from models.digests import model_identity
from tasks.caching import Outputs, run_verified
from tasks.data import DataVersion
from tasks.generator import train_generator_model


def replicate_generator(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog) -> None:
    """A benchmark replicate's own embedded generator, trained (cached) into its folder and never registered:
    the night's `current` generator stays. A configured generator.model is used as it is."""
    if not settings.generator.model:
        run_verified(train_generator_model, step_log, "train-generator", view=Path(settings.generator_model),
                     settings=generator_inputs(settings), dataset_md5=data.md5, split=split, runtime=settings.runtime)


def over_generator_seeds(settings: Settings, step_log: StepLog, run_one) -> list[dict]:
    """`run_one(replicate, seed, data, split, log)` once per benchmark.generator_seeds, each replicate's data
    prepared and its own generator trained first; each result gains the replicate's settings, data version and
    generator digest, and its steps land in `step_log` as seed-<n>-<step>."""
    runs = []
    for seed in settings.benchmark.generator_seeds:
        settings_of_seed, log = replicate(settings, seed), {}
        data, split = prepare(settings_of_seed, log)
        replicate_generator(settings_of_seed, data, split, log)
        result = run_one(settings_of_seed, seed, data, split, log)
        step_log |= {f"seed-{seed}-{k}": v for k, v in log.items()}
        runs.append(result | {"settings": settings_of_seed, "data": data,
                              "generator": model_identity(settings_of_seed.generator_model)})
    return runs
