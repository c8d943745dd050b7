"""genie backup and restore of a project's own store: what comes back is what went, in a new folder, and a missing
or damaged backup stops the restore before it writes anything."""
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.backup import backup, restore
from tests.tasks.store import NAME, registry


def state() -> dict:
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{NAME}'")
    return {"versions": sorted((v.version, v.run_id, v.tags["base_version"]) for v in versions),
            "aliases": {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()},
            "weights": sorted(Path(client.get_run(v.run_id).info.artifact_uri.removeprefix("file://"))
                              .joinpath("model", "model.safetensors").read_bytes() for v in versions)}


def test_a_restored_project_reads_what_was_backed_up(project, monkeypatch):
    registry(project)
    cache = project / ".dvc" / "cache" / "files" / "md5" / "ab"
    cache.mkdir(parents=True)
    (cache / ("c" * 30)).write_text("an image")
    before = state()
    made = backup(project.parent / f"{project.name}-backup")
    assert made["files"] >= 14  # the store, six checkpoints, six logged models, the DVC object

    new = project.parent / f"{project.name}-restored"
    restored = restore(project.parent / f"{project.name}-backup", new)
    assert restored["locations moved"] > 0
    monkeypatch.chdir(new)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{new / 'mlflow.db'}")
    assert state() == before
    for version in MlflowClient().search_model_versions(f"name = '{NAME}'"):
        assert MlflowClient().get_run(version.run_id).info.artifact_uri.startswith(f"{new}/mlruns/")
    assert (new / ".dvc" / "cache" / "files" / "md5" / "ab" / ("c" * 30)).read_text() == "an image"

    with pytest.raises(ValueError, match="already there"):
        restore(project.parent / f"{project.name}-backup", new)  # nothing overwritten
    with pytest.raises(ValueError, match="not empty"):
        backup(new)


def test_a_damaged_or_missing_backup_restores_nothing(project):
    registry(project)
    backup(project.parent / f"{project.name}-backup")
    weights = sorted((project.parent / f"{project.name}-backup" / "mlruns").rglob("model.safetensors"))[0]
    weights.write_bytes(b"\0" + weights.read_bytes()[1:])
    target = project.parent / f"{project.name}-restored"
    with pytest.raises(ValueError, match=f"{weights}: damaged") as stopped:
        restore(project.parent / f"{project.name}-backup", target)
    assert len(str(stopped.value).splitlines()) == 1 and not target.exists()
    with pytest.raises(ValueError, match="not a genie backup"):
        restore(project.parent / f"{project.name}-nowhere", target)
    assert not target.exists()
