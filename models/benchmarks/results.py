"""Where a benchmark's results live and how they are written and read back; the shared statistics."""
from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from models.config import Settings
from models.digests import model_identity
from models.edit_folder import rows_of
from models.editing import Edit
from models.engine import pick_device

RESULTS = "results.json"


def benchmark_dir(settings: Settings) -> Path:
    return settings.workdir / "benchmark"


def slug(text: str) -> str:
    """A variant label as an MLflow metric name / folder name: 'genie r=0.5' -> 'genie_r0.5'."""
    return re.sub(r"[^\w.-]+", "_", text.replace("=", ""))


def mean_ci(values) -> tuple[float, float]:
    """Mean and half-width of the 95% interval, 1.96 * std / sqrt(n)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(1.96 * values.std() / np.sqrt(len(values)))


def across_ci(means) -> float:
    """Half-width of the 95% t-interval of the seeds' means (nan for one seed): the spread of independently
    trained generators, extractors and classifiers, which no within-seed interval sees."""
    means = np.asarray(means, dtype=float)
    if len(means) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means)))


def within_ci(half_widths) -> float:
    """Half-width of the within-seed 95% interval of the mean of seeds' means, each seed's held fixed."""
    half_widths = np.asarray(half_widths, dtype=float)
    return float(np.sqrt((half_widths**2).sum()) / len(half_widths))


@dataclass(frozen=True)
class Gap:
    """a - b over paired observations (episodes or test images) of every seed, with both intervals."""

    mean: float
    within: float  # from the paired observations of each seed: the generators held fixed
    across: float  # t-interval over the seeds' mean gaps: nan with one seed
    seeds: int
    per_seed: tuple[float, ...] = ()

    @property
    def interval(self) -> float:
        """What a verdict rests on: the across-seed interval, the within-seed one when there is one seed."""
        return self.within if self.seeds < 2 else self.across


def gap_between(rows: pd.DataFrame, a: str, b: str, unit: str, value: str) -> Gap | None:
    """`value` of variant a minus b over the same `unit`s (episodes, test images) of each seed; None when
    either variant is missing."""
    wide = rows.pivot(index=["seed", unit], columns="variant", values=value)
    if a not in wide or b not in wide or wide.empty:
        return None
    means = [mean_ci(d) for _, d in (wide[a] - wide[b]).groupby(level="seed")]
    return Gap(float(np.mean([m for m, _ in means])), within_ci([c for _, c in means]),
               across_ci([m for m, _ in means]), len(means), tuple(m for m, _ in means))


def stacked(runs: list[dict], names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Each named table of every replicate's results, one below the other."""
    return {name: pd.concat([r[name] for r in runs], ignore_index=True) for name in names}


def verdict(diff: Gap) -> str:
    """'better than', 'worse than' or 'not distinguishable from', by the interval a Gap's verdict rests on."""
    return ("better than" if diff.mean - diff.interval > 0 else "worse than" if diff.mean + diff.interval < 0
            else "not distinguishable from")


def machine() -> str:
    """The CPU, its core count and torch's threads: what a generator's bits depend on besides the code."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return (f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch threads: {torch.get_num_threads()}, {platform.system()} {platform.release()}")


def protocol(settings: Settings, started: float, commit: str, **facts) -> dict:
    """What a benchmark ran with: generator, sampler, prompt, seeds, code and machine."""
    g = settings.generator
    device, dtype = pick_device(g.device, g.dtype)
    return {"dataset": settings.dataset.name, "generator": settings.generator_model,
            "generator_digest": model_identity(settings.generator_model), "sampler_steps": g.steps,
            "guidance": g.guidance, "prompt": g.prompt, "generation_seed": g.seed, "classifier": settings.classifier.model,
            "noise_ratio": settings.genie.noise_ratio, "ada_ratios": list(settings.genie.ada_ratios), "git_commit": commit,
            "device": f"{device.type} {str(dtype).removeprefix('torch.')}", "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(time.monotonic() - started, 1), **facts}


def write_results(out: Path, tables: dict[str, pd.DataFrame], facts: dict) -> list[Path]:
    """Each table as CSV, then results.json; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        files.append(out / f"{name}.csv")
    return [*files, save_facts(out, facts)]


