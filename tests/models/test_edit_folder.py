"""An edit folder survives kills and other writers: images carry their rows, the rows follow the images, and a
batch's bookkeeping costs what the batch holds."""
import socket

import pandas as pd
from PIL import Image

from models import edit_folder
from models.edit_folder import COLUMNS, MANIFEST, append, edits, image_file, read_record, sync, write_image
from models.locks import partial_path


def row(key: str) -> dict:
    return {c: None for c in COLUMNS} | {"key": key, "file": image_file(key), "target": "5", "label": "5",
                                          "method": "genie", "ratio": 0.8, "seed": 1}


def folder_with(tmp_path, keys):
    append(tmp_path, [row(k) for k in keys])
    for key in keys:
        write_image(tmp_path, Image.new("RGB", (8, 8), (len(key) * 20, 0, 0)), row(key))
    return tmp_path


def test_images_carry_their_rows_and_leave_no_partial_file(tmp_path):
    folder_with(tmp_path, ["a1", "bb"])
    assert read_record(tmp_path / "a1/a1.png") == {k: v for k, v in row("a1").items() if k not in ("seconds", "time")}
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == ["a1/a1.png", "bb/bb.png"]
    assert not list(tmp_path.rglob("*.partial"))
    sync(tmp_path)
    assert list(edits(tmp_path)["key"]) == ["a1", "bb"]


def test_missing_or_torn_parts_are_rebuilt_from_the_images(tmp_path):
    folder_with(tmp_path, ["a1", "bb", "ccc"])
    for part in (tmp_path / MANIFEST).iterdir():
        part.unlink()
    assert list(edits(tmp_path)["key"]) == ["a1", "bb", "ccc"]
    (part,) = (tmp_path / MANIFEST).glob("*.csv")
    text = part.read_text()
    part.write_text(text[: len(text) // 2] + '"')  # a write cut short inside a quoted field
    assert list(edits(tmp_path)["key"]) == ["a1", "bb", "ccc"]
    assert (tmp_path / "stray" / part.name).is_file()  # the torn part moved aside, not deleted


def test_rows_are_listed_once_and_follow_the_images(tmp_path):
    folder_with(tmp_path, ["a1", "bb"])
    append(tmp_path, [row("a1"), row("bb")])  # a second writer appending the same keys
    assert len(edits(tmp_path)) == 2
    (tmp_path / "bb/bb.png").unlink()
    assert list(edits(tmp_path)["key"]) == ["a1"]


def test_stray_files_are_moved_aside_not_deleted(tmp_path):
    folder_with(tmp_path, ["a1"])
    Image.new("RGB", (8, 8)).save(tmp_path / "junk.png")  # no edit fields
    (tmp_path / "cut.png").write_bytes((tmp_path / "a1/a1.png").read_bytes()[:40])  # cut short
    dead = tmp_path / f".zz.png.999999999@{socket.gethostname()}.partial"  # its writer was killed
    dead.write_bytes(b"half an image")
    live = partial_path(tmp_path / "yy.png")  # still being written, by this process
    live.write_bytes(b"...")
    sync(tmp_path)
    assert list(edits(tmp_path)["key"]) == ["a1"]
    assert sorted(p.name for p in (tmp_path / "stray").iterdir()) == sorted(["junk.png", "cut.png", dead.name])
    assert live.exists()


def test_a_flat_folder_is_adopted_with_its_manifest(tmp_path):
    for key in ("a1", "bb"):  # the layout before key-prefix sub-folders
        write_image(tmp_path, Image.new("RGB", (8, 8)), row(key) | {"file": f"{key}.png"})
    pd.DataFrame([row("a1") | {"file": "a1.png", "seconds": 0.5}], columns=COLUMNS).to_csv(tmp_path / "manifest.csv")
    sync(tmp_path)
    listed = edits(tmp_path).set_index("key")
    assert list(listed.index) == ["a1", "bb"] and list(listed["file"]) == ["a1/a1.png", "bb/bb.png"]
    assert listed.at["a1", "seconds"] == 0.5  # the old manifest's timings kept
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "manifest.csv").exists()


def test_a_batch_costs_what_it_holds(tmp_path, monkeypatch):
    for i in range(edit_folder.COMPACT_AT - 2):
        folder_with(tmp_path, [f"{i:02d}x"])
    reads = []
    monkeypatch.setattr(edit_folder, "_read_part", lambda path: reads.append(path) or pd.read_csv(path))
    append(tmp_path, [row("zz")])
    sync(tmp_path)
    assert reads == []  # neither appending nor housekeeping read the rows already there
    folder_with(tmp_path, ["zy"])
    sync(tmp_path)  # COMPACT_AT small parts and more: merged into one
    assert len(list((tmp_path / MANIFEST).glob("*.csv"))) == 1 and len(reads) == edit_folder.COMPACT_AT
    monkeypatch.undo()
    assert len(edits(tmp_path)) == edit_folder.COMPACT_AT - 1  # the images written; "zz" has a row but no image
