"""`genie reproduce NAME@VERSION`: a registered classifier made again from what its version records. The data and
the generated images come from the DVC remote by their md5s, the generator from the registry by its weights
digest, the configuration from its pipeline run; the baseline (and for a challenger, its fine-tune) is trained
again in a folder of its own, and each weights digest is set beside the registered one."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from flows.stages import StepLog, finetune, split_of, train_baseline
from models.config import Settings
from models.determinism import machine, pin_runtime
from models.digests import model_identity
from models.locks import locked
from tasks.data import DataVersion
from tasks.keys import images_digest
from tasks.registry import find_version, restore_generator, version_of
from tasks.tracking import CONFIG
from tasks.versioning import dvc, dvc_md5

ROLES = ("baseline", "finetuned")  # what a night registers, and so what can be made again


def recorded(version: ModelVersion) -> tuple[Settings, dict[str, str]]:
    """The configuration the version's night ran with, and the tags of that night's run."""
    where = f"{version.name} version {version.version}"
    tags = version.tags
    if tags.get("role") not in ROLES:
        raise ValueError(f"{where}: role {tags.get('role', 'unknown')!r}; reproduce makes again what a night "
                         f"registers ({', '.join(ROLES)})")
    if not tags.get("data_dvc_md5") or not tags.get("pipeline_run_id"):
        raise ValueError(f"{where} records no data_dvc_md5 or pipeline run: registered before genie-flow recorded "
                         "what reproduce needs")
    try:
        config = mlflow.artifacts.load_dict(f"runs:/{tags['pipeline_run_id']}/{CONFIG}")
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for an artifact that is not there
        raise ValueError(f"{where}: its pipeline run {tags['pipeline_run_id']} has no {CONFIG}") from None
    return Settings.model_validate(config), MlflowClient().get_run(tags["pipeline_run_id"]).data.tags


def pointer(root: Path, name: str, md5: str) -> None:
    """A .dvc file that names a folder by its md5, as `dvc add` writes it: `dvc pull` fetches exactly that."""
    (root / f"{name}.dvc").write_text(yaml.safe_dump({"outs": [{"md5": md5, "hash": "md5", "path": name}]}))


def check(registered: str, reproduced: str) -> dict[str, str]:
    return {"registered": registered, "reproduced": reproduced,
            "check": "identical" if registered == reproduced else "different"}


def local_cache(project: Path = Path(".")) -> str | None:
    """This checkout's DVC cache, which holds every md5 a night on this machine recorded: the remote to fetch from
    when the night pushed to none (DVC's cache and a remote share one layout)."""
    cache = (project / ".dvc" / "cache").resolve()
    return str(cache) if cache.is_dir() else None


def fetch(root: Path, tags: dict[str, str], remote: str) -> None:
    """The data and (for a challenger) the generated images, from the DVC remote into `root`."""
    if not (root / ".dvc").is_dir():
        dvc("init", "--no-scm", "--quiet", cwd=root)
    dvc("remote", "add", "--default", "--force", "origin", remote, cwd=root)
    pointer(root, Path(tags["data_dvc_file"]).stem, tags["data_dvc_md5"])
    if tags.get("generated_dvc_md5"):
        pointer(root, "generated", tags["generated_dvc_md5"])
    get_run_logger().info("fetching from the DVC remote %s into %s", remote, root)
    dvc("pull", "--quiet", cwd=root)


@flow(name="genie-reproduce")
def genie_reproduce(reference: str, folder: Path = Path(".genie/reproduce"), remote: str | None = None) -> dict:
    logger = get_run_logger()
    version = version_of(reference)
    settings, run_tags = recorded(version)
    tags, name = version.tags, version.name
    remote = remote or settings.dvc.remote.url or local_cache()
    if not remote:
        raise ValueError(f"{name} version {version.version}: its night pushed to no DVC remote (dvc.remote.url was "
                         "empty) and this checkout has no DVC cache, so its data cannot be fetched; --remote names "
                         "one that has it")
    if settings.dataset.path.is_absolute():
        raise ValueError(f"dataset.path {settings.dataset.path}: reproduce needs it relative to the project")
    root = (folder / f"{name}-v{version.version}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    with locked(root, f"genie reproduce {reference}"):
        fetch(root, tags, remote)
        # the night's configuration, with its data and work folder moved into `root`
        here = settings.model_copy(update={
            "dataset": settings.dataset.model_copy(update={"path": root / settings.dataset.path}),
            "paths": settings.paths.model_copy(update={"artifacts": root / "artifacts"})})
        summary = {"model": f"{name} version {version.version} ({tags['role']})", "folder": str(root),
                   "data": check(tags["dataset_md5"], dvc_md5(here.dataset.path, root)) | {"remote": remote}}
        pin_runtime(settings.runtime)
        machines = {"registered": run_tags.get("machine", "not recorded"), "reproduced": machine(settings.runtime)}
        data = DataVersion(here.dataset.path.as_posix(), tags["dataset_md5"], tags["data_dvc_file"])
        step_log: StepLog = {}
        split = split_of(here, data, step_log)
        logger.info("training the baseline again")
        baseline = train_baseline(here, data, split, step_log, refresh=True)
        if tags["role"] == "baseline":
            summary["weights"] = check(tags["checkpoint_sha256"], baseline.digests["checkpoint"])
        else:
            base = named(lambda: MlflowClient().get_model_version(name, tags["base_version"]),
                         f"{name} version {version.version}: its base version {tags['base_version']}")
            summary["baseline"] = check(base.tags["checkpoint_sha256"], baseline.digests["checkpoint"])
            summary |= generator(here, tags, root)
            generated = used_images(tags, settings, root)
            summary["generated"] = check(tags["generated_md5"], images_digest(generated)) | {"images": len(generated)}
            logger.info("fine-tuning again with %d generated images", len(generated))
            challenger = finetune(here, data, split, baseline, generated, tags["generated_md5"], step_log, refresh=True)
            summary["weights"] = check(tags["checkpoint_sha256"], challenger.digests["checkpoint"])
    summary["machine"] = check(machines["registered"], machines["reproduced"])
    summary["verdict"] = verdict(summary)
    return summary


def generator(settings: Settings, tags: dict[str, str], root: Path) -> dict:
    """The generator the night used, from the registry by its weights digest (a configured one is named only)."""
    if settings.generator.model:
        return {"generator": {"configured": settings.generator.model, "check": "not fetched (configured by name)"}}
    found = find_version(settings.registered_generator, "weights_digest", tags["generator_digest"])
    if found is None:
        return {"generator": {"registered": tags["generator_digest"], "check": "not in the registry"}}
    restore_generator(found.source, tags["generator_digest"], root / "generator")
    return {"generator": check(tags["generator_digest"], model_identity(str(root / "generator")))
            | {"version": str(found.version)}}


def used_images(tags: dict[str, str], settings: Settings, root: Path) -> list[tuple[str, str, str]]:
    """The night's hard negatives in its order (its run's generated/used.csv), found in the fetched folder."""
    listed = Path(named(lambda: mlflow.artifacts.download_artifacts(
        run_id=tags["pipeline_run_id"], artifact_path="generated/used.csv", dst_path=str(root)),
        f"the generated images' list (generated/used.csv) of run {tags['pipeline_run_id']}"))
    night = settings.workdir / "generated"
    rows = pd.read_csv(listed, dtype=str)
    return [((root / "generated" / Path(image).relative_to(night)).as_posix(), label, source)
            for image, label, source in rows[["image", "label", "source_class"]].itertuples(index=False)]


def named(read, what: str):
    """What a lineage names, read; gone (deleted by hand) is one line naming it."""
    try:
        return read()
    except (MlflowException, OSError) as err:
        raise ValueError(f"{what} is gone ({(str(err).splitlines() or ['not found'])[0]}): it cannot be made "
                         "again") from None


def verdict(summary: dict) -> str:
    checks = {key: value["check"] for key, value in summary.items() if isinstance(value, dict) and "check" in value}
    different = [key for key, value in checks.items() if value == "different" and key != "machine"]
    if not different:
        return "identical"
    if checks["machine"] == "different":
        return (f"different ({', '.join(different)}), as it may be: the version was trained on another machine kind "
                "(torch's version, the device and the thread count decide the last bits)")
    return f"different ({', '.join(different)}) on the same machine kind: not reproducible"