def save_facts(out: Path, facts: dict) -> Path:
    """results.json: written before the MLflow run (as its artifact) and again with the run id."""
    (out / RESULTS).write_text(json.dumps(facts, indent=2, default=str) + "\n")
    return out / RESULTS


def load(folder: Path) -> dict | None:
    """A benchmark's results.json and its CSV tables, or None when it has not run."""
    if not (folder / RESULTS).is_file():
        return None
    results = {"facts": json.loads((folder / RESULTS).read_text())}
    if folder.name in ("few-shot", "long-tail") and "generators" not in results["facts"]:
        raise ValueError(f"{folder}: results from before generator seeds; run `genie benchmark {folder.name}` again")
    for csv in folder.glob("*.csv"):
        results[csv.stem] = pd.read_csv(csv, dtype={"source_class": str, "label": str, "target": str, "judged": str}) \
            if csv.stat().st_size > 1 else pd.DataFrame()
    return results


REPORTED = ("few-shot", "long-tail", "ada", "adapt")


def load_reported(settings: Settings) -> dict[str, dict | None]:
    """The results `genie report` shows, by benchmark; at least one must be there."""
    folder = benchmark_dir(settings)
    results = {name: load(folder / name) for name in REPORTED}
    if not any(results.values()):
        raise ValueError(f"no benchmark results under {folder}: run `genie benchmark few-shot`, `long-tail`, `ada` "
                         "or `adapt` first")
    return results


def cost_rows(made: dict[Edit, str], edits_of: dict[str, list[Edit]]) -> pd.DataFrame:
    """UNet evaluations and seconds per kept image, per variant, from the edit folders' manifests."""
    files_of = {label: [Path(made[e]) for e in dict.fromkeys(edits) if e in made] for label, edits in edits_of.items()}
    everything = [f for files in files_of.values() for f in files]
    known = rows_of(everything) if everything else None  # each folder read once, whatever the variants sharing it
    rows = []
    for label, files in files_of.items():
        if not files:
            continue
        kept = known.reindex([f.stem for f in files])
        rows.append({"variant": label, "images": len(files), "unet_evals_per_image": kept["unet_evals"].mean(),
                     "seconds_per_image": kept["seconds"].mean() if "seconds" in kept else np.nan})
    return pd.DataFrame(rows)


def image_rows(made: dict[Edit, str], variant: str, edits: list[Edit]) -> list[dict]:
    """One row per distinct generated image of a variant: image, label, source class, source, ratio."""
    return [{"variant": variant, "image": made[e], "label": e.label, "source_class": e.source_class,
             "source": e.source, "ratio": e.ratio} for e in dict.fromkeys(edits) if e in made]


IMAGE_COLUMNS = ["variant", "image", "label", "source_class", "source", "ratio"]


# Figures as text, for printed tables and the report's template


def cell(value) -> str:
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def table(frame: pd.DataFrame | None) -> dict | None:
    """A DataFrame as header and rows of text, for the template's table macro."""
    if frame is None or frame.empty:
        return None
    return {"columns": [str(c) for c in frame.columns], "rows": [[cell(v) for v in row] for row in frame.itertuples(index=False)]}


def mean_pm(mean: float, spread: float, scale: float = 100, digits: int = 1) -> str:
    """'75.5 ± 0.8' (percent by default); '75.5' when there is no spread (one seed)."""
    if pd.isna(mean):
        return "-"
    return f"{mean * scale:.{digits}f}" + ("" if pd.isna(spread) else f" ± {spread * scale:.{digits}f}")


def half(width: float) -> str:
    """'± 0.8' in points; '-' where there is no interval (one seed)."""
    return "-" if pd.isna(width) else f"± {width * 100:.1f}"
