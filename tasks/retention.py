"""`genie gc`: what `retention` keeps, and the deletion of the rest. Kept: the last `keep_nights` nights and the
nights of champion and previous-champion (the classifier versions they registered, with their runs, checkpoints
and logged models; the images they used); every night's own run (small: what `genie history` reads); every
generator and adapter version; what the workspace's DVC pointers name. Every deletion is of
something no kept version records, one object at a time, registry first: a gc killed at any point leaves the
kept versions whole, and the next gc finishes the rest."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from models.config import RetentionConfig
from tasks.history import newest_runs, night_tables
from tasks.registry import CHAMPION, PREVIOUS, at_alias

# never collected: a generator or an adapter costs minutes to remake, and the benchmarks are not nights
KEEP_STORE = ("generator", "adapters", "benchmark")


@dataclass
class Plan:
    """What goes: registry versions, MLflow runs (their artifacts and logged models) and files, with bytes."""

    versions: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    logged_models: list[str] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)  # what -> paths
    bytes: dict[str, int] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)

    def lines(self, done: bool) -> str:
        counts = {"versions' runs and models": (len(self.runs), self.bytes.get("mlflow", 0))} | {
            WHAT[what]: (len(paths), self.bytes[what]) for what, paths in self.files.items()}
        rows = [f"  classifier versions   {', '.join(self.versions) or 'none'}"] + [
            f"  {what:<21} {count:>6}  {mb(size_)}" for what, (count, size_) in counts.items()]
        return "\n".join([f"{'deleted' if done else 'would delete (dry run)'}: {mb(self.total)} in all", *rows,
                          f"kept: {len(self.kept['nights'])} nights, classifier versions "
                          f"{', '.join(self.kept['versions']) or 'none'}"])

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


WHAT = {"work": "work-folder entries", "images": "generated images", "dvc_cache": "DVC cache objects",
        "dvc_remote": "DVC remote objects"}


def mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def local_path(uri: str) -> Path | None:
    """A file: URI or plain path as a folder on this machine; None for a server's or a cloud's."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    return None


def artifact_bytes(uri: str) -> int:
    """The bytes under an artifact location on this machine; 0 for a server's (not counted)."""
    path = local_path(uri)
    return size(path) if path else 0


def plan(name: str, dataset: str, workdir: Path, rules: RetentionConfig, remote: str | None = None,
         now: float | None = None) -> Plan:
    client = MlflowClient()
    now = time.time() if now is None else now
    out = Plan()
    nights = newest_runs(dataset, "tags.pipeline = 'genie-run'", None)
    kept_nights = {run.info.run_id for run in nights[: rules.keep_nights]}
    for alias in (CHAMPION, PREVIOUS):
        version = at_alias(name, alias)
        if version is not None and version.tags.get("pipeline_run_id"):
            kept_nights.add(version.tags["pipeline_run_id"])
    # what the work folder holds from before the newest night that is not kept ended is no kept night's: only
    # caches of steps (a step whose folder is gone runs again), and images the kept nights' lists do not name
    cutoff = max(((run.info.end_time or run.info.start_time) / 1000 for run in nights
                  if run.info.run_id not in kept_nights), default=0)

    kept_versions = []
    for version in client.search_model_versions(f"name = '{name}'"):
        night = version.tags.get("pipeline_run_id")
        if not night or night in kept_nights:  # one registered with no night recorded is never ours to delete
            kept_versions.append(version)
        else:
            out.versions.append(str(version.version))
            out.logged_models += [model] if (model := logged_model(version)) else []
    out.kept = {"nights": sorted(kept_nights), "versions": sorted((str(v.version) for v in kept_versions), key=int)}

    # a night's own run stays, small (its metrics, tables, configuration): `genie history` reads every night; its
    # children, which hold the versions' checkpoints, go with the versions
    gone = {run.info.run_id for run in nights if run.info.run_id not in kept_nights}
    needed = {version.run_id for version in kept_versions}
    experiment = nights[0].info.experiment_id if nights else None
    if experiment is not None and gone:
        children = client.search_runs([experiment], "", run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)
        out.runs = sorted(run.info.run_id for run in children if run.data.tags.get("mlflow.parentRunId") in gone
                          and run.info.run_id not in needed)
    out.bytes["mlflow"] = sum(artifact_bytes(client.get_run(r).info.artifact_uri) for r in out.runs) + sum(
        artifact_bytes(client.get_logged_model(m).artifact_location) for m in out.logged_models)

    out.files["work"] = [entry for store in [workdir / ".store", *workdir.glob("*/.store")]
                         if store.is_dir() and store.parent.name not in KEEP_STORE for step in store.iterdir()
                         if step.name not in KEEP_STORE for entry in step.iterdir() if entry.stat().st_mtime < cutoff]
    used = used_images([run for run in nights if run.info.run_id in kept_nights])
    old = min(cutoff, now - rules.generated_days * 86400)
    out.files["images"] = [image for image in (workdir / "generated").glob("*/??/*.png")
                           if image.name not in used and image.stat().st_mtime < old]
    keep = kept_md5s(kept_versions)
    out.files["dvc_cache"] = unreferenced(Path(".dvc/cache"), keep)
    if remote:
        folder = local_path(remote)
        if folder is None or not folder.is_dir():
            raise ValueError(f"--remote {remote}: genie gc collects a DVC remote that is a folder on this machine "
                             "(a shared folder); for s3://, ssh://, ... use the storage's own lifecycle rules")
        out.files["dvc_remote"] = unreferenced(folder, keep)
    for what, paths in out.files.items():
        out.bytes[what] = sum(size(p) for p in paths)
    return out


