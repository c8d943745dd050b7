"""Generation throughput: images per second and UNet evaluations per kept image, per method."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from models import methods
from models.config import GenieConfig
from models.editing import Edit, EditRunner
from models.engine import Engine
from models.methods.genie_ada import Ada


def next_class_pairs(manifest: pd.DataFrame, root: Path, classes: list[str], images: int) -> tuple[list[Path], list[str]]:
    """The first `images` train images as sources, each with the next class as its target."""
    train = manifest.query("split == 'train'").head(images)
    return [Path(root) / p for p in train["path"]], [classes[(classes.index(label) + 1) % len(classes)]
                                                      for label in train["label"]]


def bench_methods(engine: Engine, sources: list[Path], targets: list[str], prompt, genie: GenieConfig, embed=None,
                  target_means=None, batch_size: int = 32) -> list[dict]:
    """Run each method, at its configured default ratio, on the same sources into a throw-away folder (those
    that read a classifier's features only when `embed` is given)."""
    rows = []
    for method in methods.names():
        if methods.get(method).needs_extractor and embed is None:
            continue
        ratio = methods.get(method).default_ratio(genie)
        edits = [Edit.make(str(s), s.parent.name, t, method, ratio, 0) for s, t in zip(sources, targets)]
        with tempfile.TemporaryDirectory() as out:
            runner = EditRunner(engine, Path(out), prompt, batch_size, Ada(tuple(genie.ada_ratios), embed, target_means or {}))
            _sync()
            stats = runner.run(edits, progress=False)
            _sync()
        rows.append({"method": method, "ratio": ratio, "images": stats["generated"], "batch": batch_size,
                     "images_per_second": stats["images_per_second"],
                     "unet_evals_per_image": stats["unet_evals_per_image"]})
    return rows


def bench_reference(engine: Engine, sources: list[Path], targets: list[str], prompt, ratio: float) -> dict:
    """The reference way of working: one pipeline call per image, batch 1."""
    _sync()
    start = time.monotonic()
    for i, (source, target) in enumerate(zip(sources, targets)):
        engine.edit([Image.open(source)], [prompt(target)], ratio, [i])
    _sync()
    seconds = time.monotonic() - start
    return {"method": "genie (reference: batch 1)", "ratio": ratio, "images": len(sources), "batch": 1,
            "images_per_second": len(sources) / seconds, "unet_evals_per_image": 2 * int(engine.steps * ratio)}


def speedup(rows: list[dict]) -> float | None:
    """Batched GeNIe's throughput over the reference's, both at the same r."""
    batched = next((r for r in rows if r["method"] == "genie"), None)
    reference = next((r for r in rows if r["method"].startswith("genie (reference")), None)
    if batched is None or reference is None or batched["ratio"] != reference["ratio"]:
        return None
    return batched["images_per_second"] / reference["images_per_second"]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
