"""A folder of generated images whose bookkeeping costs what a batch holds, not what the folder holds, and that
no kill can corrupt.

Layout: `<key[:2]>/<key>.png`, one image per edit in 256 key-prefix sub-folders (no folder holds 10^6 files);
each PNG carries its edit's fields (a PNG text chunk), so the images alone are the truth. `manifest/` holds the
rows as append-only CSV parts, one per batch, each written whole; small parts are compacted now and then. A
batch's part is written before its images are renamed into place, so a listed image always has its row; a kill
between the two leaves rows whose image is missing, which readers skip. `edits(folder)` is the one way to list
the edits (fine-tuning, the report, `genie lineage`, your own pandas). A folder whose parts are missing or
unreadable is rebuilt from its images: recovery only. Files that are not a complete edit are moved aside to
`stray/`, never deleted."""
from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pandas as pd
from PIL import Image, PngImagePlugin

from models.locks import MANIFEST_LOCK, locked, partial_path, writer_alive

MANIFEST = "manifest"  # the folder of parts
LEGACY = "manifest.csv"  # a flat folder's manifest (before key-prefix sub-folders), adopted as a part
COLUMNS = ["key", "file", "source", "source_class", "target", "label", "method", "ratio", "ada_scores",
           "seed", "model", "unet_evals", "seconds", "time"]
CHUNK = "genie-flow"
TIMING_COLUMNS = ("seconds", "time")  # kept in the manifest only: an image's bytes depend on its edit alone
DTYPES = {"key": str, "file": str, "source_class": str, "target": str, "label": str}
SMALL_PART = 4 << 20  # bytes; parts below it are merged once there are COMPACT_AT of them
COMPACT_AT = 16


def image_file(key: str) -> str:
    """An edit's image, relative to its folder."""
    return f"{key[:2]}/{key}.png"


def stage_image(folder: Path, image: Image.Image, row: dict) -> Path:
    """Write the image, with its row inside it, under a hidden name unique to this process (in the folder
    itself, where a later sync finds it should its writer die); `place` renames it into view."""
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK, json.dumps({k: v for k, v in row.items() if k not in TIMING_COLUMNS}))
    folder.mkdir(parents=True, exist_ok=True)
    partial = partial_path(folder / Path(row["file"]).name)
    image.save(partial, format="PNG", pnginfo=info)
    return partial


def place(folder: Path, partial: Path, row: dict) -> None:
    target = folder / row["file"]
    target.parent.mkdir(exist_ok=True)
    partial.replace(target)


def write_image(folder: Path, image: Image.Image, row: dict) -> None:
    """`row["file"]` appears complete or not at all, with the row inside it."""
    place(folder, stage_image(folder, image, row), row)


def read_record(path: Path) -> dict | None:
    """The edit's fields stored in a PNG (no timings), or None for a file that is not a complete edit."""
    try:
        with Image.open(path) as image:
            image.load()
            text = image.text.get(CHUNK)
        return json.loads(text) if text else None
    except (OSError, SyntaxError, ValueError):
        return None


def _part_name(rows: int, stamp: int | None = None) -> str:
    """Unique across processes and hosts; sorts in write order, so the last row written for a key wins. The row
    count in the name tells a part cut short (by a disk, or a hand) from a whole one."""
    return f"{time.time_ns() if stamp is None else stamp:020d}-{os.getpid()}@{socket.gethostname()}-n{rows}.csv"


def _write_part(folder: Path, frame: pd.DataFrame, stamp: int | None = None) -> Path:
    parts = folder / MANIFEST
    parts.mkdir(parents=True, exist_ok=True)
    target = parts / _part_name(len(frame), stamp)
    partial = partial_path(target)
    frame.reindex(columns=COLUMNS).to_csv(partial, index=False)
    partial.replace(target)
    return target


def append(folder: Path, rows: list[dict]) -> None:
    """Add rows for a batch: one new part, whatever the folder holds; no lock, since no file is shared."""
    if rows:
        _write_part(folder, pd.DataFrame(rows, columns=COLUMNS))


def _read_part(path: Path) -> pd.DataFrame | None:
    try:
        frame = pd.read_csv(path, dtype=DTYPES)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    rows = re.search(r"-n(\d+)\.csv$", path.name)
    whole = rows is None or int(rows.group(1)) == len(frame)
    return frame if whole and set(COLUMNS) <= set(frame.columns) else None


