"""The nightly pipeline: prepare -> train-generator -> baseline -> select -> generate -> finetune
-> evaluate (and promote). `until` stops after a stage, which is how dvc.yaml runs each one."""

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from flows.environment import use_defaults
from flows.notify import notify, outcome
from flows.stages import (
    FIRST_NIGHT_MINUTES,
    StepLog,
    current_adapters,
    ensure_generator,
    evaluate,
    finetune,
    generate_selection,
    one_writer,
    prepare,
    select,
    train_baseline,
)
from models.config import ClassifierConfig, ConfigError, Settings
from models.dataset import read_manifest
from models.determinism import machine
from models.digests import file_digest, model_identity
from tasks.caching import Outputs
from tasks.champion import crown_first, fetch_champion, log_decision, move_blocked, promote_if_better, set_champion
from tasks.classifiers import register_classifier
from tasks.data import DataVersion
from tasks.deletion import collect
from tasks.keys import images_digest
from tasks.tracking import log_dataset, log_evaluation, log_files, start_pipeline_run
from tasks.versioning import commit_stages, push, version_generated

STAGES = ("prepare", "train-generator", "baseline", "select", "generate", "finetune", "evaluate")
# What decides each stage's outputs: the task modules it runs (their project imports followed) and the
# configuration it reads. dvc.yaml lists exactly these as the stage's deps and params (tests/flows/test_dvc.py).
STAGE_TASKS = {
    "prepare": ("tasks.data",),
    "train-generator": ("tasks.generator", "tasks.registry", "tasks.adapters"),
    "baseline": ("tasks.train", "tasks.evaluate"),
    "select": ("tasks.evaluate", "tasks.selection"),
    "generate": ("tasks.editing",),
    "finetune": ("tasks.train",),
    "evaluate": ("tasks.evaluate", "tasks.classifiers", "tasks.champion"),
}
STAGE_PARAMS = {
    "prepare": ("dataset",),
    "train-generator": ("dataset", "generator.prompt", "generator.class_names", "generator.embedded",
                        "generator.retrain", "generator.adapt", "generator.adapter"),
    "baseline": ("dataset", "classifier", "evaluate"),
    "select": ("dataset", "evaluate", "select.targets", "select.n_weakest", "select.k_confused", "select.per_target",
               "select.seed"),
    "generate": ("dataset", "generator", "genie", "select.method", "select.shard_size"),
    "finetune": ("dataset", "classifier", "finetune"),
    "evaluate": ("dataset", "evaluate", "promote"),
}
def plan(last: int) -> str:
    """The night's stages with what each takes on a first night, so that a new user knows whether to wait."""
    stages = STAGES[: last + 1]
    minutes = sum(FIRST_NIGHT_MINUTES[stage] for stage in stages)
    return (" -> ".join(f"{stage} (~{FIRST_NIGHT_MINUTES[stage]:g} min)" for stage in stages)
            + f"; a first night on the embedded digits takes about {minutes:.0f} min on 2 CPU cores that read "
            "70-74 images/s in benchmarks/epoch_speed.py (a third of it where they read 190); a stage whose inputs did "
            "not change comes from the cache in seconds")


@flow(name="genie-prepare")
@one_writer
def genie_prepare(settings: Settings) -> dict:
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    return {"dataset_md5": data.md5, "dvc_file": data.pointer, "manifest": split.files["manifest"], "step_log": step_log,
            **split.info}


@flow(name="genie-run")
@one_writer
def genie_run(settings: Settings, until: str = "evaluate", wait: bool = True) -> dict:
    """Every stage is a cached task: a re-run with nothing changed recomputes nothing. One run per dataset
    at a time: a second waits for the first, or with `wait=False` stops at once naming it. Its outcome (a
    decision, or a failure) is sent to the configured channels (`notify`)."""
    if until not in STAGES:
        raise ValueError(f"--until {until}: choose one of {', '.join(STAGES)}")
    logger = get_run_logger()
    try:
        summary = night(settings, STAGES.index(until), logger)
        alert = outcome(summary) if "decision" in summary else None  # built here: an error in it is the night's
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        notify(settings, "failed", f"{reason}\non {socket.gethostname()}: the traceback is in the night's log, "
               "its MLflow run is marked FAILED", logger)
        raise
    if alert:
        notify(settings, *alert, logger)
    logger.info("%s", summary.get("decision", f"stopped after {until}"))
    if settings.retention.after_night:  # still holding the dataset: no night or gc runs beside it
        summary["gc_bytes"] = after_night_gc(settings, logger)
    return summary


