"""Generation shards on a 2-worker local Dask cluster make byte-identical images to the default runner."""
import hashlib
from pathlib import Path

from flows.pipeline import genie_run
from flows.runner import with_runner
from models.config import Settings

TINY = {"classifier": {"epochs": 2}, "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}},
        "select": {"per_target": 2, "shard_size": 5}}


def images(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def test_dask_shards_match_the_default_runner(project: Path):
    # separate artifact folders, so neither run can take the other's cached shards
    default = Settings.model_validate(TINY | {"paths": {"artifacts": str(project / "default")}})
    dask = Settings.model_validate(TINY | {"paths": {"artifacts": str(project / "dask")},
                                           "runner": {"kind": "dask", "dask_workers": 2}})
    genie_run(default, until="generate")
    second = with_runner(genie_run, dask)(dask, until="generate")
    assert second["step_log"]["generate-shard-3"] == "ran" and second["generated"]["generated"] == 20
    made = images(project / "dask" / "digits" / "generated")
    assert len(made) == 20 and made == images(project / "default" / "digits" / "generated")
