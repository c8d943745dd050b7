"""Image datasets: the embedded digits, ImageFolder scanning with validation, and the split manifest."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from models.config import DatasetConfig
from models.locks import partial_path

log = logging.getLogger(__name__)

class DatasetError(ValueError):
    """The dataset cannot be used at all (as opposed to a bad file, which is skipped)."""


def export_digits(root: Path, size: int = 32) -> int:
    """Write scikit-learn's bundled digits as an ImageFolder of size x size RGB PNGs.

    The bytes are deterministic (no timestamps in PNG, fixed resampling), so every
    machine gets the same DVC md5. Written to a temporary folder and renamed, so an
    interrupted export leaves nothing behind.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    tmp = partial_path(root)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        grey = Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L")
        image = grey.resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
        folder = tmp / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:04d}.png", format="PNG")
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(root)
    except OSError:  # another process exported first: the same bytes
        shutil.rmtree(tmp)
    return len(digits.images)


def load_rgb(path: Path | str) -> Image.Image:
    """Open any supported image as 8-bit RGB (16-bit, CMYK, palette, alpha all converted)."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            pixels = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
            image = Image.fromarray(np.clip(pixels / peak * 255, 0, 255).round().astype(np.uint8), mode="L")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return image.convert("RGB")


DECODED_BUDGET = 32 << 20  # bytes of decoded images one training keeps (32 px RGB: ~8k images); the rest is re-read


class Decoded:
    """load_rgb, each file decoded once while the kept images fit `budget` bytes: a training that reads its images
    every epoch (the VAE's steps, the classifier's epochs) pays for PNG decoding once, with memory bounded at any
    dataset size. Images are never changed in place (transforms make new ones), so a kept one gives the same bytes."""

    def __init__(self, budget: int = DECODED_BUDGET):
        self.kept: dict[Path | str, Image.Image] = {}
        self.left = budget

    def __call__(self, path: Path | str) -> Image.Image:
        image = self.kept.get(path)
        if image is None:
            image = load_rgb(path)
            size = image.width * image.height * 4  # PIL holds RGB in 4 bytes a pixel
            if size <= self.left:
                self.kept[path], self.left = image, self.left - size
        return image


@dataclass
class Scan:
    """What an ImageFolder holds: usable images, and every file or class left out, with why."""

    images: pd.DataFrame  # path (relative to the dataset root), label (class name)
    report: pd.DataFrame  # path, action (skipped / converted / class left out), reason
    classes: list[str] = field(default_factory=list)


class Verdicts:
    """Decode verdicts remembered per file in an SQLite file, so a re-scan opens only the files added or changed.

    A row holds while the file's size, mtime and inode and the check settings are those it was made under. The
    cache only ever saves work: locked past the timeout, it is left alone for this scan; broken (not a database,
    unreadable), it is started afresh once, then done without. New rows go in at the end, in one transaction.
    """

    timeout = 60.0  # seconds to wait for another scan's write

    def __init__(self, path: Path | None, min_size: int, max_pixels: int):
        self.path, self.settings, self.db, self.new = path, (min_size, max_pixels), None, []

    def __enter__(self) -> Verdicts:
        return self

    def __exit__(self, *exc) -> None:
        if self.new:
            self._use(lambda db: db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                                self.new))
        self._close()

    def get(self, name: str, stat: os.stat_result) -> tuple[str | None, str | None] | None:
        row = self._use(lambda db: db.execute("SELECT size, mtime_ns, inode, min_size, max_pixels, skip, note FROM "
                                              "verdicts WHERE path = ?", (name,)).fetchone())
        if row is not None and row[:5] == (stat.st_size, stat.st_mtime_ns, stat.st_ino, *self.settings):
            return row[5], row[6]
        return None

    def put(self, name: str, stat: os.stat_result, verdict: tuple[str | None, str | None]) -> None:
        if self.path is not None:
            self.new.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ino, *self.settings, *verdict))

    def _use(self, action):
        for fresh in (False, True):
            if self.path is None:
                return None
            try:
                if self.db is None:
                    self.db = self._open(fresh)
                with self.db:  # one transaction; the timeout waits out another scan's
                    return action(self.db)
            except (OSError, sqlite3.Error) as err:
                self._close()
                busy = getattr(err, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if fresh or busy:
                    log.warning("validation cache %s: %s; validating without it", self.path, err)
                    self.path = None
                else:
                    log.warning("validation cache %s: %s; starting it afresh", self.path, err)
        return None

    def _open(self, fresh: bool) -> sqlite3.Connection:
        if fresh:  # its journal too: a stale one would be played back into the new file
            for path in (self.path, self.path.with_name(self.path.name + "-journal")):
                path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                       "inode INTEGER, min_size INTEGER, max_pixels INTEGER, skip TEXT, note TEXT)")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _check_image(path: Path, root: Path, verdicts: Verdicts) -> tuple[str | None, str | None]:
    """Return (skip reason, conversion note) for one file; the decode is skipped when `verdicts` knows these bytes."""
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            return "dangling symbolic link", None
        if not target.is_relative_to(root.resolve()):
            return f"symbolic link leaving the dataset (to {target})", None
    stat = path.stat()  # taken before the decode: a file changed meanwhile no longer matches its row
    if stat.st_size == 0:
        return "empty file (0 bytes)", None
    name = path.relative_to(root).as_posix()
    if (known := verdicts.get(name, stat)) is not None:
        return known
    reason, note, lasting = _decode(path, *verdicts.settings)
    if lasting:
        verdicts.put(name, stat, (reason, note))
    return reason, note


def _decode(path: Path, min_size: int, max_pixels: int) -> tuple[str | None, str | None, bool]:
    """(skip reason, conversion note, whether the bytes alone decided it): a failure of the machine rather than
    of the file (permission, I/O: an OSError with an errno) may pass, so it is not remembered."""
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
            if size[0] * size[1] > max_pixels:  # checked before decoding: no memory spent on it
                return f"{size[0]}x{size[1]} is more than dataset.max_pixels ({max_pixels})", None, True
            image.load()
    except Image.DecompressionBombError as err:
        return f"decompression bomb ({err})", None, True
    except UnidentifiedImageError:
        return "not an image", None, True
    except (OSError, SyntaxError, ValueError) as err:
        return f"truncated or corrupt image ({err})", None, getattr(err, "errno", None) is None
    if min(size) < min_size:
        return f"smaller than {min_size}x{min_size} ({size[0]}x{size[1]})", None, True
    return None, None if mode == "RGB" else f"{mode} converted to RGB", True


METADATA = "metadata.csv"  # beside the class folders: each image's context (and split), when the dataset has one
SPLITS = ("train", "val", "test", "unused")  # unused: for the embedded generator only, never a classifier


def _not_a_class(entry: Path, root: Path) -> str | None:
    """Why a top-level entry of the dataset is not a class folder, if it is not."""
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_symlink() and not entry.resolve().is_relative_to(root.resolve()):
        return "symbolic link leaving the dataset"
    return None if entry.is_dir() else "not inside a class folder"


def _class_files(folder: Path) -> list[Path]:
    """Every file under a class folder, in a stable order; hidden sub-folders are not entered."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / name for name in sorted(filenames)]
    return found