def after_night_gc(settings: Settings, logger) -> int:
    """`genie gc` after the decision: whatever it meets, the night keeps its state and decision, and a gc that
    failed (or left deletions undone) sends its own alert."""
    try:
        collected = collect(settings.registered_model, settings.dataset.name, settings.workdir, settings.retention)
    except Exception as err:  # noqa: BLE001 - the night is decided; gc's failure is its own
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        logger.error("genie gc after the night failed: %s", reason)
        notify(settings, "gc-failed", f"{reason}\non {socket.gethostname()}: the night's decision stands", logger)
        return 0
    logger.info("%s", collected.lines(done=True))
    if collected.failed:
        notify(settings, "gc-failed", collected.lines(done=True), logger)
    return collected.total


def night(settings: Settings, last: int, logger) -> dict:
    logger.info("the night: %s", plan(last))
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    if last < STAGES.index("train-generator"):
        commit_stages(["prepare"])
        return {"dataset_md5": data.md5, "step_log": step_log}
    run_id = start_pipeline_run(settings.dataset.name, data, f"genie-run-{datetime.now():%Y%m%d-%H%M%S}",
                                settings.flat(), settings.model_dump(mode="json"), machine(settings.runtime))
    summary: dict = {"run_id": run_id, "dataset_md5": data.md5, "step_log": step_log}
    status = "FAILED"
    try:
        log_dataset(run_id, settings.dataset.name, data, split)
        publish(settings, [data.pointer], "the data")
        choice = ensure_generator(settings, data, split, step_log)
        summary["generator"] = f"train-generator: {choice['decision']} ({choice['reason']})"
        logger.info("%s", summary["generator"])
        if last >= STAGES.index("baseline"):
            summary |= nightly(settings, data, split, run_id, step_log, last)
        uncommitted = commit_stages(list(STAGES[: last + 1]))
        if uncommitted:
            logger.warning("dvc.lock not updated for %s (outputs this configuration does not make)", uncommitted)
        status = "FINISHED"
    finally:
        log_files(run_id, [], "", tags={f"step.{name}": how for name, how in step_log.items()}
                  | {"generator.decision": summary.get("generator", "")})
        MlflowClient().set_terminated(run_id, status)
    return summary


def publish(settings: Settings, targets: list[str], what: str) -> None:
    """To the team's DVC remote, before any version that names these md5s is registered: what a version records
    can always be fetched."""
    pushed = push(settings.dvc.remote, targets)
    if pushed:
        get_run_logger().info("pushed %s to the DVC remote %s", what, pushed)


@dataclass
class Night:
    """What a night's stages hand on to the next ones."""

    settings: Settings
    data: DataVersion
    split: Outputs
    run_id: str
    step_log: StepLog
    baseline: Outputs | None = None
    base_version: str = ""
    inputs: dict = field(default_factory=dict)  # what the registered versions learnt from, as MLflow inputs
    champion: Outputs | None = None
    selection: Outputs | None = None
    generated: list = field(default_factory=list)
    generated_lineage: dict = field(default_factory=dict)
    challenger: Outputs | None = None


def nightly(settings: Settings, data: DataVersion, split: Outputs, run_id: str, step_log: StepLog, last: int) -> dict:
    """The stages after train-generator, in order, until the one `last` names; each adds to the night's summary."""
    night, summary = Night(settings, data, split, run_id, step_log), {}
    for name, stage in (("baseline", baseline_stage), ("select", select_stage), ("generate", generate_stage),
                        ("finetune", finetune_stage), ("evaluate", evaluate_stage)):
        if last < STAGES.index(name):
            break
        summary |= stage(night)
    return summary


def baseline_stage(night: Night) -> dict:
    """The baseline trained, evaluated and registered; the first one registered is crowned champion."""
    settings, split = night.settings, night.split
    night.baseline = train_baseline(settings, night.data, split, night.step_log)
    test = evaluate(settings, night.baseline, split, night.step_log, "evaluate-baseline",
                    settings.workdir / "baseline" / "evaluation")
    log_evaluation(night.run_id, test, "baseline.test", "baseline")
    night.inputs = {settings.dataset.name: (read_manifest(split["manifest"]), night.data.path, night.data.md5)}
    night.base_version = register_classifier(night.run_id, *classifier_names(settings), night.data, night.baseline,
                                             test, "baseline", inputs=night.inputs)["version"]
    return {"baseline_version": night.base_version, "baseline_test_accuracy": test.info["metrics"]["accuracy"],
            "champion": crown_first(settings.registered_model, night.base_version)}


