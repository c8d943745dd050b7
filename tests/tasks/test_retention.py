"""genie gc's rules on a real MLflow store, with no training: what it keeps by reference, that its dry run lists
what it deletes, that a gc killed midway is finished by the next, that a copied folder's gc touches nothing of the
original, that a registry error stops it before any deletion, and that shared DVC storage is collected as shared."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.config import RetentionConfig
from tasks.deletion import JOURNAL, collect, journal
from tasks.retention import Unreadable, plan
from tests.proxy import faulty, tracking_server
from tests.tasks.store import DATASET, NAME, registry

RULES = RetentionConfig(keep_nights=1, generated_days=0, grace_hours=0)

def artifacts(client: MlflowClient, run_id: str) -> Path:
    return Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))


def test_gc_keeps_by_reference_and_deletes_what_its_dry_run_listed(project):
    made = registry(project)
    client = MlflowClient()
    a_person_deleted = client.create_run(made["experiment"]).info.run_id
    client.delete_run(a_person_deleted)  # in the UI's bin, meaning to restore it: not gc's
    dry = collect(NAME, DATASET, project / "work", RULES, dry_run=True)
    assert dry.versions == ["2", "6"]
    assert dry.kept == {"1": "the base of v5", "3": "alias production", "4": "waits for a person",
                        "5": "alias champion"}, dry.kept
    assert dry.nights == 1  # the failed, newer night does not count
    gone = [made["versions"][v] for v in ("2", "6")]
    folders = [artifacts(client, run) for run, _ in gone]
    assert all(folder.is_dir() for folder in folders)

    done = collect(NAME, DATASET, project / "work", RULES)
    print(done.lines(done=True, every=True))
    assert done.items() == dry.items() and not done.failed
    assert done.total == dry.total > 0
    left = {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    assert left == {"1", "3", "4", "5"}
    for run, model in gone:
        with pytest.raises(MlflowException, match="not found|does not exist"):
            client.get_run(run)  # purged
    assert not any(folder.exists() for folder in folders)
    assert {m.model_id for m in client.search_logged_models([made["experiment"]])} == {
        made["versions"][v][1] for v in left}
    assert all(client.get_run(night) for night in made["nights"])  # each night's own run stays
    assert client.get_run(a_person_deleted).info.lifecycle_stage == "deleted"  # not purged by genie's gc
    assert not (project / "work" / JOURNAL).exists()


def test_a_gc_killed_after_its_versions_is_finished_by_the_next(project):
    made = registry(project)
    client = MlflowClient()
    found = plan(NAME, DATASET, project / "work", RULES)
    journal(project / "work", found)  # what apply writes first; then the kill comes after the versions went
    for version in found.versions:
        client.delete_model_version(NAME, version)
    orphans = [made["versions"][v] for v in found.versions]
    assert {m.model_id for m in client.search_logged_models([made["experiment"]])} >= {m for _, m in orphans}

    done = collect(NAME, DATASET, project / "work", RULES)
    assert done.versions == [] and sorted(done.logged_models) == sorted(m for _, m in orphans)
    assert {m.model_id for m in client.search_logged_models([made["experiment"]])} == {
        made["versions"][v][1] for v in ("1", "3", "4", "5")}
    for run, _ in orphans:
        with pytest.raises(MlflowException):
            client.get_run(run)
    assert not (project / "work" / JOURNAL).exists()


def test_a_copied_folders_gc_refuses_the_originals_artifacts(project, monkeypatch):
    made = registry(project)
    copy = project.parent / f"{project.name}-copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    with pytest.raises(Unreadable, match=f"outside this store's folder {copy}.*{project}") as refused:
        collect(NAME, DATASET, copy / "work", RULES)
    print(refused.value)
    assert len(str(refused.value).splitlines()) == 1
    assert len(MlflowClient().search_model_versions(f"name = '{NAME}'")) == 6  # nothing deleted in the copy
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    assert all(artifacts(MlflowClient(), run).is_dir() for run, _ in made["versions"].values())


@pytest.fixture
def server(project):
    with tracking_server(project / "mlflow.db") as url:
        yield url


def test_a_read_error_stops_gc_before_any_deletion(project, server, monkeypatch):
    made = registry(project)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for failing in ("registered-models/get", "runs/search", "model-versions/search"):
        with faulty(server, (failing,)) as faults:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", faults.url)
            with pytest.raises(Unreadable, match="genie gc deleted nothing: could not read") as stopped:
                collect(NAME, DATASET, project / "work", RULES)
            assert faults.refused
            print(stopped.value)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
        assert len(MlflowClient().search_model_versions(f"name = '{NAME}'")) == 6
        assert {a: str(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()} == {
            "production": "3", "champion": "5"}
    assert all(artifacts(MlflowClient(), run).is_dir() for run, _ in made["versions"].values())


def dvc_object(root: Path, md5: str, text: str = "x", age_hours: float = 48) -> Path:
    path = root / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    past = time.time() - age_hours * 3600
    os.utime(path, (past, past))
    return path


def test_shared_dvc_storage_keeps_what_any_dataset_or_git_ref_names(project):
    registry(project)  # digits' versions name 1..6.dir; v2 and v6 go, so theirs go too
    client = MlflowClient()
    run = client.create_run(client.create_experiment("scenes")).info.run_id
    client.create_registered_model("scenes-classifier")
    client.create_model_version("scenes-classifier", f"runs:/{run}/model", run_id=run,
                                tags={"data_dvc_md5": "a" * 32 + ".dir"})
    cache = project / ".dvc" / "cache"
    listing = '[{"md5": "%s", "relpath": "x.png"}]'
    scenes = [dvc_object(cache, "a" * 32 + ".dir", listing % ("b" * 32)), dvc_object(cache, "b" * 32)]
    digits_gone = dvc_object(cache, f"{2:032x}.dir", "[]")
    digits_kept = dvc_object(cache, f"{5:032x}.dir", "[]")
    young = dvc_object(cache, "c" * 32, age_hours=1)
    unnamed = dvc_object(cache, "d" * 32)
    in_a_branch = dvc_object(cache, "e" * 32)
    subprocess.run(["git", "init", "-q"], check=True)
    Path("old.dvc").write_text(f"outs:\n- md5: {'e' * 32}\n  path: old\n")
    subprocess.run(["git", "add", "old.dvc"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "old data"], check=True)
    Path("old.dvc").unlink()  # named by the branch only, not by the work tree

    done = collect(NAME, DATASET, project / "work", RetentionConfig(keep_nights=1, generated_days=0, grace_hours=24))
    assert sorted(p.resolve() for p in done.files["dvc_cache"]) == sorted([digits_gone, unnamed])
    assert not digits_gone.exists() and not unnamed.exists()
    assert all(p.exists() for p in [*scenes, digits_kept, young, in_a_branch])


def test_a_lineage_whose_night_is_gone_says_so_in_one_line(project):
    from tasks.registry import lineage

    registry(project)
    MlflowClient().set_model_version_tag(NAME, "2", "pipeline_run_id", "0" * 32)  # its night purged by hand
    with pytest.raises(ValueError, match=f"{NAME}@2: its night's run 0{{32}} is gone") as gone:
        lineage(f"{NAME}@2")
    assert len(str(gone.value).splitlines()) == 1
