import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models.config import DatasetConfig
from models.dataset import DatasetError, Verdicts, export_digits, load_rgb, scan_imagefolder, split_images


def tree_digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        sha.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def png(path: Path, mode="RGB", size=(16, 16), value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


@pytest.fixture
def messy(tmp_path) -> Path:
    root = tmp_path / "messy"
    for i in range(4):
        png(root / "a" / f"good{i}.png", value=(i * 40, 10, 10))
    (root / "a" / "empty.png").write_bytes(b"")
    whole = (root / "a" / "good0.png").read_bytes()
    (root / "a" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    png(root / "a" / "tiny.png", size=(4, 4))
    png(root / "b" / "rgba.png", "RGBA", value=(255, 0, 0, 128))
    Image.new("CMYK", (16, 16), (0, 255, 0, 0)).save(root / "b" / "cmyk.jpg")
    png(root / "b" / "grey.png", "L", value=200)
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(root / "b" / "deep.png")
    (root / "c").mkdir()
    png(root / "d" / "only.png")
    png(root / ".cache" / "x.png")
    (root / "README.txt").write_text("readme")
    return root


def test_bad_files_are_skipped_with_reasons_and_nothing_is_modified(messy):
    before = tree_digest(messy)
    scan = scan_imagefolder(messy, min_size=8, min_class_images=3)
    assert tree_digest(messy) == before
    assert scan.classes == ["a", "b"]
    assert sorted(scan.images["path"]) == sorted(
        ["a/good0.png", "a/good1.png", "a/good2.png", "a/good3.png", "b/rgba.png", "b/cmyk.jpg", "b/grey.png", "b/deep.png"]
    )
    reasons = {Path(p).relative_to(messy).as_posix(): (a, r) for p, a, r in scan.report.itertuples(index=False)}
    assert reasons["a/empty.png"] == ("skipped", "empty file (0 bytes)")
    assert reasons["a/cut.png"][1].startswith("truncated or corrupt image")
    assert reasons["a/notes.txt"] == ("skipped", "not an image")
    assert reasons["a/.DS_Store"] == ("skipped", "hidden file")
    assert reasons["a/tiny.png"] == ("skipped", "smaller than 8x8 (4x4)")
    assert reasons[".cache"] == ("skipped", "hidden")
    assert reasons["README.txt"] == ("skipped", "not inside a class folder")
    assert reasons["c"] == ("class left out", "no usable images; at least 3 needed")
    assert reasons["d"] == ("class left out", "only 1 usable image(s); at least 3 needed")
    for name, mode in [("rgba.png", "RGBA"), ("cmyk.jpg", "CMYK"), ("grey.png", "L"), ("deep.png", "I;16")]:
        assert reasons[f"b/{name}"] == ("converted", f"{mode} converted to RGB")


def opened(monkeypatch) -> list:
    """The files PIL opens from now on."""
    paths, real = [], Image.open

    def counted(path, *args, **kwargs):
        paths.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counted)
    return paths


def same_scan(scan, expected) -> None:
    pd.testing.assert_frame_equal(scan.images, expected.images)
    pd.testing.assert_frame_equal(scan.report, expected.report)
    assert scan.classes == expected.classes


def test_verdicts_are_remembered_per_file_and_never_change_the_scan(messy, tmp_path, monkeypatch):
    cache = tmp_path / "store" / ".validation.sqlite"
    expected = scan_imagefolder(messy)
    same_scan(scan_imagefolder(messy, cache=cache), expected)
    files = opened(monkeypatch)
    same_scan(scan_imagefolder(messy, cache=cache), expected)
    assert files == []  # nothing decoded again
    # a file rewritten with other bytes (another size and mtime) is checked again, and only it
    (messy / "a" / "good1.png").write_bytes((messy / "a" / "good1.png").read_bytes()[:40])
    expected = scan_imagefolder(messy)
    files.clear()
    same_scan(scan_imagefolder(messy, cache=cache), expected)
    assert files == ["good1.png"]
    # other check settings are other verdicts
    files.clear()
    same_scan(scan_imagefolder(messy, min_size=16, max_pixels=1000, cache=cache),
              scan_imagefolder(messy, min_size=16, max_pixels=1000))
    assert "good0.png" in files


def test_a_broken_or_busy_verdict_cache_costs_only_time(messy, tmp_path, monkeypatch, caplog):
    cache = tmp_path / ".validation.sqlite"
    expected = scan_imagefolder(messy)
    cache.write_bytes(b"not a database" * 100)
    same_scan(scan_imagefolder(messy, cache=cache), expected)
    assert "starting it afresh" in caplog.text
    files = opened(monkeypatch)
    same_scan(scan_imagefolder(messy, cache=cache), expected)
    assert files == []
    # another scan holding the file past the timeout: this one validates without it and leaves it alone
    monkeypatch.setattr(Verdicts, "timeout", 0.1)
    inode, other = cache.stat().st_ino, sqlite3.connect(cache)
    other.execute("BEGIN EXCLUSIVE")
    (messy / "a" / "good1.png").write_bytes(b"changed")
    try:
        same_scan(scan_imagefolder(messy, cache=cache), scan_imagefolder(messy))
    finally:
        other.rollback()
        other.close()
    assert "validating without it" in caplog.text and cache.stat().st_ino == inode
    assert sqlite3.connect(cache).execute("SELECT count(*) FROM verdicts").fetchone()[0] > 0


def test_conversions_give_8_bit_rgb(messy):
    deep = load_rgb(messy / "b" / "deep.png")
    assert deep.mode == "RGB" and deep.getpixel((0, 0)) == (255, 255, 255)
    rgba = load_rgb(messy / "b" / "rgba.png")  # half-transparent red over white
    assert rgba.mode == "RGB" and rgba.getpixel((0, 0))[0] == 255 and 120 < rgba.getpixel((0, 0))[1] < 135
    assert load_rgb(messy / "b" / "grey.png").getpixel((0, 0)) == (200, 200, 200)
    assert load_rgb(messy / "b" / "cmyk.jpg").mode == "RGB"


def test_fewer_than_two_classes_stops(tmp_path):
    for i in range(3):
        png(tmp_path / "only" / f"{i}.png")
    with pytest.raises(DatasetError, match="1 usable class"):
        scan_imagefolder(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        scan_imagefolder(tmp_path / "missing")


def test_digits_export_is_deterministic(digits, tmp_path):
    export_digits(tmp_path / "again")
    assert tree_digest(tmp_path / "again") == tree_digest(digits)
    assert len(list(digits.rglob("*.png"))) == 1797
    with Image.open(next(digits.rglob("*.png"))) as image:
        assert image.mode == "RGB" and image.size == (32, 32)


def test_split_is_stratified_deterministic_and_stable(digits):
    images = scan_imagefolder(digits).images
    cfg = DatasetConfig(path=digits)
    first, again = split_images(images, cfg), split_images(images, cfg)
    assert first.equals(again)
    other = split_images(images, cfg.model_copy(update={"split": cfg.split.model_copy(update={"seed": 1})}))
    assert not first["split"].equals(other.set_index("path").loc[first["path"], "split"].reset_index(drop=True))
    shares = first.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert shares["test"].between(0.18, 0.22).all() and shares["val"].between(0.18, 0.22).all()
    # a few new files move only a few of the existing ones
    grown = images._append([{"path": f"3/new{i}.png", "label": "3"} for i in range(5)], ignore_index=True)
    regrown = split_images(grown, cfg).set_index("path")["split"]
    moved = (regrown.loc[first["path"]].to_numpy() != first["split"].to_numpy()).sum()
    assert moved <= 4


def test_long_tail_subsamples_train_only(digits):
    images = scan_imagefolder(digits).images
    balanced = split_images(images, DatasetConfig(path=digits))
    tail = split_images(images, DatasetConfig(path=digits, long_tail={"imbalance_ratio": 10}))
    counts = tail[tail["split"] == "train"]["label"].value_counts()
    assert 9 <= counts.max() / counts.min() <= 11
    full = balanced[balanced["split"] == "train"]["label"].value_counts()
    assert counts[counts.idxmax()] == full[counts.idxmax()]  # the head class keeps all its train images
    for split in ("val", "test"):
        assert set(tail[tail["split"] == split]["path"]) == set(balanced[balanced["split"] == split]["path"])
    assert set(tail[tail["split"] == "unused"]["path"]) <= set(balanced[balanced["split"] == "train"]["path"])