def select_stage(night: Night) -> dict:
    """Sources for the hard negatives, from the confusion on val of the champion or of today's baseline.

    The pipeline's own champion (a baseline, or fine-tuned from one) is looked at through today's baseline: the
    selection then follows the data and the configuration only, so nights settle and going back to earlier data
    finds earlier work. A champion from elsewhere is looked at itself."""
    settings, split = night.settings, night.split
    champion = night.champion = fetch_champion(settings.registered_model, settings.workdir / "champion")
    own = champion.info["role"] in ("baseline", "finetuned") or champion.info["classes"] != split.info["classes"]
    val = evaluate(settings, night.baseline if own else champion, split, night.step_log, "evaluate-selector-val",
                   settings.workdir / "selector" / "val", "val")
    night.selection = select(settings, val, split, night.step_log)
    log_files(night.run_id, [night.selection["selection"], val["soft_confusion"], val["confusion_plot"]],
              "selection", metrics={"selection.sources": night.selection.info["sources"]})
    return {"targets": night.selection.info["targets"], "sources": night.selection.info["sources"]}


def generate_stage(night: Night) -> dict:
    """Tonight's hard negatives made (those already in the folder kept), versioned with DVC, pushed and logged."""
    settings, workdir = night.settings, night.settings.workdir
    generated, totals = generate_selection(settings, night.data, night.split, night.selection, night.baseline,
                                           night.step_log)
    generated_md5 = images_digest(generated)  # the images this fine-tune uses, whatever else the folder holds
    folder_md5, pointer = version_generated(workdir / "generated")
    if settings.dvc.remote.url and pointer.name == "dvc.lock":
        commit_stages(["generate"])  # the lock then names tonight's images, for the push
    publish(settings, ["generate" if pointer.name == "dvc.lock" else pointer.as_posix()], "the generated images")
    used = pd.DataFrame(generated, columns=["image", "label", "source_class"])  # tonight's edits, not the folder's
    with TemporaryDirectory() as tmp:
        used.to_csv(Path(tmp) / "used.csv", index=False)
        log_files(night.run_id, [Path(tmp) / "used.csv"], "generated", tags={"generated_md5": generated_md5},
                  metrics={f"generated.{k}": v for k, v in totals.items()})
    night.generated = generated
    night.generated_lineage = {"generated_md5": generated_md5, "generated_dvc_md5": folder_md5,
                               "generated_dvc_file": pointer.as_posix()}
    night.inputs = night.inputs | {"generated": (used, (workdir / "generated").as_posix(), generated_md5)}
    return night.generated_lineage | {"generated": totals}


def finetune_stage(night: Night) -> dict:
    """The challenger: the baseline fine-tuned on the real images and tonight's hard negatives."""
    night.challenger = finetune(night.settings, night.data, night.split, night.baseline, night.generated,
                                night.generated_lineage["generated_md5"], night.step_log)
    return {}


def evaluate_stage(night: Night) -> dict:
    """The challenger evaluated and registered with its lineage, then promoted only if it beats the champion on the
    same test data (or, with classes the champion lacks, as the team's rule says)."""
    settings, split, run_id, champion = night.settings, night.split, night.run_id, night.champion
    challenger_test = evaluate(settings, night.challenger, split, night.step_log, "evaluate-challenger",
                               settings.workdir / "finetuned" / "evaluation")
    log_evaluation(run_id, challenger_test, "challenger.test", "challenger")
    version = register_classifier(run_id, *classifier_names(settings), night.data, night.challenger, challenger_test,
                                  "finetuned", lineage(night), inputs=night.inputs)["version"]
    if champion.info["classes"] != split.info["classes"]:  # the champion cannot be scored: the team's rule decides
        return new_classes(settings, version, challenger_test, champion, split, run_id)
    if version == champion.info["version"]:  # last night's challenger, already promoted
        champion_test = challenger_test
    else:  # the champion on the same test data, in the same run
        champion_test = evaluate(settings, champion, split, night.step_log, "evaluate-champion",
                                 settings.workdir / "champion" / "evaluation")
    log_evaluation(run_id, champion_test, "champion.test", "champion")
    decision = promote_if_better(settings.registered_model, settings.dataset.name, settings.promote, version,
                                 challenger_test.info["metrics"], champion.info["version"],
                                 champion_test.info["metrics"], run_id,
                                 (class_accuracy(challenger_test), class_accuracy(champion_test)))
    return {
        "challenger_version": version,
        "challenger_test_accuracy": challenger_test.info["metrics"]["accuracy"],
        "champion_test_accuracy": champion_test.info["metrics"]["accuracy"],
        "promoted": decision["promoted"],
        "champion": decision["champion"],
        "decision": f"challenger v{version} {'promoted' if decision['promoted'] else 'not promoted'}: "
                    f"{decision['reason']}",
    }


