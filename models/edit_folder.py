"""A folder of generated images that no kill can corrupt: each PNG carries its edit's fields (a PNG text
chunk) and is written whole under a process-unique name; the manifest is derived from the images, replaced
whole under a short lock, and rebuilt from them when it is missing or unreadable. Files that are not a
complete edit are moved aside to `stray/`, never deleted."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image, PngImagePlugin

from models.locks import MANIFEST_LOCK, locked, partial_path, writer_alive

MANIFEST = "manifest.csv"
COLUMNS = ["key", "file", "source", "source_class", "target", "label", "method", "ratio", "ada_scores",
           "seed", "model", "unet_evals", "seconds", "time"]
CHUNK = "genie-flow"
TIMING = ("seconds", "time")  # kept in the manifest only: an image's bytes depend on its edit alone
DTYPES = {"source_class": str, "target": str, "label": str}


def write_image(folder: Path, image: Image.Image, row: dict) -> None:
    """`row["file"]` appears complete or not at all, with the row inside it."""
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK, json.dumps({k: v for k, v in row.items() if k not in TIMING}))
    partial = partial_path(folder / row["file"])
    image.save(partial, format="PNG", pnginfo=info)
    partial.replace(folder / row["file"])


def read_record(path: Path) -> dict | None:
    """The edit's fields stored in a PNG (no timings), or None for a file that is not a complete edit."""
    try:
        with Image.open(path) as image:
            image.load()
            text = image.text.get(CHUNK)
        return json.loads(text) if text else None
    except (OSError, SyntaxError, ValueError):
        return None


def read_manifest(folder: Path) -> pd.DataFrame | None:
    """The manifest as written, or None when it is missing or cannot be read."""
    path = folder / MANIFEST
    try:
        frame = pd.read_csv(path, dtype=DTYPES)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame if set(COLUMNS) <= set(frame.columns) else None


def _write_manifest(folder: Path, frame: pd.DataFrame) -> None:
    partial = partial_path(folder / MANIFEST)
    frame.reindex(columns=COLUMNS).to_csv(partial, index=False)
    partial.replace(folder / MANIFEST)


def _stray(folder: Path, path: Path) -> None:
    (folder / "stray").mkdir(exist_ok=True)
    path.replace(folder / "stray" / path.name)


def sync(folder: Path) -> pd.DataFrame:
    """The manifest made to match the images: rows for images that carry their fields (e.g. written by a
    run killed before its manifest update, or by another writer), no rows for missing images; stray files
    moved aside. Returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder, "manifest", name=MANIFEST_LOCK):
        before = read_manifest(folder)
        rows = {} if before is None else {r["key"]: r for r in before.to_dict("records")}
        for partial in folder.glob(".*.partial"):
            if not writer_alive(partial):
                _stray(folder, partial)
        present = set()
        for image in folder.glob("*.png"):
            if image.stem not in rows:
                record = read_record(image)
                if record is None or record.get("key") != image.stem:
                    _stray(folder, image)
                    continue
                rows[image.stem] = record
            present.add(image.stem)
        frame = pd.DataFrame([rows[k] for k in sorted(present)], columns=COLUMNS)
        if before is None or set(before["key"]) != present:
            _write_manifest(folder, frame)
        return frame


def append(folder: Path, rows: list[dict]) -> None:
    """Add rows for images already written, under the manifest lock; a key is listed once."""
    if not rows:
        return
    with locked(folder, "manifest", name=MANIFEST_LOCK):
        before = read_manifest(folder)
        known = {} if before is None else {r["key"]: r for r in before.to_dict("records")}
        known |= {row["key"]: row for row in rows}
        _write_manifest(folder, pd.DataFrame(list(known.values()), columns=COLUMNS))