def _parts(folder: Path) -> list[Path]:
    return sorted((folder / MANIFEST).glob("*.csv")) if (folder / MANIFEST).is_dir() else []


def _stray(folder: Path, path: Path) -> None:
    (folder / "stray").mkdir(exist_ok=True)
    path.replace(folder / "stray" / path.name)


def _has_images(folder: Path) -> bool:
    return any(p.is_dir() and len(p.name) == 2 for p in folder.iterdir()) if folder.is_dir() else False


def _read_parts(folder: Path) -> list[pd.DataFrame] | None:
    """Every part's rows; None when a part cannot be read."""
    for _ in range(10):
        frames = []
        for path in _parts(folder):
            frame = _read_part(path)
            if frame is None and path.exists():
                return None
            if frame is None:  # merged away since it was listed: its rows are in a newer part, so list again
                break
            frames.append(frame)
        else:
            return frames
    raise RuntimeError(f"{folder / MANIFEST}: parts keep changing while read")


def edits(folder: Path) -> pd.DataFrame:
    """Every edit in the folder, one row per key (the last written), only those whose image is there; `file` is
    relative to the folder. Rebuilds the parts from the images first when they are missing or unreadable."""
    folder = Path(folder)
    frames = _read_parts(folder)
    if frames is None or (not frames and _has_images(folder)):
        rebuild(folder)
        frames = _read_parts(folder) or []
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    rows = pd.concat(frames, ignore_index=True).drop_duplicates("key", keep="last")
    rows["file"] = rows["key"].map(image_file)
    present = [(folder / f).is_file() for f in rows["file"]]
    return rows[present].sort_values("key").reset_index(drop=True)


def rows_of(images: list[Path | str]) -> pd.DataFrame:
    """The rows of these edit images (from one or more folders), indexed by key."""
    folders = dict.fromkeys(Path(p).parent.parent for p in images)
    rows = pd.concat([edits(folder) for folder in folders], ignore_index=True)
    return rows.drop_duplicates("key", keep="last").set_index("key")


def rebuild(folder: Path) -> None:
    """Recovery: the parts made again from the images (every image read); unreadable parts moved aside."""
    with locked(folder, "manifest", name=MANIFEST_LOCK):
        for path in _parts(folder):
            if _read_part(path) is None:
                _stray(folder, path)
        records = []
        for image in sorted(folder.glob("??/*.png")):
            record = read_record(image)
            if record is None or record.get("key") != image.stem:
                _stray(folder, image)
            else:
                records.append(record)
        if records:
            _write_part(folder, pd.DataFrame(records, columns=COLUMNS), stamp=0)  # the oldest: other parts' timings win


def sync(folder: Path) -> None:
    """Housekeeping after writers, at the cost of what they left, not of what the folder holds: partial files of
    dead writers and stray files moved aside; a flat folder's images moved into key-prefix sub-folders (its
    manifest kept as a part); parts rebuilt when missing; small parts merged."""
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder, "manifest", name=MANIFEST_LOCK):
        for partial in folder.glob(".*.partial"):
            if not writer_alive(partial):
                _stray(folder, partial)
        adopted = {}
        for image in sorted(folder.glob("*.png")):
            record = read_record(image)
            if record is None or record.get("key") != image.stem:
                _stray(folder, image)
            else:
                adopted[image] = record | {"file": image_file(image.stem)}
        append(folder, list(adopted.values()))  # rows first, as for any batch
        for image, record in adopted.items():
            place(folder, image, record)
        if (folder / LEGACY).is_file():
            legacy = _read_part(folder / LEGACY)
            if legacy is None:
                _stray(folder, folder / LEGACY)
            else:  # after the images' own rows, so that its timings win
                _write_part(folder, legacy)
                (folder / LEGACY).unlink()
        missing = not _parts(folder) and _has_images(folder)
    if missing:
        rebuild(folder)
    compact(folder)


def compact(folder: Path) -> None:
    """Merge the small parts into one once there are COMPACT_AT of them: bounded work, whatever the folder holds."""
    with locked(folder, "manifest", name=MANIFEST_LOCK):
        small = [p for p in _parts(folder) if p.stat().st_size < SMALL_PART]
        if len(small) < COMPACT_AT:
            return
        whole = {path: frame for path in small if (frame := _read_part(path)) is not None}  # a torn part stays, for
        _write_part(folder, pd.concat(whole.values(), ignore_index=True).drop_duplicates("key", keep="last"))
        for path in whole:  # edits() to set aside and rebuild from the images
            path.unlink()