def scan_imagefolder(root: Path, min_size: int = 8, min_class_images: int = 3, max_pixels: int = 4096 * 4096,
                     cache: Path | None = None) -> Scan:
    """Validate an ImageFolder without modifying it; bad files are skipped and reported.

    Each top-level folder is a class; images in its sub-folders belong to it too, and the report lists
    them ("nested"). Symbolic links are followed only within the dataset. With `cache` (an SQLite file),
    each file's decode verdict is remembered, and a later scan decodes only the files added or changed
    since: the result is the same as without it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found")
    entries = [(entry, _not_a_class(entry, root)) for entry in sorted(root.iterdir())]
    files = {entry: _class_files(entry) for entry, why in entries if why is None}  # listed first: the bar's total
    rows: list[tuple[str, str]] = []
    report: list[tuple[str, str, str]] = []
    with Verdicts(cache, min_size, max_pixels) as verdicts, \
            tqdm(total=sum(map(len, files.values())), desc="validate images", unit="file", delay=2) as bar:
        for entry, why in entries:
            if entry.name == METADATA and entry.is_file():
                continue
            if why:
                report.append((str(entry), "skipped", why))
                continue
            usable = []
            for path in files[entry]:
                bar.update()
                if path.name.startswith("."):
                    report.append((str(path), "skipped", "hidden file"))
                    continue
                reason, note = _check_image(path, root, verdicts)
                if reason:
                    report.append((str(path), "skipped", reason))
                    continue
                if note:
                    report.append((str(path), "converted", note))
                if path.parent != entry:
                    report.append((str(path), "nested", f"in a sub-folder of class {entry.name!r}: counted as it"))
                usable.append(path.relative_to(root).as_posix())
            if len(usable) < min_class_images:
                found = "no usable images" if not usable else f"only {len(usable)} usable image(s)"
                report.append((str(entry), "class left out", f"{found}; at least {min_class_images} needed"))
                continue
            rows += [(path, entry.name) for path in usable]
    images = pd.DataFrame(rows, columns=["path", "label"])
    classes = sorted(images["label"].unique().tolist()) if rows else []
    if len(classes) < 2:
        raise DatasetError(
            f"dataset folder {root}: {len(classes)} usable class(es), at least 2 needed "
            f"(each a sub-folder with >= {min_class_images} valid images)"
        )
    return Scan(images, pd.DataFrame(report, columns=["path", "action", "reason"]), classes)


def seeded_rank(seed: int | str, path: str) -> str:
    """A seeded, order-free sort key: taking the first k of a pool sorted by it is a stable random draw."""
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def read_metadata(root: Path) -> pd.DataFrame | None:
    """The dataset's metadata.csv, indexed by path: `context` (what surrounds the object: background, site, product
    line), and optionally `split`, which then overrides the drawn split for its images (as Waterbirds ships it)."""
    path = Path(root) / METADATA
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"path", "context"} - set(table.columns)
    if missing:
        raise DatasetError(f"{path}: column(s) {', '.join(sorted(missing))} missing (path, context[, split])")
    if "split" in table and not table["split"].isin(SPLITS).all():
        bad = table.loc[~table["split"].isin(SPLITS), "split"].iloc[0]
        raise DatasetError(f"{path}: split {bad!r} is not one of {', '.join(SPLITS)}")
    return table.drop_duplicates("path", keep="last").set_index("path")


def split_images(images: pd.DataFrame, cfg: DatasetConfig, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stratified train / val / test split, a pure function of the file list and the seed.

    Within each class, files are ordered by a seeded hash of their path and cut at
    the configured shares, so adding files moves few existing ones between splits.
    With metadata, each image gets its `context` ("" when not listed) and a listed split wins.
    With a long-tail imbalance ratio, train is subsampled to an exponential profile;
    the left-out train images get split "unused". val and test are never touched.
    """
    split = cfg.split
    out = images.assign(rank=[seeded_rank(split.seed, p) for p in images["path"]])
    out = out.sort_values(["label", "rank"]).reset_index(drop=True)
    position = out.groupby("label").cumcount().to_numpy()  # within its class, in seeded order
    n = out.groupby("label")["label"].transform("size").to_numpy()
    n_test = np.maximum(1, np.round(n * split.test))  # half to even, as Python's round
    n_val = np.maximum(1, np.round(n * split.val))
    out["split"] = np.where(position < n_test, "test", np.where(position < n_test + n_val, "val", "train"))
    if metadata is not None:
        out["context"] = out["path"].map(metadata["context"]).fillna("")
        if "split" in metadata:
            out["split"] = out["path"].map(metadata["split"]).fillna(out["split"])
    if cfg.long_tail.imbalance_ratio:
        out = _long_tail(out, cfg.long_tail.imbalance_ratio, cfg.long_tail.seed)
    return out.drop(columns="rank")


