"""Generation shards on a 2-worker local Dask cluster make byte-identical images to the default runner."""
import hashlib
import shutil
from pathlib import Path

import pytest

from flows.pipeline import genie_run
from flows.runner import with_runner
from models.config import Settings

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

TINY = {"classifier": {"epochs": 2}, "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}},
        "select": {"per_target": 2, "shard_size": 5}}


def images(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def test_dask_shards_match_the_default_runner(project: Path):
    default = Settings.model_validate(TINY)
    dask = Settings.model_validate(TINY | {"runner": {"kind": "dask", "dask_workers": 2}})
    genie_run(default, until="generate")
    generated = project / "artifacts" / "digits" / "generated"
    made = images(generated)
    shutil.rmtree(generated)  # the same edits again, now on the Dask workers: every shard runs anew
    second = with_runner(genie_run, dask)(dask, until="generate")
    shards = {k: v for k, v in second["step_log"].items() if k.startswith("generate-shard-")}
    assert len(shards) == 4 and set(shards.values()) == {"ran"} and second["generated"]["generated"] == 20
    assert len(made) == 20 and images(generated) == made
