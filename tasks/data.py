"""Data steps: export / version the raw dataset with DVC, validate it, split it once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from models.config import DatasetConfig
from models.dataset import export_digits, read_metadata, scan_imagefolder, split_images
from models.scenes import export_scenes
from tasks.caching import Outputs, cached_task
from tasks.versioning import dvc_md5, track_dataset

EMBEDDED_SIZE = 32  # fixed, so the exported bytes (and data.dvc's md5) are the same everywhere


@dataclass(frozen=True)
class DataVersion:
    path: str
    md5: str  # the dataset's identity: DVC's md5 of dataset.path itself, not of the folder DVC tracks
    pointer: str  # the .dvc file that versions it
    pointer_md5: str = ""  # the md5 that file records (of the whole folder it tracks): what `dvc pull` fetches


EMBEDDED = {Path("data/digits"): export_digits, Path("data/scenes"): export_scenes}  # each at its own place only


@task(name="version-data")
def version_data(cfg: DatasetConfig) -> DataVersion:
    """Export the embedded dataset if asked and absent, then `dvc add` the dataset."""
    logger = get_run_logger()
    if not cfg.path.exists() and cfg.embedded and cfg.path in EMBEDDED:
        count = EMBEDDED[cfg.path](cfg.path, EMBEDDED_SIZE)
        logger.info("exported %d embedded images to %s", count, cfg.path)
    if not cfg.path.is_dir():  # the embedded datasets go only to their own place: a typo is not a new dataset
        hint = "the embedded datasets are exported only to " + " and ".join(map(str, EMBEDDED)) if cfg.embedded \
            else "set dataset.embedded: true for the embedded datasets"
        raise FileNotFoundError(f"dataset.path: folder {cfg.path} not found ({hint})")
    tracked_md5, pointer = track_dataset(cfg.path)
    md5 = dvc_md5(cfg.path)  # another dataset beside it in the tracked folder leaves this unchanged
    logger.info("dataset %s at DVC md5 %s (versioned by %s)", cfg.name, md5, pointer)
    return DataVersion(cfg.path.as_posix(), md5, pointer.as_posix(), tracked_md5)


def validation_cache(out_dir: Path) -> Path:
    """Where a split remembers each file's validation, so a new dataset version decodes only its new files: one
    file per dataset workdir, shared by all its splits (run_verified writes them to <workdir>/.store/split/<key>)."""
    store = out_dir.parent.parent
    return (store.parent if store.name == ".store" else out_dir) / ".validation.sqlite"


@cached_task(name="split-data")
def split_data(cfg: DatasetConfig, dataset_md5: str, out_dir: Path) -> Outputs:
    """Validate every file (bad ones skipped, with reasons) and write the split manifest."""
    scan = scan_imagefolder(cfg.path, cfg.min_image_size, cfg.min_class_images, cfg.max_pixels,
                            cache=validation_cache(out_dir))
    manifest = split_images(scan.images, cfg, read_metadata(cfg.path))
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / "split.csv", index=False)
    scan.report.to_csv(out_dir / "bad_files.csv", index=False)
    counts = pd.crosstab(manifest["label"], manifest["split"])
    info = {  # the dataset digest travels with the split: every step keyed by the split is keyed by the pixels
        "dataset_md5": dataset_md5,
        "classes": scan.classes,
        "counts": {split: counts[split].to_dict() for split in counts.columns},
        "skipped": int(scan.report["action"].isin(["skipped", "class left out"]).sum()),
        "converted": int((scan.report["action"] == "converted").sum()),
        "nested": int((scan.report["action"] == "nested").sum()),
    }
    logger = get_run_logger()
    logger.info(
        "%d classes; %s; %d files or classes left out, %d converted, %d in class sub-folders (see %s)",
        len(scan.classes),
        ", ".join(f"{s} {int(counts[s].sum())}" for s in counts.columns),
        info["skipped"],
        info["converted"],
        info["nested"],
        out_dir / "bad_files.csv",
    )
    return Outputs.of(info, manifest=out_dir / "split.csv", report=out_dir / "bad_files.csv")