def _long_tail(out: pd.DataFrame, ratio: float, seed: int) -> pd.DataFrame:
    classes = sorted(out["label"].unique())
    order = np.random.default_rng(seed).permutation(len(classes))  # which classes become the tail
    train = out[out["split"] == "train"]
    largest = train["label"].value_counts().max()
    for position, index in enumerate(order):
        label = classes[index]
        keep = max(1, int(largest * ratio ** (-position / max(1, len(classes) - 1))))
        rows = train.index[train["label"] == label]
        drop = sorted(rows, key=lambda i: seeded_rank(seed, out.at[i, "path"]))[keep:]
        out.loc[drop, "split"] = "unused"
    return out


def read_manifest(path: Path | str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"path": str, "label": str, "split": str, "context": str}, keep_default_na=False)


def generator_splits(cfg: DatasetConfig) -> tuple[str, ...]:
    """The splits the embedded generator learns from: train, and (split "unused") the train images a long tail left out
    when `long_tail.generator_sees_unused`, and those the dataset's metadata sets aside for it."""
    return ("train", "unused") if cfg.long_tail.generator_sees_unused else ("train",)


def subset(manifest: pd.DataFrame, root: Path, split: str | tuple[str, ...],
           classes: list[str]) -> tuple[list[Path], list[int]]:
    """Paths and class indices of one split (or several), as the classifier takes them."""
    index = {label: i for i, label in enumerate(classes)}
    rows = manifest[manifest["split"].isin([split] if isinstance(split, str) else split)]
    return [Path(root) / p for p in rows["path"]], [index[label] for label in rows["label"]]


def class_counts(split: pd.DataFrame, name: str = "train") -> pd.Series:
    return split[split["split"] == name]["label"].value_counts().sort_index()
