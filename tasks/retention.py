"""`genie gc`: what `retention` keeps, by reference, and the plan of what goes. A classifier version stays when it
has any alias, when it is the challenger waiting for a person, when its night is among the last `keep_nights` nights
that reached evaluate, or when a kept version names it (its base version); with it stay its run, checkpoint, logged
model and the images its night used. Every night's own run stays (`genie history` reads it); generators and adapters
are never collected; DVC objects go only when nothing names them (tasks/dvc_objects.py). Every read is checked: an
error other than "not found" stops gc before its first deletion. tasks/deletion.py carries the plan out."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.config import RetentionConfig
from models.promotion import DECISIONS
from tasks.dvc_objects import named_md5s, unreferenced
from tasks.history import newest_runs, night_tables
from tasks.stores import every_version, local_path, missing, outside_store, size, store_folder

# never collected: a generator or an adapter costs minutes to remake, and the benchmarks are not nights
KEEP_STORE = ("generator", "adapters", "benchmark")
EVALUATED = "challenger.test.accuracy"  # a night that logged it reached evaluate: such nights are counted
WHAT = {"work": "work-folder entries", "images": "generated images", "dvc_cache": "DVC cache objects",
        "dvc_remote": "DVC remote objects"}


class Unreadable(RuntimeError):
    """A read gc cannot trust: it deletes nothing (fail closed)."""


@contextmanager
def reading(what: str):
    """Any error but "not found" while reading `what` stops gc, naming it, before anything is deleted."""
    try:
        yield
    except MlflowException as err:
        raise Unreadable(f"genie gc deleted nothing: could not read {what}: "
                         f"{(str(err.message).splitlines() or ['?'])[0]}") from None
    except OSError as err:
        raise Unreadable(f"genie gc deleted nothing: could not read {what}: {err}") from None


@dataclass
class Plan:
    """What goes (registry versions, MLflow runs and logged models, files) with bytes, and why each kept version
    stays."""

    versions: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    logged_models: list[str] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)  # what -> paths
    bytes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # run or logged model id -> its artifacts' bytes here
    kept: dict[str, str] = field(default_factory=dict)  # version -> why it stays
    nights: int = 0  # the recent nights kept
    failed: list[str] = field(default_factory=list)  # deletions that did not happen, one line each

    def lines(self, done: bool, every: bool = False) -> str:
        counts = {"runs and logged models": (len(self.runs) + len(self.logged_models), self.bytes.get("mlflow", 0))} | {
            WHAT[what]: (len(paths), self.bytes[what]) for what, paths in self.files.items()}
        rows = [f"  classifier versions   {', '.join(self.versions) or 'none'}"] + [
            f"  {what:<22} {count:>5}  {mb(size_)}" for what, (count, size_) in counts.items()]
        kept = "; ".join(f"v{version} ({why})" for version, why in sorted(self.kept.items(), key=lambda kv: int(kv[0])))
        out = [f"{'deleted' if done else 'would delete (dry run)'}: {mb(self.total)} in all", *rows,
               f"kept: {self.nights} recent nights (of those that reached evaluate); classifier versions "
               f"{kept or 'none'}"]
        if every:
            out += self.items()
        if self.failed:
            out += [f"{len(self.failed)} deletions failed (not counted; the next gc tries again):", *self.failed]
        return "\n".join(out)

    def items(self) -> list[str]:
        """Every id and path the plan deletes, one a line: the dry run's list is the real run's."""
        return ([f"  version {v}" for v in self.versions] + [f"  logged model {m}" for m in self.logged_models]
                + [f"  run {r}" for r in self.runs]
                + [f"  {what} {path}" for what, paths in self.files.items() for path in sorted(paths)])

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


def mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def keep(versions: dict, aliases: dict[str, str], recent: set[str], waiting: str | None) -> dict[str, str]:
    """Why each kept version stays (version -> reason), in the rules' order; a version absent is not kept."""
    reasons: dict[str, str] = {}
    for alias, version in sorted(aliases.items()):
        reasons[version] = f"{reasons[version]}, {alias}" if version in reasons else f"alias {alias}"
    for number, version in versions.items():
        night = version.tags.get("pipeline_run_id")
        if number in reasons:
            continue
        if number == waiting:
            reasons[number] = "waits for a person"
        elif not night:
            reasons[number] = "registered by no night"  # never ours to delete
        elif night in recent:
            reasons[number] = "a recent night's"
    named = list(reasons)
    while named:  # what a kept version names is kept with it
        number = named.pop(0)  # in the rules' order: a base is named by the first version that names it
        base = versions[number].tags.get("base_version", "") if number in versions else ""
        if base in versions and base not in reasons:
            reasons[base] = f"the base of v{number}"
            named.append(base)
    return {number: why for number, why in reasons.items() if number in versions}


def waiting_version(name: str) -> str | None:
    """The newest challenger the decision log says waits for a person."""
    with reading("the decision log"):
        rows = newest_runs(f"{name}-{DECISIONS}", "tags.action = 'waiting'", 1)
    return rows[0].data.tags.get("version") if rows else None


