"""A night with little new data costs little: another dataset beside it, 18 new images, data going back,
and code edits elsewhere leave the nightly's cached work in place (real Prefect, MLflow, DVC)."""
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image, ImageChops

from flows.pipeline import genie_prepare, genie_run
from models.config import Settings
from tasks import keys

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

TINY = {
    "classifier": {"epochs": 2},
    "finetune": {"epochs": 1},
    "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}},
    "select": {"per_target": 2, "shard_size": 8},
    "promote": {"min_improvement": 1.0},  # the champion stays put: these tests are about what is recomputed
}
REPO = Path(__file__).resolve().parents[2]


def versions() -> int:
    return len(MlflowClient().search_model_versions("name = 'digits-classifier'"))


def recomputed(summary: dict) -> list[str]:
    return [step for step, how in summary["step_log"].items() if how == "ran"]


def test_other_data_new_images_and_going_back(project: Path):
    settings = Settings.model_validate(TINY)
    genie_run(settings)
    registered = versions()

    foreign = project / "data" / "foreign"  # a second dataset under the same DVC-tracked data/
    for label in ("cat", "dog"):
        (foreign / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (60 * i, 100, 0 if label == "cat" else 200)).save(foreign / label / f"{i}.png")
    genie_prepare(Settings.model_validate({"dataset": {"name": "foreign", "path": str(foreign), "embedded": False}}))
    unchanged = genie_run(settings)
    assert recomputed(unchanged) == [] and versions() == registered

    new = []  # 18 new digits (1%): shifted copies of existing ones
    for i, source in enumerate(sorted((project / "data/digits").glob("*/*.png"))[::100][:18]):
        new.append(source.with_name(f"new-{i}.png"))
        ImageChops.offset(Image.open(source), 1, 0).save(new[-1])
    grown = genie_run(settings)
    assert grown["step_log"]["train-generator"] == "reused" and "train split +" in grown["generator"]
    assert {"train-classifier", "finetune-classifier", "evaluate-challenger"} <= set(recomputed(grown))
    assert grown["generated"]["existing"] > 0  # only the missing edits are made

    for path in new:  # back to yesterday's data
        path.unlink()
    back = genie_run(settings)
    assert recomputed(back) == [] and back["step_log"]["train-generator"] == "reused"
    assert back["challenger_version"] == unchanged["challenger_version"] and versions() == registered + 2


@pytest.fixture
def code_copy(tmp_path_factory, monkeypatch) -> Path:
    """The project's code copied aside and used for the cache keys' code identity, so a test can edit it."""
    code = tmp_path_factory.mktemp("code")
    for package in ("flows", "models", "tasks"):
        shutil.copytree(REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(keys, "ROOT", code)
    keys.module_closure.cache_clear()
    keys.code_digest.cache_clear()
    yield code
    keys.module_closure.cache_clear()
    keys.code_digest.cache_clear()


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")
    keys.module_closure.cache_clear()
    keys.code_digest.cache_clear()


def test_code_edits_recompute_only_the_steps_that_run_that_code(project: Path, code_copy: Path):
    settings = Settings.model_validate(TINY)
    genie_run(settings)
    edit(code_copy / "models/benchmarks/report.py")
    assert recomputed(genie_run(settings)) == []
    edit(code_copy / "models/classifier.py")
    after = genie_run(settings)
    assert {"train-classifier", "evaluate-baseline", "finetune-classifier"} <= set(recomputed(after))
    assert after["step_log"]["train-generator"] == "reused" and "split-data" not in recomputed(after)
