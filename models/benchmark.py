"""Generation throughput: images per second and UNet evaluations per kept image, per method."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from models.engine import Engine
from models.generation import Edit, Generator


def bench_methods(engine: Engine, sources: list[Path], targets: list[str], prompt, embed=None, target_means=None,
                  ada_ratios=(0.5, 0.6, 0.7, 0.8, 0.9), batch_size: int = 32, methods=("genie", "img2img", "txt2img", "genie-ada")) -> list[dict]:
    """Run each method on the same sources into a throw-away folder (nothing cached between methods)."""
    rows = []
    for method in methods:
        if method == "genie-ada" and embed is None:
            continue
        ratio = {"genie": 0.8, "img2img": 0.3}.get(method)
        edits = [Edit("" if method == "txt2img" else str(s), s.parent.name, t, method, ratio, i)
                 for i, (s, t) in enumerate(zip(sources, targets))]
        with tempfile.TemporaryDirectory() as out:
            make = Generator(engine, Path(out), prompt, batch_size, ada_ratios, embed, target_means)
            _sync()
            stats = make.run(edits, progress=False)
            _sync()
        rows.append({"method": method, "images": stats["generated"], "batch": batch_size,
                     "images_per_second": stats["images_per_second"],
                     "unet_evals_per_image": stats["unet_evals_per_image"]})
    return rows


def bench_reference(engine: Engine, sources: list[Path], targets: list[str], prompt, ratio: float = 0.8) -> dict:
    """The reference way of working: one pipeline call per image, batch 1."""
    _sync()
    start = time.monotonic()
    for i, (source, target) in enumerate(zip(sources, targets)):
        engine.edit([Image.open(source)], [prompt(target)], ratio, [i])
    _sync()
    seconds = time.monotonic() - start
    return {"method": "genie (reference: batch 1)", "images": len(sources), "batch": 1,
            "images_per_second": len(sources) / seconds, "unet_evals_per_image": 2 * int(engine.steps * ratio)}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
