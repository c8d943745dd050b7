"""An edit folder survives kills and other writers: images carry their rows, the manifest follows them."""
import socket

import pandas as pd
from PIL import Image

from models.edit_folder import COLUMNS, MANIFEST, append, read_record, sync, write_image
from models.locks import partial_path


def row(key: str) -> dict:
    return {c: None for c in COLUMNS} | {"key": key, "file": f"{key}.png", "target": "5", "label": "5",
                                          "method": "genie", "ratio": 0.8, "seed": 1}


def folder_with(tmp_path, keys):
    for key in keys:
        write_image(tmp_path, Image.new("RGB", (8, 8), (len(key) * 20, 0, 0)), row(key))
    append(tmp_path, [row(k) for k in keys])
    return tmp_path


def test_images_carry_their_rows_and_leave_no_partial_file(tmp_path):
    folder_with(tmp_path, ["a", "bb"])
    assert read_record(tmp_path / "a.png") == {k: v for k, v in row("a").items() if k not in ("seconds", "time")}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["a.png", "bb.png", MANIFEST]
    assert list(sync(tmp_path)["key"]) == ["a", "bb"]


def test_a_missing_or_torn_manifest_is_rebuilt_from_the_images(tmp_path):
    folder_with(tmp_path, ["a", "bb", "ccc"])
    (tmp_path / MANIFEST).unlink()
    assert list(sync(tmp_path)["key"]) == ["a", "bb", "ccc"]
    text = (tmp_path / MANIFEST).read_text()
    (tmp_path / MANIFEST).write_text(text[: len(text) - 25])  # a write cut short
    assert list(sync(tmp_path)["key"]) == ["a", "bb", "ccc"]
    assert list(pd.read_csv(tmp_path / MANIFEST)["key"]) == ["a", "bb", "ccc"]


def test_rows_are_listed_once_and_follow_the_images(tmp_path):
    folder_with(tmp_path, ["a", "bb"])
    append(tmp_path, [row("a"), row("bb")])  # a second writer appending the same keys
    assert len(pd.read_csv(tmp_path / MANIFEST)) == 2
    (tmp_path / "bb.png").unlink()
    assert list(sync(tmp_path)["key"]) == ["a"]


def test_stray_files_are_moved_aside_not_deleted(tmp_path):
    folder_with(tmp_path, ["a"])
    Image.new("RGB", (8, 8)).save(tmp_path / "junk.png")  # no edit fields
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:40])  # cut short
    dead = tmp_path / f".zz.png.999999999@{socket.gethostname()}.partial"  # its writer was killed
    dead.write_bytes(b"half an image")
    live = partial_path(tmp_path / "yy.png")  # still being written, by this process
    live.write_bytes(b"...")
    assert list(sync(tmp_path)["key"]) == ["a"]
    assert sorted(p.name for p in (tmp_path / "stray").iterdir()) == sorted(["junk.png", "cut.png", dead.name])
    assert live.exists()
