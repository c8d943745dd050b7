"""A month of nights, shortened: twelve tiny nights, ten adding a few images (one adding a class, whose challengers
then wait for a person), two more on unchanged data with another fine-tune budget; two promotions by hand and an
alias `production` on an old version; then `genie gc` keeping one night. The disk stays bounded; every version with
an alias, the champion's base version (a baseline an older night registered) and the waiting challenger stay, and
what they name reproduces."""
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
from tasks.champion import promote_by_hand
from tasks.deletion import collect
from tasks.history import nights

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


def test_twelve_nights_then_gc_keeps_one_and_all_that_is_named(project: Path):
    remote = project / "remote"
    remote.mkdir()
    settings = Settings.model_validate(TINY | {"retention": {"keep_nights": 1, "generated_days": 0, "grace_hours": 0},
                                               "dvc": {"remote": {"url": str(remote)}}})
    client = MlflowClient()
    waiting = {}
    for night in range(1, 13):
        if 1 < night <= 10:
            add_images(project / "data" / "digits", night)
        tonight = settings if night <= 10 else settings.model_copy(  # unchanged data: the baseline is night 10's
            update={"finetune": settings.finetune.model_copy(update={"epochs": night - 9})})
        summary = genie_run(tonight)
        if summary.get("waiting"):
            waiting[night] = summary["challenger_version"]
        if night == 3:
            three = usage(project)
    before = usage(project)
    assert set(waiting) >= {8, 9, 10, 11, 12}, waiting  # from night 8 the data has a class the champion lacks
    promote_by_hand("digits-classifier", waiting[9])
    promote_by_hand("digits-classifier", waiting[11])
    client.set_registered_model_alias("digits-classifier", "production", "2")
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    named = {"2", waiting[9], waiting[11], champion.tags["base_version"], waiting[12]}

    scope = settings.registered_model, settings.dataset.name, settings.workdir, settings.retention
    dry = collect(*scope, str(remote), dry_run=True)
    assert usage(project) == before  # a dry run deletes nothing
    done = collect(*scope, str(remote))
    after = usage(project)
    print(json.dumps({"after three nights": three, "after twelve": before, "after gc": after,
                      "planned": dry.lines(done=False)}, indent=1))
    assert done.items() == dry.items() and done.versions and not done.failed  # old nights' versions went
    assert after["all"] <= 2 * three["all"], (three, after)
    assert after["mlruns"] <= 2 * three["mlruns"], (three, after)  # the registered models' weights went too
    assert len(nights("digits", "digits-classifier", None)) == 12  # each night's own run stays: the history

    kept = {str(v.version) for v in client.search_model_versions("name = 'digits-classifier'")}
    assert kept == set(done.kept) and named <= kept, (named, done.kept)
    for reference in ("digits-classifier@champion", "digits-classifier@production"):
        shutil.rmtree(project / ".genie" / "reproduce", ignore_errors=True)
        summary = genie_reproduce(reference, remote=str(remote))
        assert summary["verdict"] == "identical", (reference, summary)
    assert os.listdir(project / "artifacts" / "digits" / ".store" / "generator")  # the generator stays
