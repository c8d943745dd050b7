"""Hard-negative generation: edits named by content keys, made in batches into an edit folder."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from models import methods
from models.dataset import load_rgb, seeded_rank
from models.digests import file_digest
from models.edit_folder import append, image_file, place, stage_image
from models.edit_folder import edits as folder_edits
from models.engine import Engine, EngineError
from models.methods.genie_ada import Ada


@dataclass(frozen=True)
class Edit:
    """One image to make: its label's semantics on the source's features (or drawn from noise)."""

    source: str  # path of the source image
    source_class: str
    label: str  # what the image shows, so its class: the target prompted (for img2img, the source's own class)
    method: str  # a name in models.methods
    ratio: float | None  # None where the method takes no given r (it picks r*, or draws from noise)
    seed: int

    @classmethod
    def make(cls, source: str, source_class: str, target: str, method: str, ratio: float | None,
             base_seed: int) -> Edit:
        """`source` edited towards `target` by `method` (a method on a class's own images keeps the source's
        class). The seed follows the source and the label, so a pair gets the same noise whatever else is asked."""
        kind = methods.get(method, internal=True)
        label = source_class if kind.source == "own" else target
        seed = edit_seed(base_seed, source, label)
        if kind.source == "none":
            return cls("", "", label, method, None, seed)
        return cls(source, source_class, label, method, ratio if kind.ratio == "given" else None, seed)


def replicas(sources: list[str], label: str, n: int, method: str, ratio: float | None, seed: int) -> list[Edit]:
    """n edits of a class's own images (Img2Img augmentation): the images taken in turn, a fresh
    seed on every pass, so a class with one image still gets n different edits."""
    return [Edit.make(sources[j % len(sources)], label, label, method, ratio, seed + j // len(sources))
            for j in range(n)]


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(source image, target class) pairs from a CSV with columns source,target."""
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise ValueError(f"--pairs {path}: {err.strerror}") from None
    if not rows or not {"source", "target"} <= set(rows[0]):
        raise ValueError(f"--pairs {path}: needs a header with columns source,target and at least one row")
    return [(row["source"], row["target"]) for row in rows]


def edits_from_pairs(pairs: list[tuple[str, str]], classes: list[str], method: str, ratio: float | None,
               seed: int) -> list[Edit]:
    """Explicit (source image, target class) pairs as edits; the source's class is its folder's name."""
    edits = []
    for source, target in pairs:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"source image {source} not found")
        if target not in classes:
            raise ValueError(f"unknown class {target!r} (classes: {', '.join(classes)})")
        edits.append(Edit.make(path.as_posix(), path.parent.name, target, method, ratio, seed))
    return edits


def edits_from_selection(selection: pd.DataFrame, method: str, ratio: float | None, seed: int) -> list[Edit]:
    """The edits a selection asks for: each (source, target) row by `method` at `ratio`."""
    return [Edit.make(row.source, row.source_class, row.target, method, ratio, seed)
            for row in selection.itertuples(index=False)]


def edit_seed(base: int, source: str, target: str) -> int:
    return int(hashlib.sha256(f"{base}:{source}:{target}".encode()).hexdigest()[:8], 16)


def select_edits(manifest: pd.DataFrame, root: Path, classes: list[str], method: str, per_class: int,
                 ratio: float | None, seed: int, targets: list[str] | None = None) -> list[Edit]:
    """A per-class budget: for each target class, `per_class` sources drawn from the other classes'
    train images (a method on a class's own images keeps the source's class; one from noise needs no source)."""
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    edits = []
    for target in targets or classes:
        if methods.get(method, internal=True).source == "none":
            edits += [Edit.make(f"{method}/{i}", "", target, method, None, seed) for i in range(per_class)]
            continue
        pool = train[train["label"] != target]
        # a larger budget keeps the smaller one's sources, so a re-run only adds
        order = sorted(pool.index, key=lambda i: seeded_rank(f"{seed}:{target}", pool.at[i, "path"]))
        for _, row in pool.loc[order[:per_class]].iterrows():
            edits.append(Edit.make(str(Path(root) / row["path"]), row["label"], target, method, ratio, seed))
    return edits


