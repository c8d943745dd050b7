"""Generation survives kills, a second writer, and a torn or missing manifest: every edit exactly once."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from PIL import Image

from models.edit_folder import edits
from models.locks import locked

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

FOLDER = "artifacts/digits/generated/genie"
EDITS = ["generate", "--method", "genie", "--per-class", "12"]  # 120 edits
KILLED = "artifacts/digits/generated/txt2img"
KILLED_EDITS = ["generate", "--method", "txt2img", "--per-class", "12"]


def summary(process) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout[process.stdout.index("{"):])


def assert_each_edit_once(project, count: int, folder: str = FOLDER):
    folder = project / folder
    manifest = edits(folder)
    images = sorted(p.stem for p in folder.glob("??/*.png"))
    assert len(images) == count and manifest["key"].is_unique and sorted(manifest["key"]) == images
    for path in folder.glob("??/*.png"):
        with Image.open(path) as image:
            image.load()


def test_a_second_writer_waits_or_stops_naming_the_holder(project, genie):
    with locked(project / "artifacts/digits", "a nightly run"):  # another writer holds the dataset
        busy = genie(*EDITS, "--no-wait")
        assert busy.returncode == 1 and busy.stderr.strip().splitlines()[-1].startswith(
            f"error: artifacts/digits is in use by pid {os.getpid()} on ")
        waiting = genie(*EDITS, background=True)
        line = waiting.stderr.readline()
        while line and not line.startswith("waiting for"):
            line = waiting.stderr.readline()
        assert line.startswith(f"waiting for artifacts/digits: in use by pid {os.getpid()}") and waiting.poll() is None
        assert not (project / FOLDER).exists()  # nothing made while it waits
    out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err[-3000:]
    assert json.loads(out[out.index("{"):])["generated"] == 120
    assert summary(genie(*EDITS))["generated"] == 0
    assert_each_edit_once(project, 120)


def test_torn_or_missing_manifest_loses_no_image(project, genie):
    assert summary(genie(*EDITS))["generated"] == 0  # made by the test before
    manifest = project / FOLDER / "manifest"
    part = max(manifest.glob("*.csv"))
    text = part.read_text()
    part.write_text(text[: len(text) // 2])  # a write cut short
    assert summary(genie(*EDITS))["generated"] == 0
    assert_each_edit_once(project, 120)
    shutil.rmtree(manifest)
    (project / FOLDER / "notes.png").write_bytes(b"not an edit")
    assert summary(genie(*EDITS))["generated"] == 0
    assert_each_edit_once(project, 120)
    assert (project / FOLDER / "stray" / "notes.png").is_file()  # moved aside, not deleted


def test_killed_three_times_then_resumed(project, genie):
    folder = project / KILLED
    for _ in range(3):
        process = genie(*KILLED_EDITS, background=True)
        before = len(list(folder.glob("??/*.png"))) if folder.exists() else 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if folder.exists() and len(list(folder.glob("??/*.png"))) >= before + 8:
                break
            time.sleep(0.05)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had already finished
            pass
        process.wait()
    done = summary(genie(*KILLED_EDITS))
    assert done["requested"] == 120 and done["existing"] >= 24  # earlier work kept
    assert_each_edit_once(project, 120, KILLED)
    assert summary(genie(*KILLED_EDITS))["generated"] == 0


def test_a_night_killed_alone_leaves_no_process_behind(project, genie, monkeypatch):
    """The OOM killer kills one process, not its group: nothing the night started may outlive it."""
    monkeypatch.delenv("PREFECT_API_URL")  # one machine, no servers: Prefect's temporary server is the night's child
    # the Prefect home's first migration, which genie runs before it starts that server, done beforehand
    subprocess.run([sys.executable, "-c", "from flows.servers.local_server import prepare_database; prepare_database()"],
                   env=os.environ.copy(), check=True, timeout=600)
    night = genie("run", background=True)
    deadline = time.monotonic() + 120
    children = []
    while time.monotonic() < deadline and not any("uvicorn" in " ".join(child.cmdline()) for child in children):
        time.sleep(0.1)
        children = psutil.Process(night.pid).children(recursive=True)
    assert children, "the night started no temporary server"
    os.kill(night.pid, signal.SIGKILL)
    night.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [" ".join(process.cmdline())[:120] for process in alive]
