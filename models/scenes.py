"""The embedded scenes: shapes drawn on backgrounds, where in train each shape stands on "its" background most of
the time (a spurious correlation, as in Waterbirds) while val and test put every shape on every background, and so
does the generator's own pool (split "unused").

The context (background) of each image is in the dataset's metadata.csv, with the split it was drawn for, so
the correlation holds whatever the split settings. No shape touches the image's outer BORDER pixels, so
`models.context` can read the background there."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from models.locks import partial_path

SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUNDS = ("water", "grass", "sand", "night")  # shape i's own background is BACKGROUNDS[i]
BASE = {"water": (40, 90, 170), "grass": (50, 135, 45), "sand": (205, 175, 115), "night": (25, 22, 55)}
INKS = ((235, 235, 235), (215, 45, 40), (250, 150, 20), (190, 60, 200), (20, 20, 20), (240, 220, 40))
COUNTS = {"train": 200, "val": 200, "test": 200, "unused": 200}  # images of each shape: 50 a group in val and test
# "unused": every shape on every background, for the embedded generator only (dataset.long_tail.generator_sees_unused),
# standing in for a generator pretrained on broad data, which has seen objects in every context; classifiers never do
CORRELATION = 0.9  # share of a shape's train images on its own background: set on the baseline alone (resnet10t
# from scratch: 73% on average, 8% on its worst group), as Waterbirds' ERM models fall on their worst group
BORDER = 3  # pixels of the edge kept free of shapes: the context is read there
SUPER = 4  # drawn at 4x and reduced: smooth edges, the same bytes everywhere


def background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size x 3 float image of one background kind: a base colour with that kind's texture."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.broadcast_to(np.array(BASE[kind], dtype=float), (size, size, 3)).copy()
    if kind == "water":  # horizontal ripples
        image += 25 * np.sin(2 * np.pi * (4 * y + 0.3 * np.sin(2 * np.pi * x) + rng.uniform()))[..., None]
    elif kind == "grass":  # vertical blades
        image += rng.normal(0, 18, (1, size, 1)) + rng.normal(0, 8, (size, size, 1))
    elif kind == "sand":  # a diagonal dune gradient
        image += (40 * ((x + y) / 2 - 0.5) * rng.choice([-1, 1]))[..., None] + rng.normal(0, 6, (size, size, 1))
    else:  # night: sparse stars
        image[rng.uniform(size=(size, size)) < 0.03] = (230, 230, 200)
    return image


def draw(shape: str, kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of a random size, angle, place and ink (never close to the background's colour)."""
    canvas = Image.fromarray(np.clip(background(kind, size * SUPER, rng), 0, 255).astype(np.uint8))
    inks = [c for c in INKS if np.abs(np.subtract(c, BASE[kind])).sum() > 150]
    ink = inks[rng.integers(len(inks))]
    radius = rng.uniform(0.3, 0.38) * size
    low, high = BORDER + radius, size - BORDER - radius
    cx, cy, angle = rng.uniform(low, high), rng.uniform(low, high), rng.uniform(0, 2 * np.pi)
    pen = ImageDraw.Draw(canvas)
    s = SUPER
    if shape == "circle":
        pen.ellipse([(cx - radius * 0.85) * s, (cy - radius * 0.85) * s, (cx + radius * 0.85) * s,
                     (cy + radius * 0.85) * s], fill=ink)
    else:
        corners = {"square": 4, "triangle": 3}.get(shape)
        if corners:
            points = [(cx + radius * np.cos(angle + 2 * np.pi * i / corners),
                       cy + radius * np.sin(angle + 2 * np.pi * i / corners)) for i in range(corners)]
            pen.polygon([(px * s, py * s) for px, py in points], fill=ink)
        else:  # cross: two bars through the centre
            for turn in (0, np.pi / 2):
                a = angle + turn
                dx, dy, wx, wy = np.cos(a) * radius, np.sin(a) * radius, -np.sin(a) * radius * 0.3, np.cos(a) * radius * 0.3
                bar = [(cx - dx - wx, cy - dy - wy), (cx + dx - wx, cy + dy - wy), (cx + dx + wx, cy + dy + wy),
                       (cx - dx + wx, cy - dy + wy)]
                pen.polygon([(px * s, py * s) for px, py in bar], fill=ink)
    return canvas.resize((size, size), Image.Resampling.BOX)


def plan(seed: int = 0) -> pd.DataFrame:
    """Which image gets which shape, background and split: the train split correlated, val and test uniform."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, shape in enumerate(SHAPES):
        for split, count in COUNTS.items():
            if split == "train":
                own = int(round(count * CORRELATION))
                others = [b for b in BACKGROUNDS if b != BACKGROUNDS[index]]
                kinds = [BACKGROUNDS[index]] * own + [others[i % len(others)] for i in range(count - own)]
            else:
                kinds = [BACKGROUNDS[i % len(BACKGROUNDS)] for i in range(count)]
            rows += [{"label": shape, "context": kind, "split": split} for kind in rng.permutation(kinds)]
    table = pd.DataFrame(rows)
    return table.assign(path=[f"{label}/{i:04d}.png" for i, label in enumerate(table["label"])])


def export_scenes(root: Path, size: int = 32, seed: int = 0) -> int:
    """Write the scenes as an ImageFolder of PNGs with metadata.csv (path, context, split); deterministic bytes,
    written to a temporary folder and renamed, as the digits are."""
    table = plan(seed)
    tmp = partial_path(root)
    for row in table.itertuples():
        image = draw(row.label, row.context, size, np.random.default_rng([seed, int(row.path[-8:-4])]))
        (tmp / row.label).mkdir(parents=True, exist_ok=True)
        image.save(tmp / row.path, format="PNG")
    table[["path", "context", "split"]].to_csv(tmp / "metadata.csv", index=False)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(root)
    except OSError:  # another process exported first: the same bytes
        shutil.rmtree(tmp)
    return len(table)