def content_key(edit: Edit, source_digest: str, settings: dict) -> str:
    """Hash of everything that decides the image: source bytes, label, method, r, model, sampler, seed."""
    parts = {**asdict(edit), "source": source_digest, **settings}
    parts["target"] = parts.pop("label")  # the name when the first images were keyed: they stay valid
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class EditRunner:
    """Runs edits through an Engine into one folder; keys already there are never made again."""

    def __init__(self, engine: Engine, out_dir: Path, prompt: Callable[[str], str], batch_size: int = 32,
                 ada: Ada | None = None):
        self.engine, self.out_dir, self.prompt, self.batch_size = engine, Path(out_dir), prompt, batch_size
        self.ada = ada or Ada()  # GeNIe-Ada's candidates, extractor and mode; only its methods read it
        self.sampler = {"model": engine.identity, "steps": engine.steps, "guidance": engine.guidance}

    def key(self, edit: Edit) -> str:
        method = methods.get(edit.method, internal=True)
        settings = {**self.sampler, "prompt": self.prompt(edit.label), **method.key_fields(self)}
        source = file_digest(edit.source) if method.source != "none" else edit.source
        return content_key(edit, source, settings)

    def sources(self, edits: list[Edit]) -> list[Image.Image]:
        return [load_rgb(e.source) for e in edits]

    def manifest(self) -> pd.DataFrame:
        """One row per image in the folder (models.edit_folder.edits)."""
        return folder_edits(self.out_dir)

    def image(self, key: str) -> Path:
        return self.out_dir / image_file(key)

    def made(self, key: str) -> bool:
        return self.image(key).is_file()

    def run(self, edits: list[Edit], progress: bool = True) -> dict:
        """Make every edit not yet made; return counts and throughput."""
        for edit in edits:
            try:
                method = methods.get(edit.method, internal=True)
            except ValueError as err:
                raise EngineError(str(err)) from None
            if edit.ratio is not None and not 0 < edit.ratio <= 1:
                raise EngineError(f"noise ratio {edit.ratio} outside (0, 1]")
            if method.needs_extractor and not self.ada.can_score(edit.label):
                raise EngineError(f"{edit.method} needs a feature extractor and real images of class {edit.label}")
        for source in sorted({e.source for e in edits if methods.get(e.method, internal=True).source != "none"}):
            try:
                with Image.open(source) as image:
                    image.load()
            except (OSError, SyntaxError, ValueError) as err:
                raise EngineError(f"source image {source}: unreadable ({err})") from None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        keyed = [(self.key(e), e) for e in edits]
        todo = list({k: e for k, e in keyed if not self.made(k)}.items())  # a look per edit, not at the folder
        stats = {"requested": len(edits), "existing": len(edits) - len(todo), "generated": 0, "dropped": 0,
                 "unet_evals": 0, "seconds": 0.0}
        start = time.monotonic()
        bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not progress)
        groups: dict[tuple, list] = {}
        for key, edit in todo:
            groups.setdefault((edit.method, edit.ratio), []).append((key, edit))
        for (method, ratio), items in groups.items():
            for i in range(0, len(items), self.batch_size):
                batch = items[i : i + self.batch_size]
                began = time.monotonic()
                made = methods.get(method, internal=True).make(self, [e for _, e in batch], ratio)
                seconds = (time.monotonic() - began) / len(batch)
                rows, staged = [], []
                for (key, edit), (image, chosen, scores, evals) in zip(batch, made):
                    stats["unet_evals"] += evals
                    if image is None:
                        stats["dropped"] += 1
                        continue
                    rows.append({"key": key, "file": image_file(key), "source": edit.source,
                                 "source_class": edit.source_class, "target": edit.label, "label": edit.label,
                                 "method": method, "ratio": chosen, "ada_scores": json.dumps(scores),
                                 "seed": edit.seed, "model": self.engine.model, "unet_evals": evals,
                                 "seconds": round(seconds, 5), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
                    staged.append(stage_image(self.out_dir, image, rows[-1]))
                    stats["generated"] += 1
                append(self.out_dir, rows)  # the rows before the images: a listed image always has its row
                for partial, row in zip(staged, rows):
                    place(self.out_dir, partial, row)
                bar.update(len(batch))
                bar.set_postfix(img_per_s=f"{stats['generated'] / max(1e-9, time.monotonic() - start):.1f}")
        bar.close()
        stats["seconds"] = time.monotonic() - start
        stats["images_per_second"] = stats["generated"] / stats["seconds"] if stats["seconds"] else 0.0
        stats["unet_evals_per_image"] = stats["unet_evals"] / stats["generated"] if stats["generated"] else 0.0
        return stats
