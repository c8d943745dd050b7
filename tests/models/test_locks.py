"""Locks that name their holder, and partial files that say whether their writer may still be running."""
import os
import socket

import pytest

from models.locks import MANIFEST_LOCK, Busy, locked, partial_path, writer_alive


def test_a_second_writer_stops_at_once_naming_the_first_or_waits_saying_so(tmp_path):
    said = []
    with locked(tmp_path / "work", "genie-run"):
        with pytest.raises(Busy, match=rf"in use by pid {os.getpid()} on {socket.gethostname()} \(genie-run, since "):
            with locked(tmp_path / "work", "another", wait=False):
                pass
    with locked(tmp_path / "work", "after", wait=False, say=said.append):  # released: free at once
        pass
    assert said == []
    assert (tmp_path / "work" / ".lock").read_text().count('"what": "after"') == 1


def test_a_manifest_lock_leaves_its_file_empty(tmp_path):
    with locked(tmp_path, name=MANIFEST_LOCK):
        pass
    assert (tmp_path / MANIFEST_LOCK).read_text() == ""


def test_a_partial_file_names_its_writer(tmp_path):
    mine = partial_path(tmp_path / "image.png")
    assert mine.parent == tmp_path and mine.name.startswith(".image.png.") and mine.name.endswith(".partial")
    assert writer_alive(mine)
    gone = tmp_path / f".image.png.{2 ** 22 + 7}@{socket.gethostname()}.partial"  # above Linux's largest pid
    assert not writer_alive(gone)
    assert writer_alive(tmp_path / ".image.png.1@another-host.partial")  # not ours to judge
    assert not writer_alive(tmp_path / "image.png")  # not a partial file
