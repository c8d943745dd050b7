"""One process's bytes: train a tiny classifier and embedded generator, save them, make two GeNIe edits
with the saved generator, print the sha256 of every file written (and the torch threads it ran with).

    python -m tests.models.reproduce DIGITS OUT SEED
"""
import hashlib
import json
import sys
from pathlib import Path

import torch

from models.classifier import save_checkpoint, train
from models.config import ClassifierConfig, DatasetConfig, RuntimeConfig
from models.dataset import load_rgb, scan_imagefolder, split_images, subset
from models.engine import Engine
from tests.models.tiny_ldm import PROMPTS, train_tiny

RUNTIME = RuntimeConfig(threads=1)


def tiny_classifier(digits: Path, seed: int, epochs: int = 1) -> tuple[torch.nn.Module, list[str]]:
    """A tiny classifier on four images per class and split, with crops, trained quietly."""
    scan = scan_imagefolder(digits)
    manifest = split_images(scan.images, DatasetConfig(path=digits)).groupby(["label", "split"]).head(4)
    cfg = ClassifierConfig(model="test_resnet", epochs=epochs, seed=seed)
    trained = train(subset(manifest, digits, "train", scan.classes), subset(manifest, digits, "val", scan.classes),
                    len(scan.classes), 32, cfg, False, runtime=RUNTIME)
    return trained.model, scan.classes


def make(digits: Path, out: Path, seed: int) -> None:
    model, classes = tiny_classifier(digits, seed)
    save_checkpoint(out / "classifier.pt", model, "test_resnet", classes, 32)

    generator, paths = train_tiny(digits, out / "generator", per_class=8, seed=seed, runtime=RUNTIME)
    engine = Engine(str(generator), device="cpu", dtype="float32", steps=5)
    edits = engine.edit([load_rgb(paths[0]), load_rgb(paths[8])], [PROMPTS[1], PROMPTS[2]], 0.8, [0, 1])
    for i, image in enumerate(edits.images):
        image.save(out / f"edit-{i}.png")


def digests(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


if __name__ == "__main__":
    digits, out, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    make(digits, out, seed)
    print(json.dumps({"threads": torch.get_num_threads(), "files": digests(out)}))
