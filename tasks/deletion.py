"""`genie gc` carried out. The plan is journaled before the first deletion; then each version goes, then the logged
models and runs no remaining version leads to, purged by id (these only: `mlflow gc` given run ids alone still purges
every deleted logged model and experiment of the store), then the files. A gc killed at any point leaves every kept
version whole, and the next gc reads the journal and finishes what it left."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.config import RetentionConfig
from models.locks import locked
from tasks.retention import Plan, logged_model, plan, reading
from tasks.stores import every_version, local_path, missing, outside_store, size, store_folder

JOURNAL = "gc-journal.json"
LOCK = ".genie-gc.lock"  # in a shared remote's folder: one gc of it at a time, whichever machine


def collect(name: str, dataset: str, workdir: Path, rules: RetentionConfig, remote: str | None = None,
            dry_run: bool = False) -> Plan:
    """`genie gc` once the dataset is held: the plan for classifier `name` and the `dataset`'s nights and work
    folder (and a killed gc's leftovers), applied unless `dry_run`."""
    folder = local_path(remote) if remote else None
    hold = locked(folder, "genie gc", wait=False, name=LOCK) if folder and folder.is_dir() and not dry_run \
        else nullcontext()
    with hold:
        found = plan(name, dataset, workdir, rules, remote, leftover=journaled(workdir))
        if not dry_run:
            apply(found, name, workdir)
    return found


def journaled(workdir: Path) -> dict:
    """What a gc that did not finish had planned to delete (runs and logged models by id)."""
    path = workdir / JOURNAL
    return json.loads(path.read_text()) if path.is_file() else {}


def journal(workdir: Path, found: Plan) -> None:
    """Written whole, then renamed: a kill leaves the old journal or the new one, never half of one."""
    workdir.mkdir(parents=True, exist_ok=True)
    partial = workdir / f"{JOURNAL}.{os.getpid()}"
    partial.write_text(json.dumps({"versions": found.versions, "runs": found.runs,
                                   "logged_models": found.logged_models}))
    partial.replace(workdir / JOURNAL)


def apply(found: Plan, name: str, workdir: Path) -> None:
    """Versions first; then the logged models and runs that no version left leads to (a version whose deletion
    failed keeps its own); their artifacts purged where the store is on this machine; then the files. What fails
    is reported in `found.failed` and taken out of the counts."""
    journal(workdir, found)
    client = MlflowClient()
    for version in list(found.versions):
        attempt(found, found.versions, version, lambda: client.delete_model_version(name, version), "version")
    with reading(f"the registry's versions of {name}"):
        left = every_version(f"name = '{name}'")
    live = {v.run_id for v in left} | {logged_model(v) for v in left}
    for items, label in ((found.logged_models, "logged model"), (found.runs, "run")):
        for ident in [i for i in items if i in live]:
            drop(found, items, ident, f"{label} {ident}", "a version still leads to it")
    for model_id in list(found.logged_models):
        attempt(found, found.logged_models, model_id, lambda: gone_ok(client.delete_logged_model, model_id),
                "logged model")
    for run_id in list(found.runs):
        attempt(found, found.runs, run_id, lambda: gone_ok(client.delete_run, run_id), "run")
    purge(found)
    for what, paths in found.files.items():
        for path in list(paths):
            attempt(found, paths, path, lambda: remove(path), what)
    if not found.failed:
        (workdir / JOURNAL).unlink(missing_ok=True)


def attempt(found: Plan, items: list, key, delete, label: str) -> None:
    """One deletion; a failure is reported, and the next gc tries again."""
    try:
        delete()
    except Exception as err:  # noqa: BLE001 - whatever the store or the disk said
        drop(found, items, key, f"{label} {key}", (str(err).strip().splitlines() or [type(err).__name__])[0])


def drop(found: Plan, items: list, key, item: str, why: str) -> None:
    """`key` was not deleted: reported, and out of its list and of the bytes freed."""
    items.remove(key)
    what = next((what for what, paths in found.files.items() if paths is items), None)
    if what is None:
        found.bytes["mlflow"] -= found.sizes.pop(key, 0)
    else:
        found.bytes[what] -= size(key)
    found.failed.append(f"  {item}: {why}")


def gone_ok(delete, ident: str) -> None:
    """A deletion an earlier, killed gc already made is done."""
    try:
        delete(ident)
    except MlflowException as err:
        if not missing(err):
            raise


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def inside(location: str) -> None:
    if outside_store([location]):
        raise ValueError(f"{location} lies outside this store's folder {store_folder()}: left alone")


def purge(found: Plan) -> None:
    """The deleted runs and logged models, and their artifacts, removed for good where the store is on this machine
    (a server's store is purged by its own `mlflow gc`, docs/operations.md). Only the ids this gc deleted."""
    if store_folder() is None:
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store()

    def forever(ident: str, read, location_of, hard_delete) -> None:
        try:
            found_one = read(ident)
        except MlflowException as err:
            if missing(err):
                return  # purged by an earlier gc
            raise
        location = location_of(found_one)
        inside(location)
        get_artifact_repository(location).delete_artifacts()
        hard_delete(ident)  # what `mlflow gc` calls, for one id

    for items, label, read, location_of, hard_delete in (
            (found.runs, "purge of run", store.get_run, lambda run: run.info.artifact_uri, store._hard_delete_run),
            (found.logged_models, "purge of logged model", lambda m: store.get_logged_model(m, allow_deleted=True),
             lambda model: model.artifact_location, store._hard_delete_logged_model)):
        for ident in list(items):
            attempt(found, items, ident, lambda: forever(ident, read, location_of, hard_delete), label)