def plan(name: str, dataset: str, workdir: Path, rules: RetentionConfig, remote: str | None = None,
         now: float | None = None, leftover: dict | None = None) -> Plan:
    """What gc deletes for classifier `name` and the `dataset`'s nights and work folder; `leftover`: what a killed gc
    journaled, whose orphans this one finishes."""
    client, now = MlflowClient(), time.time() if now is None else now
    with reading(f"the nights of {dataset}"):
        experiment = client.get_experiment_by_name(dataset)
        nights = newest_runs(dataset, "tags.pipeline = 'genie-run'", None)
    refuse_outside([experiment.artifact_location] if experiment else [])
    recent = [run for run in nights if EVALUATED in run.data.metrics][: rules.keep_nights]
    with reading(f"the registry's versions of {name}"):
        versions = {str(v.version): v for v in every_version(f"name = '{name}'")}
        aliases = client.get_registered_model(name).aliases if versions else {}
    kept = keep(versions, {alias: str(v) for alias, v in aliases.items()}, {r.info.run_id for r in recent},
                waiting_version(name))
    out = Plan(kept=kept, nights=len(recent))
    gone = [v for number, v in versions.items() if number not in kept]
    out.versions = sorted((str(v.version) for v in gone), key=int)
    live = {v.run_id for number, v in versions.items() if number in kept} | {
        logged_model(v) for number, v in versions.items() if number in kept}
    out.logged_models = [m for v in gone if (m := logged_model(v))]
    out.runs = sorted({v.run_id for v in gone} | children(client, nights, kept, versions))
    for what, ids in (leftover or {}).items():  # a killed gc's orphans: what no version still leads to
        target = out.runs if what == "runs" else out.logged_models if what == "logged_models" else None
        if target is not None:
            target += [i for i in ids if i not in live and i not in target]
    out.runs = [run for run in out.runs if run not in live]
    out.sizes = mlflow_bytes(client, out.runs, out.logged_models)
    out.bytes["mlflow"] = sum(out.sizes.values())

    kept_nights = {r.info.run_id for r in recent} | {versions[n].tags.get("pipeline_run_id") for n in kept}
    # a work-folder entry untouched (made or hit) since before the oldest recent night began serves no recent
    # night (only caches of steps: a step whose folder is gone runs again)
    cutoff = recent[-1].info.start_time / 1000 if len(recent) == rules.keep_nights else 0
    out.files["work"] = [entry for store in [workdir / ".store", *workdir.glob("*/.store")]
                         if store.is_dir() and store.parent.name not in KEEP_STORE for step in store.iterdir()
                         if step.name not in KEEP_STORE for entry in step.iterdir() if entry.stat().st_mtime < cutoff]
    used = used_images([run.info.run_id for run in nights if run.info.run_id in kept_nights])
    old = min(cutoff, now - rules.generated_days * 86400)
    out.files["images"] = [image for image in (workdir / "generated").glob("*/??/*.png")
                           if image.name not in used and image.stat().st_mtime < old]
    with reading("the registry's versions of every model"):
        named = named_md5s(set(out.versions), name)
    young = now - rules.grace_hours * 3600
    out.files["dvc_cache"] = unreferenced(Path(".dvc/cache"), named, young)
    if remote:
        folder = local_path(remote)
        if folder is None or not folder.is_dir():
            raise ValueError(f"--remote {remote}: genie gc collects a DVC remote that is a folder on this machine "
                             "(a shared folder); for s3://, ssh://, ... use the storage's own lifecycle rules")
        out.files["dvc_remote"] = unreferenced(folder, named, young)
    for what, paths in out.files.items():
        out.bytes[what] = sum(size(p) for p in paths)
    return out


def children(client: MlflowClient, nights: list, kept: dict[str, str], versions: dict) -> set[str]:
    """The child runs of nights none of whose versions is kept (a night's own run stays: the history reads it)."""
    kept_nights = {versions[n].tags.get("pipeline_run_id") for n in kept}
    gone = {run.info.run_id for run in nights} - kept_nights
    if not nights or not gone:
        return set()
    with reading("the nights' child runs"):
        found = client.search_runs([nights[0].info.experiment_id], "", run_view_type=ViewType.ACTIVE_ONLY,
                                   max_results=50000)
    return {run.info.run_id for run in found if run.data.tags.get("mlflow.parentRunId") in gone}


def mlflow_bytes(client: MlflowClient, runs: list[str], logged_models: list[str]) -> dict[str, int]:
    """The bytes under each run's and logged model's artifact location on this machine; a location outside the
    store's folder (a copy of another project's store) stops gc, naming it."""
    locations = {}
    for ident, read in [(r, lambda r: client.get_run(r).info.artifact_uri) for r in runs] + [
            (m, lambda m: client.get_logged_model(m).artifact_location) for m in logged_models]:
        with reading(f"the artifact location of {ident}"):
            try:
                locations[ident] = read(ident)
            except MlflowException as err:
                if not missing(err):  # purged by an earlier, killed gc: nothing left
                    raise
    refuse_outside(list(locations.values()))
    return {ident: size(path) if (path := local_path(location)) else 0 for ident, location in locations.items()}


def refuse_outside(locations: list[str]) -> None:
    """Stop, naming them, at artifact locations outside the store's folder: MLflow records absolute paths, so a
    copied project folder's store still names the original's artifacts."""
    refused = outside_store(locations)
    if refused:
        raise Unreadable(f"genie gc deleted nothing: {len(refused)} artifact location(s) lie outside this store's "
                         f"folder {store_folder()} (a copy of another project's folder?), and it touches none of "
                         f"them: {', '.join(refused[:3])}" + (", ..." if len(refused) > 3 else ""))


def logged_model(version) -> str | None:
    """The logged model a version was registered from (its source `models:/m-...`, where the store does not return
    the version's model_id)."""
    if version.model_id:
        return version.model_id
    return version.source.removeprefix("models:/") if version.source.startswith("models:/m-") else None


def used_images(run_ids: list[str]) -> set[str]:
    """The image files (names) the given nights fine-tuned on, from each night's `generated/used.csv`."""
    with reading("the kept nights' generated/used.csv"):
        tables = night_tables(run_ids, "generated/used.csv", strict=True)
    return {Path(image).name for table in tables.values() for image in table["image"]}
