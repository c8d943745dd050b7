"""params.yaml read: the file, an embedded dataset's preset, `--set KEY=VALUE` overrides, validated by the schema
(models.config), then the names the schema cannot know checked against the method registry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models import methods
from models.config import ConfigError, Settings
from models.methods.genie_ada import MODES


def parse_override(text: str) -> tuple[list[str], Any]:
    """`classifier.epochs=3` -> (['classifier', 'epochs'], 3); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. classifier.epochs=3")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({err.problem})") from None
    return key.strip().split("."), value


PRESETS: dict[str, dict[str, Any]] = {  # `dataset: NAME` (or --set dataset=NAME): an embedded dataset's settings
    "digits": {"dataset": {"name": "digits", "path": "data/digits"}},
    # shapes whose train split stands on "their" backgrounds: balanced classes, so the benchmark's "tail" is every class
    "scenes": {"dataset": {"name": "scenes", "path": "data/scenes", "long_tail": {"imbalance_ratio": None}},
               "benchmark.long_tail.imbalance_ratio": 1, "benchmark.long_tail.sweep": True},
}


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    if keys == ["dataset"] and isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(f"dataset: {value!r} is not an embedded dataset ({', '.join(PRESETS)}); "
                              "give a section for your own")
        for key, setting in PRESETS[value].items():
            apply_override(data, key.split("."), setting)
        return
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def load_settings(path: Path | str = "params.yaml", overrides: list[str] = ()) -> Settings:
    """Read params.yaml (defaults if absent), apply `KEY=VALUE` overrides, validate."""
    path = Path(path)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        if isinstance(data.get("dataset"), str):
            apply_override(data, ["dataset"], data["dataset"])
    for text in overrides:
        apply_override(data, *parse_override(text))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in first and not isinstance(first["input"], dict):
            reason += f" (got {first['input']!r})"
        raise ConfigError(f"{path}: {key}: {reason}") from None
    return with_methods(settings, path)


def few_shot_variants() -> tuple[str, ...]:
    """What the few-shot benchmark can run: no extra image, augmented views, every method, fast Ada."""
    return ("none", "traditional", *methods.names(), "genie-ada-fast")


def long_tail_variants() -> tuple[str, ...]:
    """What the long-tail benchmark can run: real images only, every method, each with the real-data judge's filter."""
    return ("real", *methods.names(), *(f"{m}+filter" for m in methods.names()))


def _known(path: Path, key: str, names: tuple[str, ...], known: tuple[str, ...], what: str = "method") -> tuple[str, ...]:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"{path}: {key}: unknown {what} {unknown[0]!r} (choose from {', '.join(known)})")
    return names


def with_methods(settings: Settings, path: Path | str = "params.yaml") -> Settings:
    """The method names and GeNIe-Ada's mode checked against the registry, and the benchmarks' empty method lists
    filled with every variant registered now."""
    path = Path(path)
    _known(path, "select.method", (settings.select.method,), tuple(methods.names()))
    _known(path, "genie.ada_mode", (settings.genie.ada_mode,), MODES, "mode")
    few_shot, long_tail = settings.benchmark.few_shot, settings.benchmark.long_tail
    few_shot = few_shot.model_copy(update={"methods": _known(
        path, "benchmark.few_shot.methods", few_shot.methods or few_shot_variants(), few_shot_variants())})
    long_tail = long_tail.model_copy(update={"methods": _known(
        path, "benchmark.long_tail.methods", long_tail.methods or ("real", *methods.names(), "genie-ada+filter"),
        long_tail_variants())})
    return settings.model_copy(update={"benchmark": settings.benchmark.model_copy(
        update={"few_shot": few_shot, "long_tail": long_tail})})


# What a scheduled night's parameters may change: what the night learns. Where it connects (runner, dvc), what it
# loads (generator.model, allow_pickle, pretrained weights), where it reads and writes (dataset.path, paths), whom it
# tells (notify) and what it keeps or promotes (retention, promote) come only from the worker's own params file.
LEARNING = ("classifier.", "finetune.", "select.", "genie.", "evaluate.", "generator.steps", "generator.guidance",
            "generator.batch_size", "generator.seed", "generator.prompt", "generator.class_names.",
            "generator.embedded.", "generator.adapt", "generator.retrain.")
NOT_LEARNING = ("classifier.pretrained",)  # weights from a hub


DEPLOY_TIME = ("notify.", "schedule.")  # read once where the deployment is made (its automations, its cron)


def night_overrides(overrides: list[str], params: str, project: Path) -> list[str]:
    """What `genie deploy` / `genie serve` hand each night of `overrides`: what a night learns. Deploy-time ones
    (notify, schedule) serve the deployment itself; anything else stops with one line naming the key."""
    passed = [text for text in overrides if not text.partition("=")[0].strip().startswith(DEPLOY_TIME)]
    refused = refused_parameters(params, passed, project)
    if refused:
        raise ConfigError(f"--set: {refused}")
    return passed


def refused_parameters(params: str, overrides: list[str], project: Path) -> str | None:
    """Why a flow run's `params` and `overrides` must not run on this worker (one line naming the file or key),
    or None. `params` must be a file inside the project."""
    root = project.resolve()
    if not (root / params).resolve().is_relative_to(root):
        return f"params {params}: not a file inside the project {root}"
    for text in overrides:
        key = text.partition("=")[0].strip()
        if not key.startswith(LEARNING) or key.startswith(NOT_LEARNING):
            return (f"override {key}: a scheduled night may change only what it learns (classifier, finetune, "
                    "select, genie, evaluate, the generator's recipe); where it connects, what it loads and where "
                    "it writes come from the worker's params file")
    return None