def classifier_names(settings: Settings) -> tuple[str, str, ClassifierConfig]:
    """register_classifier's model name, experiment and recipe."""
    return settings.registered_model, settings.dataset.name, settings.classifier


def lineage(night: Night) -> dict:
    """What a challenger's version records it was made from."""
    settings = night.settings
    return night.generated_lineage | {
        "dvc_remote": settings.dvc.remote.url or "none",
        "generated_images": len(night.generated),
        "generator": settings.generator_model, "generator_digest": model_identity(settings.generator_model),
        "adapters": ", ".join(f"{Path(folder).name}: {digest[:12]}" for folder, digest in
                              current_adapters(settings, night.split.info["classes"])) or "none",
        "selection_sha256": file_digest(night.selection["selection"]),
        "selection_artifact": f"runs:/{night.run_id}/selection/selection.csv",
        "base_version": night.base_version,
    }


def class_accuracy(evaluation) -> dict[str, float]:
    table = pd.read_csv(evaluation["per_class"], dtype={"class": str})
    return dict(zip(table["class"], table["accuracy"].fillna(0.0)))


def new_classes(settings: Settings, version: str, challenger_test, champion, split, run_id: str) -> dict:
    """A challenger that knows classes the champion does not: promote.new_classes says whether it waits for a
    person (the decision names the command) or is promoted, through the same guards as any promotion."""
    ours, theirs = set(split.info["classes"]), set(champion.info["classes"])
    known = (f"champion v{champion.info['version']} knows classes {', '.join(champion.info['classes'])}; the data "
             f"also has {', '.join(sorted(ours - theirs)) or 'none'} "
             f"(and lacks {', '.join(sorted(theirs - ours)) or 'none'})")
    name, compared_with = settings.registered_model, champion.info["version"]
    if settings.promote.new_classes == "promote":
        blocked = move_blocked(name, settings.dataset.name, version, compared_with)
        promoted, reason = blocked is None, blocked or f"promote.new_classes is promote; {known}"
    else:
        promoted, reason = False, f"{known}; it waits for a person: `genie promote {version}` serves it"
    gates = {"new-classes": f"{'pass' if promoted else 'fail'}: {settings.promote.new_classes}"}
    if promoted:
        set_champion(name, version, "promoted", reason, run_id, gates)
    else:
        log_decision(name, "waiting", version, reason, run_id, gates, replaced=compared_with)
    return {"challenger_version": version, "promoted": promoted, "waiting": not promoted,
            "champion": version if promoted else compared_with,
            "challenger_test_accuracy": challenger_test.info["metrics"]["accuracy"],
            "decision": f"challenger v{version} {'promoted' if promoted else 'not promoted'}: {reason}"}


@flow(name="genie-nightly")
def genie_nightly(params: str = "params.yaml", overrides: list[str] | None = None, until: str = "evaluate") -> dict:
    """The scheduled entry point: reads params.yaml afresh each night, then runs the pipeline. A work pool's worker
    starts each run in a folder of its own: GENIE_PROJECT on the worker names the project folder to run in."""
    from flows.runner import with_runner
    from flows.servers.preflight import check_servers
    from models.params import load_settings, refused_parameters

    if os.environ.get("GENIE_PROJECT"):
        os.chdir(os.environ["GENIE_PROJECT"])
    use_defaults()
    refused = refused_parameters(params, overrides or [], Path.cwd())  # also where no genie worker checked
    if refused:
        raise ConfigError(f"refused: {refused}")

    settings = load_settings(params, overrides or [])
    check_servers(settings.dvc.remote.url)  # a server down: fail at once, nothing half-done
    return with_runner(genie_run, settings)(settings, until=until)
