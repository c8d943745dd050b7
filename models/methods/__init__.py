"""Generation methods, one module each, registered by name (in the manner of timm's `register_model`).

A method declares where its sources come from, how it treats the noise ratio, what its images' content key
adds, and how it makes a batch of images on the engine. Everything that lists methods (the configuration, the
CLI, the runner, the benchmarks, the report) reads this registry: a new method is a new module here."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, ClassVar, Protocol, Sequence

# The registry points only down: it imports nothing of the project. What a method reads is spelt here as protocols,
# which the project's classes (models.config.GenieConfig, models.editing's Edit and EditRunner) meet as they are.
Made = tuple[Any, "float | None", list, int]  # image (None: dropped), the r used, Ada's scores, UNet evaluations


class Ratios(Protocol):
    """The configured noise ratios (genie in params.yaml)."""

    noise_ratio: float
    ada_ratios: Sequence[float]
    img2img_ratios: Sequence[float]


class Edit(Protocol):
    """One image to make: its label (the class prompted) and its seed."""

    label: str
    seed: int


class Runner(Protocol):
    """What a method makes its images with: the engine (models.engine.Engine), each label's prompt, the edits' source
    images, and GeNIe-Ada's state (models.methods.genie_ada.Ada)."""

    engine: Any
    ada: Any
    prompt: Callable[[str], str]

    def sources(self, edits: Sequence[Edit]) -> list: ...


class Method:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `--help`
    source: ClassVar[str] = "other"  # other: another class's image made the target's (a hard negative);
    #                                  own: a class's image made again as itself; none: from noise, no source
    ratio: ClassVar[str] = "given"  # given: runs at a noise ratio r; chosen: picks r per image; none: no r
    needs_extractor: ClassVar[bool] = False  # reads the classifier's features (GeNIe-Ada)
    internal: ClassVar[bool] = False  # a step of another method: not offered to users

    def default_ratio(self, genie: Ratios) -> float | None:
        """The r it runs at unless one is given."""
        return None

    def ratios(self, genie: Ratios, sweep: bool = False) -> tuple[float | None, ...]:
        """The r values a benchmark compares it at (`sweep`: every GeNIe-Ada candidate, where that applies)."""
        return (self.default_ratio(genie),)

    def key_fields(self, runner: Runner) -> dict:
        """What else decides its images, beyond the source, label, r, seed, model, sampler and prompt."""
        return {}

    def make(self, runner: Runner, edits: Sequence[Edit], ratio: float | None) -> list[Made]:
        raise NotImplementedError


_REGISTRY: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def names(internal: bool = False) -> list[str]:
    """The methods users can ask for (with `internal`, the steps too): the simpler alternatives first (a class's
    own images, then noise), then the hard negatives (at a given r, then at a chosen one)."""
    order = sorted(_REGISTRY.values(), key=lambda m: (("own", "none", "other").index(m.source),
                                                      ("none", "given", "chosen").index(m.ratio)))
    return [method.name for method in order if internal or not method.internal]


def get(name: str, internal: bool = False) -> Method:
    """The method called `name`; an unknown or internal one is a one-line error naming the valid methods."""
    method = _REGISTRY.get(name)
    if method is None or (method.internal and not internal):
        raise ValueError(f"unknown method {name!r} (choose from {', '.join(names())})")
    return method


for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_module.name}")
