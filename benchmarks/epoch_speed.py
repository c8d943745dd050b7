"""How fast the classifier trains on a device: one epoch of `models.classifier.train` over random RGB PNGs
(seeded, so every run sees the same pixels) in a temporary ImageFolder. Prints torch's build and devices,
then one line: images per second of the whole call (model build, data loading, the epoch and a val pass
over one batch). The first epoch on CUDA includes its warm-up (kernel choice, worker start).

    python benchmarks/epoch_speed.py --device cpu --images 512
    python benchmarks/epoch_speed.py --device cuda             # bf16 autocast, channels-last, workers
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.classifier import loader_settings, resolve_device, train
from models.config import ClassifierConfig

CLASSES = 10


def random_imagefolder(root: Path, images: int, size: int, seed: int = 0) -> list[tuple[Path, int]]:
    """`images` random RGB PNGs, spread over CLASSES class folders."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(images):
        label = i % CLASSES
        path = root / str(label) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        files.append((path, label))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train; auto: cuda when present (default: %(default)s)")
    parser.add_argument("--images", type=int, default=2048, help="training images in the epoch (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--model", default="resnet10t", help="any timm model name (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes (default: 0 on cpu, min(8, cores) on cuda)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no CUDA device")

    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores; "
          f"cuda {torch.version.cuda} available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(device)}, bf16: {torch.cuda.is_bf16_supported()})"
             if device.type == "cuda" else ""), flush=True)
    workers = loader_settings(device, args.workers)["num_workers"]
    cfg = ClassifierConfig(model=args.model, epochs=1, warmup_epochs=0, batch_size=args.batch_size,
                           device=args.device, workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="genie-epoch-speed-") as tmp:
        files = random_imagefolder(Path(tmp), args.images, args.size)
        paths, labels = [p for p, _ in files], [label for _, label in files]
        val = (paths[: args.batch_size], labels[: args.batch_size])
        start = time.monotonic()
        trained = train((paths, labels), val, CLASSES, args.size, cfg, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.monotonic() - start
    loss = trained.history[-1]["train_loss"]
    print(f"device {device.type}: {args.images} images in {seconds:.1f} s = {args.images / seconds:.0f} images/s "
          f"({args.model}, {args.size} px, batch {args.batch_size}, workers {workers}; loss {loss:.3f})")


if __name__ == "__main__":
    main()
