"""The benchmarks' replicates: once per generator seed, its own settings (folder, seeds, a long tail where the
benchmark draws one), the data prepared and the replicate's own embedded generator trained before it runs."""
from __future__ import annotations

from pathlib import Path

from flows.stages import StepLog, prepare, train_generator
from models.benchmarks.results import benchmark_dir
from models.config import Settings
from models.digests import model_identity
from tasks.caching import Outputs
from tasks.data import DataVersion


def replicate(settings: Settings, seed: int) -> Settings:
    """Benchmark replicate `seed`, in benchmark/seed-<seed>/: the whole train split (a long tail, when the
    night has one, would leave classes with fewer images than an episode needs; the long-tail benchmark
    draws its own), with the embedded generator and every classifier trained from `seed`."""
    data = settings.model_dump()
    data["dataset"]["long_tail"]["imbalance_ratio"] = None
    data["generator"]["embedded"]["seed"] = seed
    data["classifier"]["seed"] = seed
    data["paths"]["artifacts"] = benchmark_dir(settings) / f"seed-{seed}"
    return Settings.model_validate(data)


def long_tail_settings(replicate: Settings, seed: int) -> Settings:
    """A benchmark replicate with a long-tailed train split drawn with its seed, its generator and its own
    artifact folder."""
    cfg = replicate.benchmark.long_tail
    data = replicate.model_dump()
    data["dataset"]["long_tail"] = {"imbalance_ratio": cfg.imbalance_ratio, "seed": seed}
    data["generator"]["model"] = replicate.generator_model
    data["select"] |= {"targets": "tail", "per_target": cfg.per_target}
    data["paths"]["artifacts"] = replicate.workdir / "long-tail"
    return Settings.model_validate(data)


def replicate_generator(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog) -> None:
    """A benchmark replicate's own embedded generator, trained (cached) into its folder and never registered:
    the night's `current` generator stays. A configured generator.model is used as it is."""
    if not settings.generator.model:
        train_generator(settings, data, split, step_log, Path(settings.generator_model))


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