def logged_model(version) -> str | None:
    """The logged model a version was registered from (its source `models:/m-...`, where the store does not return
    the version's model_id)."""
    if version.model_id:
        return version.model_id
    return version.source.removeprefix("models:/") if version.source.startswith("models:/m-") else None


def used_images(nights: list) -> set[str]:
    """The image files (names) the given nights fine-tuned on, from each night's `generated/used.csv`."""
    tables = night_tables([run.info.run_id for run in nights], "generated/used.csv")
    return {Path(image).name for table in tables.values() for image in table["image"]}


def kept_md5s(versions: list) -> set[str]:
    """The DVC folders (md5 of each .dir listing) kept versions record, and those the workspace's pointers name."""
    keep = {v.tags.get(tag, "") for v in versions for tag in ("data_dvc_md5", "generated_dvc_md5")}
    pointers = [p for p in Path(".").rglob("*.dvc") if not p.parts[0].startswith(".")]  # not .genie's copies
    for pointer in [*pointers, Path("dvc.lock")]:
        if pointer.is_file():
            keep |= set(_md5s(yaml.safe_load(pointer.read_text())))
    return {md5 for md5 in keep if md5}


def _md5s(tree) -> list[str]:
    if isinstance(tree, dict):
        return [str(v) for k, v in tree.items() if k == "md5"] + [m for v in tree.values() for m in _md5s(v)]
    return [m for v in tree for m in _md5s(v)] if isinstance(tree, list) else []


def _object(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


def unreferenced(root: Path, keep: set[str]) -> list[Path]:
    """DVC objects under `root` (a cache or a local remote: one layout) that no kept folder lists."""
    if not (root / "files" / "md5").is_dir():
        return []
    needed = set()
    for md5 in keep:
        needed.add(md5)
        listing = _object(root, md5)
        if md5.endswith(".dir") and listing.is_file():
            needed |= {entry["md5"] for entry in json.loads(listing.read_text())}
    return [path for path in (root / "files" / "md5").glob("??/*")
            if path.parent.name + path.name not in needed and not path.name.endswith(".lock")]


def collect(name: str, dataset: str, workdir: Path, rules: RetentionConfig, remote: str | None = None,
            dry_run: bool = False) -> Plan:
    """`genie gc` once the dataset is held: the plan for classifier `name` and the `dataset`'s nights and work
    folder, applied unless `dry_run`."""
    found = plan(name, dataset, workdir, rules, remote)
    if not dry_run:
        apply(found, name)
    return found


def apply(plan_: Plan, name: str) -> None:
    """Registry versions first, then logged models and runs (purged where the store is on this machine), then
    files: at every point, what is left is consistent and the next gc takes the rest."""
    client = MlflowClient()
    for version in plan_.versions:
        client.delete_model_version(name, version)
    for model_id in plan_.logged_models:
        client.delete_logged_model(model_id)
    for run_id in plan_.runs:
        client.delete_run(run_id)
    purge()
    for paths in plan_.files.values():
        for path in paths:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def purge() -> None:
    """`mlflow gc`: every deleted run and logged model purged with its artifacts (those of an earlier, killed gc
    too), where the store is a database or folder of this machine; a server's store is purged by its own
    `mlflow gc` (docs/operations.md)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("sqlite:", "file:")):
        subprocess.run([str(Path(sys.executable).parent / "mlflow"), "gc", "--backend-store-uri", uri], check=True,
                       capture_output=True, text=True)
