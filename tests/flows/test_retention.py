"""A month of nights, shortened: twelve tiny nights, each adding a few images and one adding a class, then
`genie gc` keeping the last three. The disk stays bounded and every version left in the registry reproduces."""
import json
import os
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image, ImageChops

from flows.pipeline import genie_run
from flows.reproduce import genie_reproduce
from models.config import Settings
from tasks.history import nights
from tasks.retention import collect

pytestmark = pytest.mark.faults  # twelve nights and a reproduce of each kept version: the tier of its own
TINY = {"classifier": {"epochs": 1}, "finetune": {"epochs": 1}, "select": {"per_target": 2},
        "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}, "adapter": {"steps": 4}}}
FOLDERS = {"work folder": "artifacts/digits", "edit folders": "artifacts/digits/generated", "mlruns": "mlruns",
           "DVC cache": ".dvc/cache", "DVC remote": "remote"}


def usage(project: Path) -> dict[str, int]:
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())

    sizes = {name: size(project / folder) for name, folder in FOLDERS.items()}
    sizes["work folder"] -= sizes["edit folders"]  # counted once
    return sizes | {"all": sum(sizes.values())}


def add_images(data: Path, night: int) -> None:
    """Night k's new images: three of class k % 10 shifted by k pixels (new bytes); night 8 adds a class."""
    if night == 8:
        (data / "10").mkdir()
        for path in sorted((data / "1").glob("*.png"))[:12]:
            Image.open(path).rotate(90).save(data / "10" / f"new-{path.name}")
        return
    label = str(night % 10)
    for path in sorted((data / label).glob("*.png"))[:3]:
        ImageChops.offset(Image.open(path), night, 0).save(data / label / f"night{night}-{path.name}")


def test_twelve_nights_then_gc_keeps_three_and_every_kept_version_reproduces(project: Path):
    remote = project / "remote"
    remote.mkdir()
    settings = Settings.model_validate(TINY | {"retention": {"keep_nights": 3, "generated_days": 0},
                                               "dvc": {"remote": {"url": str(remote)}}})
    for night in range(1, 13):
        if night > 1:
            add_images(project / "data" / "digits", night)
        genie_run(settings)
        if night == 3:
            three = usage(project)
    before = usage(project)

    scope = settings.registered_model, settings.dataset.name, settings.workdir, settings.retention
    dry = collect(*scope, str(remote), dry_run=True)
    assert usage(project) == before  # a dry run deletes nothing
    done = collect(*scope, str(remote))
    after = usage(project)
    print(json.dumps({"after three nights": three, "after twelve": before, "after gc": after,
                      "planned": dry.lines(done=False)}, indent=1))
    assert done.versions == dry.versions and done.versions  # old nights' versions went
    assert after["all"] <= 2 * three["all"], (three, after)
    assert after["mlruns"] <= 2 * three["mlruns"], (three, after)  # the registered models' weights went too
    assert len(nights("digits", "digits-classifier", None)) == 12  # each night's own run stays: the history

    client = MlflowClient()
    kept = client.search_model_versions("name = 'digits-classifier'")
    assert {str(v.version) for v in kept} == set(done.kept["versions"])
    assert len(done.kept["nights"]) <= 5  # the last three, and the nights of champion and previous-champion
    for version in sorted(kept, key=lambda v: int(v.version)):
        shutil.rmtree(project / ".genie" / "reproduce", ignore_errors=True)
        summary = genie_reproduce(f"digits-classifier@{version.version}", remote=str(remote))
        assert summary["verdict"] == "identical", (version.version, summary)
    assert os.listdir(project / "artifacts" / "digits" / ".store" / "generator")  # the generator stays
