"""Choose where to generate: targets and sources from the champion's confusion on val."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger

from models.config import SelectConfig
from models.dataset import class_counts, read_manifest
from models.evaluation import class_groups
from models.selection import choose_targets, select_sources
from tasks.caching import Outputs, cached_task


@cached_task(name="select-sources")
def select_hard_negatives(cfg: SelectConfig, many_shot: int, few_shot: int, confusion: Outputs, split: Outputs,
                          dataset_root: Path, out_dir: Path) -> Outputs:
    matrix = pd.read_csv(confusion["soft_confusion"], index_col=0, dtype={0: str})
    matrix.index, matrix.columns = matrix.index.astype(str), matrix.columns.astype(str)
    manifest = read_manifest(split["manifest"])
    groups = class_groups(class_counts(manifest).to_dict(), many_shot, few_shot)
    targets = choose_targets(matrix, cfg.targets, cfg.n_weakest, groups)
    per_group = pd.read_csv(confusion["per_group"], dtype={"class": str, "context": str}) \
        if cfg.by_context and "per_group" in confusion.files else None
    selection = select_sources(matrix, manifest, dataset_root, targets, cfg.k_confused, cfg.per_target, cfg.seed,
                               per_group)
    out_dir.mkdir(parents=True, exist_ok=True)
    selection.to_csv(out_dir / "selection.csv", index=False)
    pairs = selection.groupby("target")["source_class"].unique().map(", ".join).to_dict()
    get_run_logger().info("%d sources for %d targets (%s)", len(selection), len(targets),
                          "; ".join(f"{t} <- {s}" for t, s in pairs.items()))
    return Outputs.of({"targets": targets, "sources": len(selection)}, selection=out_dir / "selection.csv")
